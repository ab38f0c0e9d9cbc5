// Package iso builds the bootable appliance image and holds its boot test.
//
// # Imports
//
// iso may import nothing of the module; it packs the built cairn binary.
package iso
