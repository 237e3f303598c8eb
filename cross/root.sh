#!/usr/bin/env bash
# Prints the path of a minimal Debian bookworm root for another CPU (the
# first argument, a Debian architecture; default arm64), building it when
# this machine has none cached: debootstrap --foreign downloads and unpacks,
# then the second stage runs inside the root under qemu-user-static
# (binfmt_misc, cross/binfmt.sh). The root is shared and must not be
# changed: callers copy it.
#
# Cache: $CROSS_CACHE (default /var/cache/connetd-cross), one directory per
# key, the key a hash of everything that goes into the root, as
# appliance/root.sh does: a root is used only once complete (marker file),
# and builds are serialized with a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-arm64}

suite=bookworm
variant=minbase
# What the package depends on (systemd, procps); dpkg -i installs no
# dependency, and the maintainer scripts call systemd-sysusers and
# systemd-sysctl.
packages=systemd,procps
mirror=${CROSS_MIRROR:-http://deb.debian.org/debian}
cache=${CROSS_CACHE:-/var/cache/connetd-cross}
format=1 # bump when this script changes what a root holds

key=$(printf '%s\n' "$format" "$suite" "$variant" "$packages" "$mirror" "$arch" | sha256sum | cut -c1-16)
root=$cache/$suite-$arch-$key

if [ -f "$root.complete" ]; then
	echo "$root"
	exit 0
fi

command -v debootstrap >/dev/null || { echo "root.sh: debootstrap not installed (apt-get install debootstrap)" >&2; exit 1; }
qemu=$(packaging/arch.sh qemu "$arch")
command -v "$qemu" >/dev/null || { echo "root.sh: $qemu not installed (apt-get install qemu-user-static)" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 1800 9 || { echo "root.sh: another build of the root holds $cache/.lock" >&2; exit 1; }
if [ -f "$root.complete" ]; then # built while we waited
	echo "$root"
	exit 0
fi

registered=$(cross/binfmt.sh on "$arch")
tmp=$(mktemp -d "$cache/.build.XXXXXX")
cleanup() {
	# The second stage mounts /proc and /sys in the root; a failed one may
	# leave them.
	for m in proc sys; do
		! mountpoint -q "$tmp/root/$m" || umount -l "$tmp/root/$m"
	done
	rm -rf --one-file-system "$tmp"
	[ "$registered" != registered ] || cross/binfmt.sh off "$arch"
}
trap cleanup EXIT
start=$SECONDS
echo "root.sh: debootstrap --foreign --arch=$arch --variant=$variant --include=$packages $suite ($mirror)" >&2
if ! debootstrap --foreign --arch="$arch" --variant="$variant" --include="$packages" "$suite" "$tmp/root" "$mirror" >"$tmp/log" 2>&1; then
	tail -n 30 "$tmp/log" >&2
	echo "root.sh: debootstrap (first stage) failed" >&2
	exit 1
fi
echo "root.sh: first stage took $((SECONDS - start)) s; second stage under $qemu" >&2
# Debian's custom: the emulator inside the root, for tools that chroot
# without binfmt's F flag.
install -m 0755 "$(command -v "$qemu")" "$tmp/root/usr/bin/$qemu"
start=$SECONDS
if ! chroot "$tmp/root" /debootstrap/debootstrap --second-stage >"$tmp/log" 2>&1; then
	tail -n 30 "$tmp/log" >&2
	echo "root.sh: debootstrap --second-stage failed" >&2
	exit 1
fi
echo "root.sh: second stage took $((SECONDS - start)) s" >&2
rm -rf "$root"
mv "$tmp/root" "$root"
touch "$root.complete"
echo "$root"
