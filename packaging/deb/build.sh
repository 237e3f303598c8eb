#!/usr/bin/env bash
# Builds dist/connetd_VERSION_ARCH.deb from the staging tree of `make install`
# (first argument) into the output directory (second argument), offline,
# with dpkg-deb. VERSION and SOURCE_DATE_EPOCH come from the environment (the
# Makefile sets both); the package is reproducible for a given commit.
# DEB_ARCH is the Debian architecture the staged binaries are for (default:
# this machine's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
stage=${1:?usage: build.sh STAGE OUTDIR}
out=${2:?usage: build.sh STAGE OUTDIR}
: "${VERSION:?set VERSION}" "${SOURCE_DATE_EPOCH:?set SOURCE_DATE_EPOCH}"
arch=${DEB_ARCH:-$(dpkg --print-architecture)}

root=$(mktemp -d "${TMPDIR:-/tmp}/connetd-deb.XXXXXX")
trap 'rm -rf "$root"' EXIT
cp -a "$stage/." "$root/"

install -d -m 0755 "$root/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "$here/$s" "$root/DEBIAN/$s"
done
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
# Debian-only: lintian overrides, each with its reason (lintian-overrides).
install -D -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/connetd"
# Every conffile must be in the tree.
while read -r f; do
	[ -f "$root$f" ] || { echo "deb: conffile $f is not in the staging tree" >&2; exit 1; }
done <"$here/conffiles"

size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" \
	-e "s|@MAINTAINER@|$(cat "$here/../maintainer")|" "$here/control.in" >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
	xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

# Files keep the modes make install gave them; umask must not narrow the
# directories mktemp made.
chmod 0755 "$root"
mkdir -p "$out"
deb="$out/connetd_${VERSION}_${arch}.deb"
SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
