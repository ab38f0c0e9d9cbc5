// Command mkiso builds the Cairn appliance ISO: a Debian bookworm minbase
// live system (kernel, live-boot, systemd-networkd with DHCP, the tools the
// pullers shell out to) with the static cairn binary and its systemd unit,
// packed as a squashfs in a hybrid BIOS+UEFI ISO made by grub-mkrescue.
//
// Usage (as root; `make iso` runs it):
//
//	go run ./iso/cmd/mkiso -cairn bin/cairn -version v1.2.3 -out dist/cairn-v1.2.3.iso
//
// The debootstrap chroot is cached in -cache (default /var/cache/cairn-iso),
// keyed by the lock list, so a rebuild only re-packs. Package versions are
// pinned by iso/packages.lock (every installed package, name=version); a
// build whose chroot differs from the lock fails, and -update-lock rewrites
// the lock from a fresh chroot. Timestamps in the squashfs and the ISO are
// set from SOURCE_DATE_EPOCH (default: the lock file's last git commit
// time, else 0). The ISO's sha256 is printed at the end.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// packages are installed on top of minbase (the lock pins them and their
// dependencies).
var packages = []string{
	"linux-image-amd64", "live-boot", "systemd-sysv", "udev", "systemd-resolved",
	"iproute2", "ca-certificates", "kmod", "procps", "util-linux", "e2fsprogs",
	// What the pullers and hooks shell out to.
	"rsync", "openssh-client", "smbclient", "postgresql-client", "mariadb-client",
	"fuse3", "xz-utils", "zstd", "btrfs-progs", "lvm2",
}

const suite = "bookworm"

func main() {
	log := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "mkiso: "+format+"\n", args...)
	}
	cairn := flag.String("cairn", "bin/cairn", "the static cairn binary to ship")
	version := flag.String("version", "dev", "version in the ISO's name and label")
	out := flag.String("out", "", "output ISO (default dist/cairn-VERSION.iso)")
	cache := flag.String("cache", "/var/cache/cairn-iso", "cache directory (debootstrap chroot, staging)")
	mirror := flag.String("mirror", "http://deb.debian.org/debian", "Debian mirror")
	security := flag.String("security", "http://deb.debian.org/debian-security", "Debian security mirror")
	lock := flag.String("lock", "iso/packages.lock", "package lock list (name=version per line)")
	updateLock := flag.Bool("update-lock", false, "build a fresh chroot with the newest packages and rewrite the lock")
	rootfs := flag.String("rootfs", "iso/rootfs", "files copied over the chroot (unit, network config)")
	flag.Parse()
	if *out == "" {
		*out = filepath.Join("dist", "cairn-"+*version+".iso")
	}
	b := &builder{cairn: *cairn, version: *version, out: *out, cache: *cache, mirror: *mirror,
		security: *security, lock: *lock, updateLock: *updateLock, rootfs: *rootfs, log: log}
	start := time.Now()
	if err := b.run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkiso:", err)
		os.Exit(1)
	}
	log("done in %s", time.Since(start).Round(time.Second))
}

type builder struct {
	cairn, version, out, cache, mirror, security, lock, rootfs string
	updateLock                                                 bool
	log                                                        func(string, ...any)
	epoch                                                      int64
	path                                                       string // PATH for sh, "" = inherited
}

func (b *builder) run() error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root (debootstrap, chroot and mounts)")
	}
	for _, tool := range []string{"debootstrap", "mksquashfs", "grub-mkrescue", "xorriso", "mformat"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: run `make deps` (it installs debootstrap, squashfs-tools, grub-pc-bin, grub-efi-amd64-bin, xorriso, mtools)", tool)
		}
	}
	if err := checkStatic(b.cairn); err != nil {
		return err
	}
	b.epoch = sourceDateEpoch(b.lock)
	pinned, err := readLock(b.lock)
	if err != nil && !b.updateLock {
		return fmt.Errorf("%w (run with -update-lock to create it)", err)
	}
	key := "chroot-" + lockKey(pinned, b.updateLock)
	root := filepath.Join(b.cache, key)
	if _, err := os.Stat(filepath.Join(root, ".cairn-complete")); err != nil {
		t := time.Now()
		if err := b.bootstrap(root, pinned); err != nil {
			return err
		}
		b.log("chroot ready in %s", time.Since(t).Round(time.Second))
	} else {
		b.log("using cached chroot %s", root)
	}
	got, err := installedVersions(root)
	if err != nil {
		return err
	}
	if b.updateLock {
		if err := writeLock(b.lock, got); err != nil {
			return err
		}
		b.log("wrote %s (%d packages)", b.lock, len(got))
		// Re-key the cache by the new lock so the next build finds it.
		final := filepath.Join(b.cache, "chroot-"+lockKey(got, false))
		if final != root {
			os.RemoveAll(final)
			if err := os.Rename(root, final); err != nil {
				return err
			}
			root = final
		}
	} else if diff := diffLock(pinned, got); diff != "" {
		return fmt.Errorf("chroot differs from %s:\n%s(run with -update-lock to accept the new versions)", b.lock, diff)
	}
	if err := b.customize(root); err != nil {
		return err
	}
	return b.pack(root)
}

// bootstrap makes the cached chroot: debootstrap minbase, then the
// packages at their pinned versions.
func (b *builder) bootstrap(root string, pinned map[string]string) error {
	tmp := root + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(b.cache, 0o755); err != nil {
		return err
	}
	b.log("debootstrap %s minbase into %s", suite, tmp)
	if err := b.sh("", "debootstrap", "--variant=minbase", suite, tmp, b.mirror); err != nil {
		return err
	}
	sources := fmt.Sprintf("deb %[1]s %[3]s main\ndeb %[1]s %[3]s-updates main\ndeb %[2]s %[3]s-security main\n",
		b.mirror, b.security, suite)
	if err := os.WriteFile(filepath.Join(tmp, "etc/apt/sources.list"), []byte(sources), 0o644); err != nil {
		return err
	}
	// No daemons start inside the chroot.
	policy := filepath.Join(tmp, "usr/sbin/policy-rc.d")
	if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return err
	}
	umount, err := mountChroot(tmp)
	if err != nil {
		return err
	}
	defer umount()
	args := []string{tmp, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "Acquire::Retries=3", "install", "-y", "-q",
		"--no-install-recommends", "--allow-downgrades"}
	if len(pinned) == 0 {
		args = append(args, packages...)
	} else {
		names := make([]string, 0, len(pinned))
		for n := range pinned {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			args = append(args, n+"="+pinned[n])
		}
	}
	b.log("apt-get install (%d packages)", len(args))
	if err := b.sh("", "chroot", tmp, "apt-get", "-q", "update"); err != nil {
		return err
	}
	if err := b.sh("", "chroot", args...); err != nil {
		return fmt.Errorf("%w (a pinned version may have left the mirror: run with -update-lock)", err)
	}
	umount()
	os.Remove(policy)
	// Caches and docs are not shipped.
	for _, g := range []string{"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*",
		"usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*", "var/log/*.log", "var/log/apt/*"} {
		m, _ := filepath.Glob(filepath.Join(tmp, g))
		for _, p := range m {
			os.RemoveAll(p)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".cairn-complete"), nil, 0o644); err != nil {
		return err
	}
	os.RemoveAll(root)
	return os.Rename(tmp, root)
}

// customize writes our files into the chroot: idempotent, done on every
// build (the binary and unit change, the packages do not).
func (b *builder) customize(root string) error {
	err := filepath.WalkDir(b.rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b.rootfs, p)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		return copyFile(p, dst, 0o644)
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", b.rootfs, err)
	}
	// live-boot writes /etc/network/interfaces (there is no ifupdown).
	if err := os.MkdirAll(filepath.Join(root, "etc/network"), 0o755); err != nil {
		return err
	}
	if err := copyFile(b.cairn, filepath.Join(root, "usr/local/sbin/cairn"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/cairn-release"), []byte("CAIRN_VERSION="+b.version+"\n"), 0o644); err != nil {
		return err
	}
	for _, c := range [][]string{
		{"systemctl", "enable", "cairn.service", "systemd-networkd.service", "systemd-resolved.service"},
		{"systemctl", "mask", "systemd-networkd-wait-online.service"},
	} {
		if err := b.sh("", "chroot", append([]string{root}, c...)...); err != nil {
			return err
		}
	}
	// A fresh machine-id at every boot; an empty file makes systemd
	// generate one.
	return os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444)
}

// pack makes the squashfs and the ISO.
func (b *builder) pack(root string) error {
	// A fresh staging dir per build; no log file may be written into it
	// (xorriso fails when a file changes size while it packs).
	stage, err := os.MkdirTemp(b.cache, "stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, d := range []string{"live", "boot/grub"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return err
		}
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot/vmlinuz-*"))
	initrds, _ := filepath.Glob(filepath.Join(root, "boot/initrd.img-*"))
	if len(kernels) != 1 || len(initrds) != 1 {
		return fmt.Errorf("want one kernel and one initrd in %s/boot, found %d and %d", root, len(kernels), len(initrds))
	}
	for src, dst := range map[string]string{kernels[0]: "live/vmlinuz", initrds[0]: "live/initrd.img", b.cairn: "cairn.bin"} {
		if err := copyFile(src, filepath.Join(stage, dst), 0o644); err != nil {
			return err
		}
	}
	grub := `set timeout=1
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
menuentry "Cairn ` + b.version + `" {
	linux /live/vmlinuz boot=live components quiet console=tty0 console=ttyS0,115200 systemd.show_status=auto
	initrd /live/initrd.img
}
`
	if err := os.WriteFile(filepath.Join(stage, "boot/grub/grub.cfg"), []byte(grub), 0o644); err != nil {
		return err
	}
	epoch := strconv.FormatInt(b.epoch, 10)
	t := time.Now()
	b.log("mksquashfs (SOURCE_DATE_EPOCH=%s)", epoch)
	if err := b.sh("", "mksquashfs", root, filepath.Join(stage, "live/filesystem.squashfs"), "-comp", "zstd",
		"-Xcompression-level", "6", "-noappend", "-no-progress", "-quiet", "-no-xattrs", "-all-time", epoch, "-mkfs-time", epoch,
		"-wildcards", "-e", "boot", "proc/*", "sys/*", "dev/*", "run/*", "tmp/*", ".cairn-complete",
		// Kernel modules a backup appliance never loads.
		"usr/lib/modules/*/kernel/sound", "usr/lib/modules/*/kernel/drivers/gpu", "usr/lib/modules/*/kernel/drivers/media",
		"usr/lib/modules/*/kernel/drivers/net/wireless", "usr/lib/modules/*/kernel/drivers/infiniband",
		"usr/lib/modules/*/kernel/drivers/staging", "usr/lib/modules/*/kernel/drivers/bluetooth",
		"usr/lib/modules/*/kernel/net/wireless", "usr/lib/modules/*/kernel/net/mac80211", "usr/lib/modules/*/kernel/net/bluetooth"); err != nil {
		return err
	}
	b.log("squashfs in %s", time.Since(t).Round(time.Second))
	// Fixed mtimes in the ISO tree too.
	ts := time.Unix(b.epoch, 0)
	filepath.WalkDir(stage, func(p string, _ fs.DirEntry, _ error) error { return os.Chtimes(p, ts, ts) })
	if err := os.MkdirAll(filepath.Dir(b.out), 0o755); err != nil {
		return err
	}
	tmpOut := b.out + ".tmp"
	label := "CAIRN"
	// grub-mkrescue's EFI image gets a random FAT serial from mformat
	// (the only part SOURCE_DATE_EPOCH does not fix): a wrapper first on
	// PATH passes a fixed one.
	wrap, err := os.MkdirTemp(b.cache, "bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(wrap)
	mformat, err := exec.LookPath("mformat")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(wrap, "mformat"), []byte("#!/bin/sh\nexec "+mformat+" -N 43414952 \"$@\"\n"), 0o755); err != nil {
		return err
	}
	b.path = wrap + string(os.PathListSeparator) + os.Getenv("PATH")
	isoDate := time.Unix(b.epoch, 0).UTC().Format("20060102150405") + "00"
	err = b.sh(epoch, "grub-mkrescue", "-o", tmpOut, "--locales=", "--themes=", "--fonts=", stage, "--", "-volid", label,
		// grub's own files are made now: every date in the image is the
		// epoch (xorriso native commands, after grub-mkrescue's).
		"-alter_date_r", "b", isoDate, "/", "--", "-alter_date_r", "c", isoDate, "/", "--")
	b.path = ""
	if err != nil {
		return err
	}
	if err := os.Rename(tmpOut, b.out); err != nil {
		return err
	}
	sum, size, err := fileSHA256(b.out)
	if err != nil {
		return err
	}
	fmt.Printf("%s  %s\n", sum, b.out)
	b.log("%s: %.1f MiB", b.out, float64(size)/(1<<20))
	return os.WriteFile(b.out+".sha256", []byte(sum+"  "+filepath.Base(b.out)+"\n"), 0o644)
}

// sh runs a command with its output on stderr; epoch, when set, is
// exported as SOURCE_DATE_EPOCH.
func (b *builder) sh(epoch, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// mksquashfs refuses SOURCE_DATE_EPOCH together with -all-time: it
	// is only exported where asked for.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOURCE_DATE_EPOCH=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C")
	if b.path != "" {
		cmd.Env = append(cmd.Env, "PATH="+b.path)
	}
	if epoch != "" {
		cmd.Env = append(cmd.Env, "SOURCE_DATE_EPOCH="+epoch)
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args[:min(len(args), 4)], " "), err)
	}
	return nil
}

func mountChroot(root string) (func(), error) {
	var done []string
	umount := func() {
		for i := len(done) - 1; i >= 0; i-- {
			exec.Command("umount", "-l", done[i]).Run()
		}
		done = nil
	}
	for _, m := range [][]string{
		{"-t", "proc", "proc", "proc"}, {"-t", "sysfs", "sysfs", "sys"},
		{"--bind", "/dev", "dev"}, {"--bind", "/dev/pts", "dev/pts"},
	} {
		target := filepath.Join(root, m[len(m)-1])
		args := append(append([]string{}, m[:len(m)-1]...), target)
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			umount()
			return nil, fmt.Errorf("mount %s: %v: %s", target, err, out)
		}
		done = append(done, target)
	}
	return umount, nil
}

// checkStatic refuses a missing, non-ELF or dynamically linked binary:
// the image has no Go toolchain and the binary must not depend on its libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("cairn binary %s: %w (run `make build` first)", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("cairn binary %s is dynamically linked: build with CGO_ENABLED=0", path)
		}
	}
	return nil
}

func readLock(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lock list: %w", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, ver, ok := strings.Cut(line, "=")
		if !ok || name == "" || ver == "" {
			return nil, fmt.Errorf("%s:%d: want name=version, got %q", path, n, line)
		}
		m[name] = ver
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("lock list %s is empty", path)
	}
	return m, sc.Err()
}

func writeLock(path string, m map[string]string) error {
	var buf bytes.Buffer
	buf.WriteString("# Every package of the appliance image at its pinned version (debian " + suite + ").\n")
	buf.WriteString("# Generated by `go run ./iso/cmd/mkiso -update-lock`; mkiso installs exactly these.\n")
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&buf, "%s=%s\n", n, m[n])
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// lockKey names the chroot cache after the lock's content.
func lockKey(m map[string]string, fresh bool) string {
	if fresh || len(m) == 0 {
		return "fresh"
	}
	h := sha256.New()
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s=%s\n", n, m[n])
	}
	fmt.Fprintf(h, "%s\n", strings.Join(packages, " "))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func installedVersions(root string) (map[string]string, error) {
	out, err := exec.Command("chroot", root, "dpkg-query", "-W", "-f", "${Package}=${Version} ${db:Status-Status}\n").Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-query in %s: %w", root, err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		pv, st, ok := strings.Cut(line, " ")
		if !ok || st != "installed" {
			continue
		}
		n, v, _ := strings.Cut(pv, "=")
		m[n] = v
	}
	return m, nil
}

func diffLock(want, got map[string]string) string {
	var b strings.Builder
	for n, v := range want {
		if g, ok := got[n]; !ok {
			fmt.Fprintf(&b, "  %s: locked %s, not installed\n", n, v)
		} else if g != v {
			fmt.Fprintf(&b, "  %s: locked %s, installed %s\n", n, v, g)
		}
	}
	for n, v := range got {
		if _, ok := want[n]; !ok {
			fmt.Fprintf(&b, "  %s: installed %s, not in the lock\n", n, v)
		}
	}
	return b.String()
}

// sourceDateEpoch is $SOURCE_DATE_EPOCH, else the last commit time of the
// lock list, else 0.
func sourceDateEpoch(lock string) int64 {
	if v, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return v
	}
	out, err := exec.Command("git", "log", "-1", "--format=%ct", "--", lock).Output()
	if v, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && perr == nil {
		return v
	}
	return 0
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".mkiso-tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
