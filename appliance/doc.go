// Package appliance is the running Cairn server: catalog (database),
// scheduler and job queue, REST API, auth, web UI, WebDAV and metrics.
//
// # Imports
//
// appliance wires concrete types together and may import every package of
// the module except cmd.
package appliance
