package appliance

// The option and credential fields of every source method, as GET
// /api/v1/methods shows them: the web UI builds its host form from this
// list, so a new method (or a new option) appears there without a UI
// change. The names are the ones the pullers and the appliance read from
// Source.Options and Source.Secret (see each puller's doc.go, hooks.go,
// snapshot.go and jump.go); TestMethodFieldsDocumented keeps them honest.

import (
	"context"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pullers/dbdump"
)

// MethodField is one option or credential of a source method.
type MethodField struct {
	Name     string   `json:"name"`
	Label    string   `json:"label"`
	Type     string   `json:"type"` // string, text (multi-line), number, bool, duration, choice
	Required bool     `json:"required,omitempty"`
	Secret   bool     `json:"secret,omitempty"` // a credential: write-only, stored sealed
	Default  string   `json:"default,omitempty"`
	Choices  []string `json:"choices,omitempty"` // for type choice
	Help     string   `json:"help,omitempty"`
	Group    string   `json:"group,omitempty"` // "" (main), "advanced", "commands", "snapshot", "jump"
}

// Field constructors keep the table below readable.
func fStr(name, label, help string) MethodField {
	return MethodField{Name: name, Label: label, Type: "string", Help: help}
}

func (f MethodField) req() MethodField               { f.Required = true; return f }
func (f MethodField) def(v string) MethodField       { f.Default = v; return f }
func (f MethodField) typ(t string) MethodField       { f.Type = t; return f }
func (f MethodField) group(g string) MethodField     { f.Group = g; return f }
func (f MethodField) choice(c ...string) MethodField { f.Type, f.Choices = "choice", c; return f }

func fSecret(name, label, help string) MethodField {
	return MethodField{Name: name, Label: label, Type: "string", Secret: true, Help: help}
}

// Fields shared by several methods.
var (
	fHost    = fStr("host", "Server", "Host name or address to connect to; empty: the host's address.")
	fUser    = fStr("user", "User", "")
	fPort    = func(d string) MethodField { return fStr("port", "Port", "").typ("number").def(d) }
	fTimeout = func(d string) MethodField {
		return fStr("timeout", "Connect timeout", "Go duration, e.g. 30s.").typ("duration").def(d).group("advanced")
	}
	fHostKey = fStr("host_key", "Pinned SSH host key", "authorized_keys format. Empty: trusted on first use and pinned then.").typ("text").group("advanced")
	fFull    = fStr("full", "Full run", "Re-read every file instead of skipping unchanged ones.").typ("bool").group("advanced")
	fOneFS   = fStr("one_file_system", "Stay on one file system", "Do not descend into other mounted file systems.").typ("bool").group("advanced")
	fMaxDir  = fStr("max_dir_entries", "Names per directory", "At most this many names are kept from one directory listing (the first listed); more are an error on the directory. Bounds memory against a hostile server.").typ("number").group("advanced")
	sshCreds = []MethodField{
		fSecret("password", "Password", "A password or a private key. Empty: the appliance's own key (installed by onboarding)."),
		fSecret("private_key", "Private key", "PEM or OpenSSH format.").typ("text"),
		fSecret("passphrase", "Key passphrase", "For an encrypted private key."),
	}
	// commonFields are read by the appliance around every pull:
	// pre/post commands (hooks.go), snapshot presets (snapshot.go) and
	// the jump host (jump.go).
	commonFields = []MethodField{
		fStr("pre", "Command before the pull", "Runs on the host over SSH; its failure fails the source.").group("commands"),
		fStr("post", "Command after the pull", "Always runs once the pre-command started; a failure is a warning.").group("commands"),
		fStr("hook_timeout", "Command timeout", "Go duration per command.").typ("duration").def("5m").group("commands"),
		fStr("ssh_user", "SSH user for commands", "").def("root").group("commands"),
		fStr("ssh_port", "SSH port for commands", "").typ("number").def("22").group("commands"),
		fStr("ssh_host_key", "SSH host key for commands", "authorized_keys format; required with commands or a snapshot preset.").typ("text").group("commands"),
		fSecret("ssh_key", "SSH private key for commands", "PEM or OpenSSH format.").typ("text").group("commands"),
		fSecret("ssh_password", "SSH password for commands", "").group("commands"),
		fStr("snapshot", "Snapshot preset", "Take a file system snapshot on the host around the pull.").choice("", "zfs", "lvm", "btrfs", "fsfreeze").group("snapshot"),
		fStr("zfs_dataset", "ZFS dataset", "zfs: pool/fs.").group("snapshot"),
		fStr("snapshot_mount", "Snapshot mount point", "zfs, lvm: where the dataset or origin volume is mounted (a prefix of the path).").group("snapshot"),
		fStr("lvm_vg", "LVM volume group", "").group("snapshot"),
		fStr("lvm_lv", "LVM logical volume", "").group("snapshot"),
		fStr("lvm_size", "LVM snapshot size", "e.g. 1G.").group("snapshot"),
		fStr("snapshot_dir", "LVM snapshot directory", "").def("/run/cairn-snapshots").group("snapshot"),
		fStr("btrfs_subvolume", "Btrfs subvolume", "A prefix of the path.").group("snapshot"),
		fStr("fsfreeze_mount", "File system to freeze", "fsfreeze: never the root file system.").group("snapshot"),
		fStr("jump", "Jump host", "[user@]host[:port]: reach the server through this SSH host.").group("jump"),
		fStr("jump_host_key", "Jump host key", "authorized_keys format; required with a jump host.").typ("text").group("jump"),
		fSecret("jump_private_key", "Jump host private key", "").typ("text").group("jump"),
		fSecret("jump_password", "Jump host password", "").group("jump"),
	}
)

// methodFields are the method-specific fields, by method name.
var methodFields = map[string][]MethodField{
	"local": {fOneFS, fMaxDir},
	"sftp": append([]MethodField{fHost, fUser.req(), fPort("22"), fHostKey,
		fStr("paths", "More paths", "More remote paths, comma-separated.").group("advanced"),
		fTimeout("30s"), fFull,
		fStr("full_every", "Full re-read every N days", "Every file is re-read once every N days.").typ("number").group("advanced"), fMaxDir},
		sshCreds...),
	"smb": {fHost, fStr("share", "Share", "").req(), fUser.req(), fStr("domain", "Domain", ""),
		fSecret("password", "Password", "").req(), fPort("445"),
		fStr("timeout", "Operation timeout", "How long one operation may wait for the server (Go duration).").typ("duration").group("advanced"), fFull, fMaxDir},
	"ftp": {fHost, fStr("user", "User", "Empty, anonymous or ftp: anonymous login."), fSecret("password", "Password", ""), fPort("21"),
		fStr("tls", "TLS", "explicit: AUTH TLS before login; none: plain FTP (password in clear).").choice("explicit", "none").def("explicit"),
		fStr("tls_fingerprint", "Pinned certificate", "sha256:<hex> of the certificate; empty: pinned on first use.").group("advanced"),
		fStr("tls_ca", "CA certificates", "PEM roots instead of the system roots.").typ("text").group("advanced"),
		fStr("tls_tofu", "Trust on first use", "false: refuse a certificate that is neither pinned nor signed by a known CA.").typ("bool").def("true").group("advanced"),
		fStr("timeout", "Idle timeout", "Per read or write (Go duration).").typ("duration").def("60s").group("advanced"), fMaxDir},
	"rsync": append([]MethodField{fHost, fStr("transport", "Transport", "").choice("daemon", "ssh").def("daemon"),
		fStr("port", "Port", "873 for the daemon, 22 over SSH.").typ("number"),
		fStr("module", "Module", "Daemon module (required for the daemon)."),
		fStr("user", "User", "Daemon auth user, or SSH login."), fHostKey,
		fStr("rsync_path", "Remote rsync", "ssh: the remote rsync binary.").def("rsync").group("advanced"),
		fOneFS, fStr("numeric_ids", "Numeric IDs", "Keep numeric owners (no names).").typ("bool").group("advanced"), fFull,
		fStr("xattrs", "Extended attributes", "Carry xattrs (rsync -X; rsync 3.0 or newer on the host).").typ("bool").group("advanced"),
		fStr("acls", "ACLs", "Carry POSIX ACLs (rsync -A), stored as system.posix_acl_* xattrs.").typ("bool").group("advanced"),
		fTimeout("30s"), fStr("io_timeout", "I/O timeout", "A read waiting longer fails the pull (Go duration).").typ("duration").def("15m").group("advanced")},
		fSecret("password", "Password", "Daemon module secret, or SSH password."), sshCreds[1], sshCreds[2]),
	"tar": append([]MethodField{fHost, fStr("user", "SSH user", "").def("root"), fPort("22"), fHostKey, fTimeout("30s"), fOneFS, fFull},
		sshCreds...),
}

// dbFields are the fields of the database dump methods.
func dbFields(port, user string) []MethodField {
	return []MethodField{
		fStr("via", "Run the dump", "local: on the appliance over TCP; ssh: on the host over SSH.").choice("local", "ssh").def("local"),
		fHost, fStr("port", "Port", "").typ("number").def(port),
		fStr("socket", "Unix socket", "Instead of TCP (PostgreSQL: its directory).").group("advanced"),
		fStr("user", "Database user", "").def(user), fSecret("password", "Database password", ""),
		fStr("databases", "Databases", "Comma-separated; empty: all."),
		fStr("exclude_databases", "Excluded databases", "Comma-separated."),
		fStr("format", "Format", "PostgreSQL: plain SQL or custom (pg_restore).").choice("plain", "custom").def("plain").group("advanced"),
		fStr("globals", "Roles and tablespaces", "PostgreSQL: false skips pg_globals.sql.").typ("bool").def("true").group("advanced"),
		fStr("bin_dir", "Tools directory", "Where pg_dump or mariadb-dump are; default the newest installed.").group("advanced"),
		fStr("spool_dir", "Spool directory", "Default: the appliance's data dir.").group("advanced"),
		fStr("connect_timeout", "Connect timeout", "PostgreSQL (Go duration).").typ("duration").def("30s").group("advanced"),
		fStr("record_sums", "Record checksums", "Write <db>.sums.json next to each dump.").typ("bool").group("advanced"),
		fStr("ssh_host", "SSH host", "via=ssh: default the host's address.").group("advanced"),
		fStr("ssh_port", "SSH port", "via=ssh.").typ("number").def("22").group("advanced"),
		fStr("ssh_user", "SSH user", "via=ssh.").def("root").group("advanced"),
		fStr("ssh_host_key", "SSH host key", "via=ssh: authorized_keys format.").typ("text").group("advanced"),
		fSecret("ssh_private_key", "SSH private key", "via=ssh.").typ("text").group("advanced"),
		fSecret("ssh_passphrase", "SSH key passphrase", "via=ssh.").group("advanced"),
		fSecret("ssh_password", "SSH password", "via=ssh.").group("advanced"),
	}
}

func init() {
	methodFields[dbdump.MethodPostgres] = dbFields("5432", "postgres")
	methodFields[dbdump.MethodMariaDB] = dbFields("3306", "")
}

// pathLabels name Source.Path per method where "Path" alone is unclear.
var pathLabels = map[string]string{
	dbdump.MethodPostgres: "Name of the dump directory in the snapshot",
	dbdump.MethodMariaDB:  "Name of the dump directory in the snapshot",
	"local":               "Directory on the appliance",
	"smb":                 "Directory in the share",
	"rsync":               "Directory in the module (or on the host over SSH)",
}

// methodOptions returns the fields of a method: its own, then the
// appliance-wide ones (commands, snapshot presets, jump host) that do not
// clash with them. Unknown methods get only the appliance-wide ones.
func methodOptions(method string) []MethodField {
	own := methodFields[method]
	out := make([]MethodField, 0, len(own)+len(commonFields))
	seen := map[string]bool{}
	for _, f := range own {
		out = append(out, f)
		seen[f.Name] = true
	}
	if method == "local" {
		return out // runs on the appliance: no SSH around it
	}
	for _, f := range commonFields {
		if !seen[f.Name] {
			out = append(out, f)
		}
	}
	return out
}

// keepSecrets fills the credentials an update leaves empty from the
// stored source of the same name and method, so an edit that does not
// retype a password keeps it. A key given as "" with nothing stored is
// dropped; a key left out is removed (as before).
func (s *Server) keepSecrets(ctx context.Context, h *catalog.Host, in *HostInput) error {
	var stored []catalog.Source
	loaded := false
	for i := range in.Sources {
		si := &in.Sources[i]
		empty := false
		for _, v := range si.Secret {
			if v == "" {
				empty = true
			}
		}
		if !empty {
			continue
		}
		if !loaded {
			var err error
			if stored, err = s.cat.Sources(ctx, h.ID); err != nil {
				return err
			}
			loaded = true
		}
		var old map[string]string
		for j := range stored {
			if stored[j].Name == si.Name && stored[j].Method == si.Method && len(stored[j].Secret) > 0 {
				var err error
				if old, err = s.openSecret(stored[j].Secret); err != nil {
					return err
				}
			}
		}
		for k, v := range si.Secret {
			if v != "" {
				continue
			}
			if ov, ok := old[k]; ok && ov != "" {
				si.Secret[k] = ov
			} else {
				delete(si.Secret, k)
			}
		}
	}
	return nil
}
