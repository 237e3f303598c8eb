#!/usr/bin/env bash
# Makes the kernel run DEBARCH's executables with qemu-user-static
# (binfmt_misc), so that a chroot into a foreign root can exec them: the
# second stage of debootstrap, dpkg's maintainer scripts.
# usage: binfmt.sh on DEBARCH   registers the handler if it is missing and
#                               prints "registered" when it did so
#        binfmt.sh off DEBARCH  removes the handler
# The handlers are Debian's own (/usr/lib/binfmt.d/qemu-*.conf, from
# qemu-user-static), with the F flag: the kernel opens the emulator when
# registering, so a chroot needs no copy of it. binfmt_misc is mounted when
# it is not (a container's /proc/sys/fs/binfmt_misc often is not).
set -euo pipefail
cd "$(dirname "$0")/.."
op=${1:?usage: binfmt.sh on|off DEBARCH}
arch=${2:?usage: binfmt.sh on|off DEBARCH}
qemu=$(packaging/arch.sh qemu "$arch")
name=${qemu%-static}
dir=/proc/sys/fs/binfmt_misc
conf=/usr/lib/binfmt.d/$name.conf

case $op in
on)
	command -v "$qemu" >/dev/null || { echo "binfmt.sh: $qemu missing (apt-get install qemu-user-static)" >&2; exit 1; }
	[ -f "$conf" ] || { echo "binfmt.sh: $conf missing (qemu-user-static)" >&2; exit 1; }
	if [ ! -e "$dir/register" ]; then
		mount -t binfmt_misc binfmt_misc "$dir" ||
			{ echo "binfmt.sh: cannot mount binfmt_misc on $dir (needs root, and a container allowed to)" >&2; exit 1; }
	fi
	if [ -e "$dir/$name" ]; then
		grep -qx enabled "$dir/$name" || echo 1 >"$dir/$name"
		exit 0
	fi
	cat "$conf" >"$dir/register" || { echo "binfmt.sh: the kernel refused $conf" >&2; exit 1; }
	echo registered
	;;
off)
	[ ! -e "$dir/$name" ] || echo -1 >"$dir/$name"
	;;
*)
	echo "usage: binfmt.sh on|off DEBARCH" >&2
	exit 2
	;;
esac
