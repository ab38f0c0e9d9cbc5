// Package iso builds the bootable appliance image and holds its boot test.
//
// # Building
//
// `make iso` runs iso/cmd/mkiso as root: debootstrap of Debian bookworm
// (minbase) into a chroot cached under /var/cache/cairn-iso (keyed by the
// lock list), apt-get install of exactly the versions in packages.lock
// (kernel, live-boot, systemd-networkd with DHCP, systemd-resolved, and
// what the pullers shell out to: rsync, openssh-client, smbclient,
// postgresql-client, mariadb-client, fuse3, xz-utils, zstd, btrfs-progs,
// lvm2, e2fsprogs), then the files of rootfs/ (the cairn.service unit, the
// network config), the static cairn binary as /usr/local/sbin/cairn, a
// zstd squashfs and a hybrid BIOS+UEFI ISO from grub-mkrescue. The ISO
// also holds the binary as /cairn.bin, so an uploaded ISO can update an
// appliance. Timestamps come from SOURCE_DATE_EPOCH (default: the lock's
// last commit). `go run ./iso/cmd/mkiso -update-lock` refreshes the lock
// when Debian's mirror has moved on. The build prints the ISO's sha256.
//
// # The running image
//
// cairn.service runs `cairn serve --appliance --data /var/lib/cairn
// --listen :443 --tls auto` (appliance.RunAppliance): it mounts the disk
// labelled CAIRN-DATA on the data dir, starts an uploaded update (slot B)
// or rolls it back, serves HTTPS with a self-signed certificate kept in the
// data dir, and writes the URL, the setup token and the certificate's
// SHA-256 fingerprint to tty1 and ttyS0. Until a data disk is chosen in the
// setup (POST /api/v1/system/disks/use) the data dir lives in RAM.
//
// # Tests
//
// TestUpdateAB runs the A/B update with real binaries (no VM). TestBoot
// boots the ISO in QEMU (TCG) and drives setup, the data disk, an SFTP
// backup, WebDAV and a reboot; it runs under CAIRN_ISO_TEST=1 (`make
// iso-test`) or CI=true.
//
// # Imports
//
// iso may import nothing of the module but internal/testenv in tests; it
// packs the built cairn binary.
package iso
