#!/usr/bin/env bash
# Prints the path of a minimal Debian bookworm root for the appliance test,
# building it with debootstrap when this machine has none cached. The root
# is shared and must not be changed: callers copy it.
#
# Cache: $APPLIANCE_CACHE (default /var/cache/connetd-appliance), one
# directory per key, the key a hash of everything that goes into the root,
# so a changed package list builds a new one. A root is only used once it is
# complete (marker file), and builds are serialized with a lock, so an
# interrupted or concurrent run never leaves a half-made root in use.
set -euo pipefail

suite=bookworm
variant=minbase
# systemd as PID 1, D-Bus for connetctl, procps for /bin/kill (the unit's
# ExecReload; the package depends on it), polkitd for the on-demand
# destination (user connetd starting a unit: systemd asks polkit, and
# without it only root may; it needs a logind, which debootstrap does not
# pick for it: libpam-systemd provides one); everything else the test needs is in minbase
# (bash, coreutils, util-linux, apt, dpkg).
packages=systemd,systemd-sysv,dbus,procps,libpam-systemd,polkitd
mirror=${APPLIANCE_MIRROR:-http://deb.debian.org/debian}
cache=${APPLIANCE_CACHE:-/var/cache/connetd-appliance}
format=1 # bump when this script changes what a root holds

key=$(printf '%s\n' "$format" "$suite" "$variant" "$packages" "$mirror" | sha256sum | cut -c1-16)
root=$cache/$suite-$key

if [ -f "$root.complete" ]; then
	echo "$root"
	exit 0
fi

command -v debootstrap >/dev/null || { echo "root.sh: debootstrap not installed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 900 9 || { echo "root.sh: another build of the root holds $cache/.lock" >&2; exit 1; }
if [ -f "$root.complete" ]; then # built while we waited
	echo "$root"
	exit 0
fi

tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT
echo "root.sh: debootstrap --variant=$variant --include=$packages $suite ($mirror)" >&2
if ! debootstrap --variant="$variant" --include="$packages" "$suite" "$tmp/root" "$mirror" >"$tmp/log" 2>&1; then
	tail -n 30 "$tmp/log" >&2
	echo "root.sh: debootstrap failed" >&2
	exit 1
fi
rm -rf "$root"
mv "$tmp/root" "$root"
touch "$root.complete"
echo "$root"
