package appliance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Disk is one attached disk in GET /api/v1/system/disks.
type Disk struct {
	Name  string `json:"name"` // kernel name: vdb, sda, nvme0n1
	Path  string `json:"path"` // /dev/vdb
	Size  int64  `json:"size"` // bytes
	Model string `json:"model,omitempty"`
	// Empty is true when the disk has no partitions and its first MiB is
	// all zeros: only such a disk is formatted without a confirmation.
	Empty bool `json:"empty"`
	// FSType is what the start of the whole disk holds: a file system
	// (ext4, xfs, btrfs, vfat, swap, …), a partition table (gpt, dos), or
	// "data" for unrecognised non-zero bytes.
	FSType     string      `json:"fstype,omitempty"`
	Label      string      `json:"label,omitempty"`
	Partitions []Partition `json:"partitions,omitempty"`
	// InUse is true when the disk or one of its partitions is mounted,
	// used as swap or held by another device (LVM, RAID): never formatted.
	InUse   bool   `json:"in_use"`
	InUseBy string `json:"in_use_by,omitempty"`
}

// Partition is one partition of a Disk.
type Partition struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	FSType string `json:"fstype,omitempty"`
	Label  string `json:"label,omitempty"`
}

// DiskUseInput is the body of POST /api/v1/system/disks/use.
type DiskUseInput struct {
	Disk string `json:"disk"`
	// Confirm must equal Disk when the disk is not empty: everything on it
	// is erased.
	Confirm string `json:"confirm,omitempty"`
}

// DiskUseBody answers POST /api/v1/system/disks/use (202): the disk is
// formatted and the appliance restarts to move its data there.
type DiskUseBody struct {
	Disk   string `json:"disk"`
	Path   string `json:"path"`
	Label  string `json:"label"`
	Status string `json:"status"` // "restarting"
}

func (s *Server) handleDisks(r *http.Request, _ *principal) (any, error) {
	if err := s.appliance(); err != nil {
		return nil, err
	}
	disks, err := s.sys.listDisks()
	if err != nil {
		return nil, err
	}
	return disks, nil
}

func (s *Server) handleDiskUse(w http.ResponseWriter, r *http.Request, _ *principal) {
	if err := s.appliance(); err != nil {
		s.writeErr(w, r, err)
		return
	}
	var in DiskUseInput
	if err := decode(r, &in); err != nil {
		s.writeErr(w, r, err)
		return
	}
	d, err := s.prepareDisk(r.Context(), in)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.log.Info("data disk formatted; restarting to move the data dir there", "disk", d.Path, "label", DataLabel, "by", principalOf(r))
	writeJSON(w, http.StatusAccepted, DiskUseBody{Disk: d.Name, Path: d.Path, Label: DataLabel, Status: "restarting"})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.sys.mu.Lock()
	s.sys.moveTo = d.Path
	if s.sys.restart != nil {
		s.sys.restart()
	}
	s.sys.mu.Unlock()
}

// prepareDisk checks a use-disk request and formats the disk.
func (s *Server) prepareDisk(ctx context.Context, in DiskUseInput) (*Disk, error) {
	if in.Disk == "" {
		return nil, badRequest("disk: give the name of a disk from GET /api/v1/system/disks")
	}
	if m := s.sys.dataMount(s.dataDir); m.persistent {
		return nil, &httpError{http.StatusConflict, fmt.Sprintf("the data dir %s is already on %s: it is not moved again", s.dataDir, m.source)}
	}
	disks, err := s.sys.listDisks()
	if err != nil {
		return nil, err
	}
	var d *Disk
	for i := range disks {
		if disks[i].Name == in.Disk {
			d = &disks[i]
		}
	}
	switch {
	case d == nil:
		return nil, notFound("disk %q: no such disk (see GET /api/v1/system/disks)", in.Disk)
	case d.InUse:
		return nil, &httpError{http.StatusConflict, fmt.Sprintf("disk %s is in use (%s): it is never formatted", d.Name, d.InUseBy)}
	case in.Confirm != "" && in.Confirm != d.Name:
		return nil, badRequest("confirm %q does not match the disk name %q", in.Confirm, d.Name)
	case !d.Empty && in.Confirm != d.Name:
		what := d.FSType
		if len(d.Partitions) > 0 {
			what = fmt.Sprintf("%d partition(s)", len(d.Partitions))
		}
		return nil, &httpError{http.StatusConflict, fmt.Sprintf("disk %s is not empty (%s): formatting erases it; send \"confirm\": %q to do it anyway", d.Name, what, d.Name)}
	}
	if err := formatDisk(ctx, d.Path, !d.Empty); err != nil {
		return nil, err
	}
	return d, nil
}

// formatDisk makes an ext4 file system labelled DataLabel on the whole
// disk, first wiping old signatures when it was not empty.
func formatDisk(ctx context.Context, dev string, wipe bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if wipe {
		if out, err := exec.CommandContext(ctx, "wipefs", "-a", dev).CombinedOutput(); err != nil {
			return fmt.Errorf("wipefs %s: %v: %s", dev, err, bytes.TrimSpace(out))
		}
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-F", "-q", "-L", DataLabel, "-m", "1",
		"-E", "lazy_itable_init=1,lazy_journal_init=1", dev).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %v: %s", dev, err, bytes.TrimSpace(out))
	}
	return nil
}

// listDisks reads /sys/block: whole disks only (no CD-ROMs, RAM disks,
// device-mapper or loop devices, unless includeLoop lists loop devices
// with a backing file).
func (e *sysEnv) listDisks() ([]Disk, error) {
	ents, err := os.ReadDir(filepath.Join(e.sysfs, "block"))
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	mounts := e.mountedDevs()
	swaps := readSwaps()
	var out []Disk
	for _, ent := range ents {
		name := ent.Name()
		sys := filepath.Join(e.sysfs, "block", name)
		switch {
		case strings.HasPrefix(name, "loop"):
			if !e.includeLoop {
				continue
			}
			if b, err := os.ReadFile(filepath.Join(sys, "loop/backing_file")); err != nil || len(bytes.TrimSpace(b)) == 0 {
				continue
			}
		case strings.HasPrefix(name, "ram"), strings.HasPrefix(name, "zram"), strings.HasPrefix(name, "sr"),
			strings.HasPrefix(name, "fd"), strings.HasPrefix(name, "dm-"), strings.HasPrefix(name, "md"),
			strings.HasPrefix(name, "nbd"):
			continue
		}
		if readInt(filepath.Join(sys, "ro")) == 1 {
			continue
		}
		d := Disk{Name: name, Path: filepath.Join(e.dev, name), Size: readInt(filepath.Join(sys, "size")) * 512}
		if d.Size == 0 {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(sys, "device/model")); err == nil {
			d.Model = strings.TrimSpace(string(b))
		}
		devs := []string{readString(filepath.Join(sys, "dev"))}
		parts, _ := os.ReadDir(sys)
		for _, p := range parts {
			psys := filepath.Join(sys, p.Name())
			if _, err := os.Stat(filepath.Join(psys, "partition")); err != nil {
				continue
			}
			pt := Partition{Name: p.Name(), Size: readInt(filepath.Join(psys, "size")) * 512}
			pt.FSType, pt.Label, _ = probeDevice(filepath.Join(e.dev, p.Name()))
			d.Partitions = append(d.Partitions, pt)
			devs = append(devs, readString(filepath.Join(psys, "dev")))
			if holders, _ := os.ReadDir(filepath.Join(psys, "holders")); len(holders) > 0 {
				d.InUse, d.InUseBy = true, p.Name()+" is held by "+holders[0].Name()
			}
		}
		var zero bool
		d.FSType, d.Label, zero = probeDevice(d.Path)
		d.Empty = zero && len(d.Partitions) == 0
		if holders, _ := os.ReadDir(filepath.Join(sys, "holders")); len(holders) > 0 {
			d.InUse, d.InUseBy = true, "held by "+holders[0].Name()
		}
		for _, dv := range devs {
			if mp, ok := mounts[dv]; ok {
				d.InUse, d.InUseBy = true, "mounted at "+mp
			}
		}
		for _, sw := range swaps {
			if sw == d.Path || strings.HasPrefix(sw, d.Path) {
				d.InUse, d.InUseBy = true, "swap on "+sw
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func readInt(path string) int64 {
	n, _ := strconv.ParseInt(readString(path), 10, 64)
	return n
}

func readSwaps() []string {
	b, _ := os.ReadFile("/proc/swaps")
	var out []string
	for i, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); i > 0 && len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

// probeDevice reads the start of a device and names what it holds;
// zero is true when its first MiB is all zeros.
func probeDevice(path string) (fstype, label string, zero bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n, _ := io.ReadFull(f, buf)
	buf = buf[:n]
	fstype, label = probeSignature(buf)
	zero = n > 0 && fstype == "" && bytes.Count(buf, []byte{0}) == n
	if fstype == "" && !zero && n > 0 {
		fstype = "data"
	}
	return fstype, label, zero
}

// probeSignature recognises the common file systems and partition tables
// by their magic numbers.
func probeSignature(b []byte) (fstype, label string) {
	at := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case len(b) >= 1024+136 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53:
		label = strings.TrimRight(string(b[1024+120:1024+136]), "\x00")
		incompat := binary.LittleEndian.Uint32(b[1024+96:])
		compat := binary.LittleEndian.Uint32(b[1024+92:])
		switch {
		case incompat&0x40 != 0: // extents
			return "ext4", label
		case compat&0x4 != 0: // journal
			return "ext3", label
		}
		return "ext2", label
	case at(0, "XFSB"):
		return "xfs", strings.TrimRight(string(b[108:120]), "\x00")
	case at(65536+64, "_BHRfS_M"):
		return "btrfs", ""
	case at(0, "LUKS\xba\xbe"):
		return "crypto_LUKS", ""
	case at(512+24, "LVM2 001") || at(512, "LABELONE"):
		return "LVM2_member", ""
	case at(4086, "SWAPSPACE2"), at(4086, "SWAP-SPACE"):
		return "swap", ""
	case at(32769, "CD001"):
		return "iso9660", ""
	case at(3, "NTFS    "):
		return "ntfs", ""
	case at(512, "EFI PART"):
		return "gpt", ""
	case at(54, "FAT") || at(82, "FAT32"):
		return "vfat", ""
	case len(b) >= 512 && b[510] == 0x55 && b[511] == 0xAA:
		return "dos", ""
	}
	return "", ""
}

// mountInfo is where a directory lives.
type mountInfo struct {
	point, fstype, source, dev string
	persistent                 bool
}

// volatileFS are file systems whose content is lost at reboot.
var volatileFS = map[string]bool{"tmpfs": true, "ramfs": true, "overlay": true, "aufs": true, "squashfs": true, "rootfs": true}

// readMountinfo parses /proc/self/mountinfo.
func (e *sysEnv) readMountinfo() []mountInfo {
	f, err := os.Open(e.mountinfo)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountInfo
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 2 {
			continue
		}
		out = append(out, mountInfo{point: unescapeMount(a[4]), dev: a[2], fstype: b[0], source: unescapeMount(b[1])})
	}
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountedDevs maps "major:minor" to a mount point.
func (e *sysEnv) mountedDevs() map[string]string {
	m := map[string]string{}
	for _, mi := range e.readMountinfo() {
		m[mi.dev] = mi.point
	}
	return m
}

// dataMount is the mount holding dir (the last, longest matching entry).
func (e *sysEnv) dataMount(dir string) mountInfo {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	var best mountInfo
	for _, mi := range e.readMountinfo() {
		if mi.point == dir || mi.point == "/" || strings.HasPrefix(dir, mi.point+"/") {
			if len(mi.point) >= len(best.point) {
				best = mi
			}
		}
	}
	best.persistent = best.point != "" && !volatileFS[best.fstype]
	return best
}

// mountByLabel mounts the disk or partition labelled DataLabel on dir
// and returns its path ("" when there is none).
func (e *sysEnv) mountByLabel(dir string) (string, error) {
	disks, err := e.listDisks()
	if err != nil {
		return "", err
	}
	var busy []string
	for _, d := range disks {
		cands := []string{}
		if d.Label == DataLabel {
			cands = append(cands, d.Path)
		}
		for _, p := range d.Partitions {
			if p.Label == DataLabel {
				cands = append(cands, filepath.Join(e.dev, p.Name))
			}
		}
		for _, c := range cands {
			if d.InUse {
				// Mounted elsewhere already: not ours to take.
				busy = append(busy, c+" ("+d.InUseBy+")")
				continue
			}
			if err := mountExt4(c, dir); err != nil {
				return "", err
			}
			return c, nil
		}
	}
	if len(busy) > 0 {
		return "", fmt.Errorf("every disk labelled %s is in use: %s", DataLabel, strings.Join(busy, ", "))
	}
	return "", nil
}

func mountExt4(dev, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, dir, err)
	}
	return nil
}

func unmount(dir string) error {
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
