// Package testenv starts real servers for tests (sshd, Samba, vsftpd, the
// rsync daemon, PostgreSQL, MariaDB, an S3 server) on 127.0.0.1 high ports
// with temporary configs, and stops them in t.Cleanup. Under CI=true a
// missing binary fails the test instead of skipping it.
//
// # Imports
//
// testenv imports no other package of the module.
package testenv
