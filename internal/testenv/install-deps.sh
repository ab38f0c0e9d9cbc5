#!/bin/sh
# install-deps.sh installs what the test suite needs. It is idempotent and
# takes well under 5 s when everything is already present.
#
#  1. Debian packages (apt-get, as root; otherwise it prints the command and
#     exits 0, or 1 under CI=true).
#  2. Node.js and npm (Debian's nodejs/npm unless a node is already on PATH),
#     then the npm packages of the Playwright suite, from its lockfile
#     (npm ci --prefix appliance/web/e2e; skipped when node_modules matches).
#  3. The S3 test server (VersityGW), built once with `go install` into a cache
#     directory outside the repo. internal/testenv finds it there; the binary is
#     never committed.
#
# Environment: CAIRN_TESTENV_CACHE overrides the cache directory
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/cairn-testenv).
set -eu

# Keep this list in sync with what internal/testenv and the tests shell out to
# (the last line: the peers make bench measures, so make deps covers it too).
PKGS="fuse3 samba smbclient openssh-server openssh-client vsftpd rsync postgresql
mariadb-server mariadb-client litmus cadaver davfs2 rclone openssl passwd util-linux libpam-modules coreutils ca-certificates
prometheus chromium btrfs-progs lvm2
debootstrap squashfs-tools xorriso grub-pc-bin grub-efi-amd64-bin grub-common mtools
qemu-system-x86 ovmf e2fsprogs unzip xz-utils
restic borgbackup python3-llfuse time lftp"
# Node.js for the Playwright suite (appliance/web/e2e). A node installed
# otherwise (NodeSource's nodejs bundles npm and conflicts with Debian's
# npm package) is kept.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

# VersityGW: Apache-2.0, posix backend, builds with Go 1.26 in about a minute.
S3_MODULE=github.com/versity/versitygw/cmd/versitygw
S3_VERSION=v1.8.0

# Same rule as testenv.CacheDir().
if [ -n "${CAIRN_TESTENV_CACHE:-}" ]; then
	CACHE=$CAIRN_TESTENV_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
	CACHE=$XDG_CACHE_HOME/cairn-testenv
elif [ -n "${HOME:-}" ]; then
	CACHE=$HOME/.cache/cairn-testenv
else
	CACHE=${TMPDIR:-/tmp}/cairn-testenv-cache
fi
BIN=$CACHE/bin

# One dpkg-query for all packages (a few ms); unknown packages count as missing.
# shellcheck disable=SC2086
installed=" $(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $PKGS 2>/dev/null |
	awk '$2 == "installed" { printf "%s ", $1 }')"
missing=""
for p in $PKGS; do
	case "$installed" in
	*" $p "*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	echo "deps: debian packages: all present"
else
	cmd="apt-get install -y --no-install-recommends$missing"
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: debian packages missing:$missing"
		echo "deps: run as root: apt-get update && DEBIAN_FRONTEND=noninteractive $cmd"
		if [ "${CI:-}" = true ]; then exit 1; fi
	else
		echo "deps: installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		log=$(mktemp)
		# shellcheck disable=SC2086
		if ! { apt-get -o DPkg::Lock::Timeout=600 update &&
			apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $missing; } >"$log" 2>&1; then
			cat "$log"
			rm -f "$log"
			echo "deps: apt-get failed"
			exit 1
		fi
		rm -f "$log"
		echo "deps: debian packages: installed"
	fi
fi

stamp=$BIN/versitygw.version
if [ -x "$BIN/versitygw" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$S3_VERSION" ]; then
	echo "deps: s3 server: $BIN/versitygw ($S3_VERSION) present"
elif ! command -v go >/dev/null 2>&1; then
	echo "deps: s3 server: go not on PATH, cannot build $S3_MODULE@$S3_VERSION"
	if [ "${CI:-}" = true ]; then exit 1; fi
else
	echo "deps: s3 server: building $S3_MODULE@$S3_VERSION into $BIN (about a minute, once)"
	mkdir -p "$BIN"
	# Build outside the repo so the project's go.mod is not consulted.
	log=$(mktemp)
	if ! (cd / && GOBIN=$BIN GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
		go install -trimpath -ldflags='-s -w' "$S3_MODULE@$S3_VERSION") >"$log" 2>&1; then
		cat "$log"
		rm -f "$log"
		echo "deps: s3 server: build failed"
		exit 1
	fi
	rm -f "$log"
	echo "$S3_VERSION" >"$stamp"
	echo "deps: s3 server: built $BIN/versitygw"
fi

# BackupPC's stock config files (for the BackupPC import tests): the package
# itself drags in a web server and an MTA, so only its files are extracted,
# into $CACHE/backuppc (etc/backuppc/hosts, usr/share/backuppc/conf/config.pl).
BPC=$CACHE/backuppc
if [ -f "$BPC/usr/share/backuppc/conf/config.pl" ] && [ -f "$BPC/etc/backuppc/hosts" ]; then
	echo "deps: backuppc config files: present in $BPC"
else
	tmp=$(mktemp -d)
	if (cd "$tmp" && apt-get download backuppc >/dev/null 2>&1) && mkdir -p "$BPC" &&
		dpkg-deb -x "$tmp"/backuppc_*.deb "$BPC"; then
		echo "deps: backuppc config files: extracted into $BPC"
	else
		echo "deps: backuppc config files: apt-get download backuppc failed"
		rm -rf "$tmp"
		if [ "${CI:-}" = true ]; then exit 1; fi
	fi
	rm -rf "$tmp"
fi

# The Playwright suite's npm packages (playwright-core; it drives Debian's
# chromium, so no browser download). npm ci wipes node_modules, so a stamp
# with the lockfile's digest says whether it is already installed.
E2E=$(cd "$(dirname "$0")/../../appliance/web/e2e" && pwd)
stamp=$E2E/node_modules/.cairn-lock.sha256
want=$(sha256sum "$E2E/package-lock.json" | cut -d' ' -f1)
if [ -f "$E2E/node_modules/playwright-core/package.json" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	echo "deps: npm packages: $E2E/node_modules matches package-lock.json"
elif ! command -v npm >/dev/null 2>&1; then
	echo "deps: npm packages: npm not on PATH, cannot install $E2E"
	if [ "${CI:-}" = true ]; then exit 1; fi
else
	echo "deps: npm packages: npm ci --prefix $E2E"
	log=$(mktemp)
	if npm ci --prefix "$E2E" --no-audit --no-fund >"$log" 2>&1; then
		echo "$want" >"$stamp"
		echo "deps: npm packages: installed"
	else
		cat "$log"
		echo "deps: npm packages: npm ci failed"
		rm -f "$log"
		if [ "${CI:-}" = true ]; then exit 1; fi
	fi
	rm -f "$log"
fi
