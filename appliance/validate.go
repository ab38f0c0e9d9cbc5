package appliance

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/appliance/schedule"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// validateCron checks a schedule expression with the scheduler's parser.
func validateCron(expr string) error {
	_, err := schedule.ParseCron(expr, time.Local)
	return err
}

// validateBlackout checks blackout window expressions.
func validateBlackout(exprs []string) error {
	_, err := schedule.ParseWindows(exprs, time.Local)
	return err
}

// validateSourceOptions checks, when a source is added or edited, the
// options that otherwise would fail only at backup time: the snapshot
// preset, the jump host and the checkpoint interval. Each error names
// the source, the option and the cause.
func validateSourceOptions(in *SourceInput) error {
	o := in.Options
	if o["snapshot"] != "" {
		plan := snapshotFor
		if isImageMethod(in.Method) {
			plan = imageSnapshot // images_job.go: a snapshot device, not a mount
		}
		if _, err := plan(&catalog.Source{Name: in.Name, Method: in.Method, Path: in.Path, Options: o}, 0); err != nil {
			return badRequest("source %s: %v", in.Name, err)
		}
		if o["ssh_host_key"] == "" {
			return badRequest("source %s: snapshot=%s needs the option ssh_host_key (the host's public key): commands never run on an unverified host", in.Name, o["snapshot"])
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o["ssh_host_key"])); err != nil {
			return badRequest("source %s: ssh_host_key: %v", in.Name, err)
		}
	} else {
		for _, k := range []string{"zfs_dataset", "lvm_vg", "lvm_lv", "lvm_size", "btrfs_subvolume", "fsfreeze_mount", "snapshot_mount", "snapshot_dir"} {
			if o[k] != "" {
				return badRequest("source %s: option %s is set but snapshot is not (want snapshot=zfs, lvm, btrfs or fsfreeze)", in.Name, k)
			}
		}
	}
	if o["jump"] != "" {
		j, err := newJump(o, in.Secret)
		if err != nil {
			return badRequest("source %s: %v", in.Name, err)
		}
		pl, err := pullers.Get(in.Method)
		if err != nil {
			return badRequest("source %s: %v", in.Name, err)
		}
		if err := useJump(pl, in.Method, o["via"], j); err != nil {
			return badRequest("source %s: %v", in.Name, err)
		}
	} else {
		for _, k := range []string{"jump_host_key"} {
			if o[k] != "" {
				return badRequest("source %s: option %s is set but jump is not", in.Name, k)
			}
		}
		for _, k := range []string{"jump_private_key", "jump_password"} {
			if in.Secret[k] != "" {
				return badRequest("source %s: credential %s is set but the option jump is not", in.Name, k)
			}
		}
	}
	if _, err := checkpointOptions(o); err != nil {
		return badRequest("source %s: %v", in.Name, err)
	}
	if _, err := maxDirEntries(in.Method, o); err != nil {
		return badRequest("source %s: %v", in.Name, err)
	}
	return nil
}

// dirCapMethods read Options["max_dir_entries"], the cap on the names
// kept from one directory listing: local and ftp themselves, sftp and smb
// through the appliance (applyDirCap), archive through its fetching
// puller. rsync's list is one stream for the whole tree (its own cap),
// tar and the dumps list nothing.
var dirCapMethods = []string{"archive", "ftp", "local", "sftp", "smb"}

// maxDirEntries is the source's max_dir_entries option: 0 when unset.
func maxDirEntries(method string, o map[string]string) (int, error) {
	v := strings.TrimSpace(o["max_dir_entries"])
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("option max_dir_entries %q: want a positive number of names per directory", v)
	}
	if !slices.Contains(dirCapMethods, method) {
		return 0, fmt.Errorf("option max_dir_entries: method %s has no per-directory listing to cap (it works for %s)", method, strings.Join(dirCapMethods, ", "))
	}
	return n, nil
}

// Source options for the writer's checkpoints (pool.CheckpointOptions):
//
//	checkpoint_every  a duration (default 1m); 0 turns time checkpoints off
//	checkpoint_bytes  a size such as 512MiB or 2G (default 1GiB); 0 off
//	checkpoint_files  a count of files (default none)
//
// A checkpoint commits the snapshot so far as a partial manifest, so a
// backup cut short by a crash (kill -9, power loss, a lost instance)
// leaves a usable partial snapshot that the re-run uses as its basis.
func checkpointOptions(o map[string]string) (pool.CheckpointOptions, error) {
	c := pool.DefaultCheckpoint
	if v := strings.TrimSpace(o["checkpoint_every"]); v != "" {
		d, err := time.ParseDuration(v)
		if v == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 || d > 0 && d < time.Second {
			return c, fmt.Errorf("option checkpoint_every %q: want a duration of at least 1s (e.g. 5m), or 0 for none", v)
		}
		c.Every = d
	}
	if v := strings.TrimSpace(o["checkpoint_bytes"]); v != "" {
		n, err := parseSize(v)
		if err != nil || n > 0 && n < 1<<20 {
			return c, fmt.Errorf("option checkpoint_bytes %q: want a size of at least 1MiB (e.g. 512MiB, 2G), or 0 for none", v)
		}
		c.Bytes = n
	}
	if v := strings.TrimSpace(o["checkpoint_files"]); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return c, fmt.Errorf("option checkpoint_files %q: want a count of files, or 0 for none", v)
		}
		c.Files = n
	}
	return c, nil
}

// parseSize reads a byte count with an optional K/M/G/T suffix (powers of
// 1024; "iB" and "B" accepted).
func parseSize(v string) (int64, error) {
	s := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(v)), "B"), "I")
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with K, M, G or T", v)
	}
	return n * mult, nil
}
