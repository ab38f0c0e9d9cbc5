package appliance

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/cairn-backup/cairn/appliance/catalog"
)

// Snapshot presets: Options["snapshot"] makes the appliance take a
// filesystem snapshot on the host (over SSH, with the pre/post command
// settings) after the pre-command, pull from the snapshot instead of the
// live path, and remove the snapshot afterwards, also after a failed or
// cancelled pull. Every parameter is checked against a strict pattern and
// single-quoted, so no option can add a command.
//
//	snapshot=zfs       zfs_dataset (pool/fs), snapshot_mount (the dataset's
//	                   mountpoint, a prefix of the source path). The pull
//	                   reads MOUNT/.zfs/snapshot/cairn-JOB-SRC/…
//	snapshot=lvm       lvm_vg, lvm_lv, lvm_size (e.g. 1G), snapshot_mount
//	                   (where the origin LV is mounted, a prefix of the source
//	                   path), snapshot_dir (default /run/cairn-snapshots): the
//	                   snapshot LV is mounted read-only at DIR/cairn-JOB-SRC.
//	snapshot=btrfs     btrfs_subvolume (a prefix of the source path): a
//	                   read-only snapshot SUBVOL/.cairn-JOB-SRC is pulled.
//	snapshot=fsfreeze  fsfreeze_mount: the filesystem is frozen during the
//	                   pull (no snapshot path; never the root filesystem,
//	                   keep such sources small).

var (
	zfsDatasetRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*(/[A-Za-z0-9][A-Za-z0-9_.:-]*)*$`)
	lvmNameRE    = regexp.MustCompile(`^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,126}$`)
	lvmSizeRE    = regexp.MustCompile(`^[1-9][0-9]{0,9}[kKmMgGtT]?$`)
	safePathRE   = regexp.MustCompile(`^/[A-Za-z0-9_.,+=@:/-]*$`)
)

// snapshotPlan is what a preset runs around one pull.
type snapshotPlan struct {
	kind    string
	create  string // the command that takes the snapshot
	remove  string // the command that removes exactly that snapshot
	path    string // the source path the pull reads
	created string // what was created, for the log
}

// shq quotes s for a POSIX shell: the result is one word, always literal.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkSnapPath accepts a clean absolute path of harmless characters.
func checkSnapPath(opt, p string) error {
	if p == "" {
		return fmt.Errorf("snapshot: option %s is required", opt)
	}
	if !safePathRE.MatchString(p) || path.Clean(p) != p {
		return fmt.Errorf("snapshot: option %s %q: want a clean absolute path of letters, digits and _.,+=@:/-", opt, p)
	}
	for _, el := range strings.Split(p, "/") {
		if strings.HasPrefix(el, "-") || el == ".." {
			return fmt.Errorf("snapshot: option %s %q: no element may start with - or be \"..\"", opt, p)
		}
	}
	return nil
}

// under maps srcPath, which must be prefix or below it, onto root.
func under(srcPath, prefix, root, opt string) (string, error) {
	p := path.Clean("/" + srcPath)
	if p == prefix {
		return root, nil
	}
	if prefix == "/" {
		return root + p, nil
	}
	if !strings.HasPrefix(p, prefix+"/") {
		return "", fmt.Errorf("snapshot: the source path %s is not under %s %s", srcPath, opt, prefix)
	}
	return root + strings.TrimPrefix(p, prefix), nil
}

// snapshotFor returns the plan of the source's snapshot preset, or nil
// when it has none. name is unique per job and source.
func snapshotFor(src *catalog.Source, jobID int64) (*snapshotPlan, error) {
	o := src.Options
	kind := o["snapshot"]
	if kind == "" {
		return nil, nil
	}
	name := fmt.Sprintf("cairn-%d-%d", jobID, src.ID)
	switch kind {
	case "zfs":
		ds := o["zfs_dataset"]
		if !zfsDatasetRE.MatchString(ds) || strings.Contains(ds, "..") {
			return nil, fmt.Errorf("snapshot: option zfs_dataset %q: want a dataset name such as tank/data", ds)
		}
		mnt := o["snapshot_mount"]
		if err := checkSnapPath("snapshot_mount", mnt); err != nil {
			return nil, err
		}
		root := strings.TrimSuffix(mnt, "/") + "/.zfs/snapshot/" + name
		p, err := under(src.Path, mnt, root, "snapshot_mount")
		if err != nil {
			return nil, err
		}
		snap := ds + "@" + name
		return &snapshotPlan{kind: kind, path: p, created: snap,
			create: "zfs snapshot " + shq(snap),
			remove: "zfs destroy " + shq(snap)}, nil
	case "lvm":
		vg, lv, size := o["lvm_vg"], o["lvm_lv"], o["lvm_size"]
		for opt, v := range map[string]string{"lvm_vg": vg, "lvm_lv": lv} {
			if !lvmNameRE.MatchString(v) || v == "." || v == ".." {
				return nil, fmt.Errorf("snapshot: option %s %q: want an LVM name", opt, v)
			}
		}
		if !lvmSizeRE.MatchString(size) {
			return nil, fmt.Errorf("snapshot: option lvm_size %q: want a size such as 2G", size)
		}
		mnt := o["snapshot_mount"]
		if err := checkSnapPath("snapshot_mount", mnt); err != nil {
			return nil, err
		}
		dir := o["snapshot_dir"]
		if dir == "" {
			dir = "/run/cairn-snapshots"
		}
		if err := checkSnapPath("snapshot_dir", dir); err != nil {
			return nil, err
		}
		at := strings.TrimSuffix(dir, "/") + "/" + name
		p, err := under(src.Path, mnt, at, "snapshot_mount")
		if err != nil {
			return nil, err
		}
		snapLV := vg + "/" + name
		// The device node: /dev/mapper escapes a - in a name as --.
		dev := "/dev/mapper/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(name, "-", "--")
		return &snapshotPlan{kind: kind, path: p, created: snapLV + " at " + at,
			create: "lvcreate -q -s -n " + shq(name) + " -L " + shq(size) + " " + shq(vg+"/"+lv) +
				" && mkdir -p " + shq(at) + " && mount -o ro " + shq(dev) + " " + shq(at),
			// Unmount only our mountpoint (a failure is fine: it may not
			// be mounted yet), then remove exactly our LV.
			remove: "{ ! mountpoint -q " + shq(at) + " || umount " + shq(at) + "; }; rmdir " + shq(at) +
				" 2>/dev/null; lvremove -q -f " + shq(snapLV)}, nil
	case "btrfs":
		sv := o["btrfs_subvolume"]
		if err := checkSnapPath("btrfs_subvolume", sv); err != nil {
			return nil, err
		}
		at := strings.TrimSuffix(sv, "/") + "/." + name
		p, err := under(src.Path, sv, at, "btrfs_subvolume")
		if err != nil {
			return nil, err
		}
		return &snapshotPlan{kind: kind, path: p, created: at,
			create: "btrfs -q subvolume snapshot -r " + shq(sv) + " " + shq(at),
			remove: "btrfs -q subvolume delete " + shq(at)}, nil
	case "fsfreeze":
		mnt := o["fsfreeze_mount"]
		if err := checkSnapPath("fsfreeze_mount", mnt); err != nil {
			return nil, err
		}
		if mnt == "/" {
			return nil, fmt.Errorf("snapshot: fsfreeze_mount: never the root filesystem (the SSH login to thaw it would hang)")
		}
		if _, err := under(src.Path, mnt, mnt, "fsfreeze_mount"); err != nil {
			return nil, err
		}
		return &snapshotPlan{kind: kind, path: src.Path, created: "frozen " + mnt,
			create: "fsfreeze -f " + shq(mnt),
			remove: "fsfreeze -u " + shq(mnt)}, nil
	}
	return nil, fmt.Errorf("snapshot %q: want zfs, lvm, btrfs or fsfreeze", kind)
}

// snapshotTaken, when set (tests), is called once a snapshot exists and
// before the pull, with the job's context.
var snapshotTaken func(ctx context.Context, jobID int64, plan *snapshotPlan)
