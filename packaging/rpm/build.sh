#!/usr/bin/env bash
# Builds dist/connetd-VERSION-1.ARCH.rpm from the staging tree of
# `make install` (first argument) into the output directory (second
# argument), offline, with rpmbuild. VERSION and SOURCE_DATE_EPOCH come from
# the environment, as for the Debian package. RPM_ARCH is rpm's name for the
# architecture the staged binaries are for (default: this machine's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
stage=$(cd "${1:?usage: build.sh STAGE OUTDIR}" && pwd)
out=${2:?usage: build.sh STAGE OUTDIR}
: "${VERSION:?set VERSION}" "${SOURCE_DATE_EPOCH:?set SOURCE_DATE_EPOCH}"

if [ -n "${RPM_ARCH:-}" ]; then
	arch=$RPM_ARCH
else
	case $(go env GOARCH) in
	amd64) arch=x86_64 ;;
	arm64) arch=aarch64 ;;
	386) arch=i686 ;;
	*) arch=$(go env GOARCH) ;;
	esac
fi

top=$(mktemp -d "${TMPDIR:-/tmp}/connetd-rpm.XXXXXX")
trap 'rm -rf "$top"' EXIT
mkdir -p "$top/SPECS" "$top/RPMS" "$top/BUILD"

# The file list: everything staged; /etc files are configuration the
# administrator may edit; the directories that are only ours are owned.
files=$top/files
{
	echo '%attr(2750,root,connetd) %dir /etc/connet'
	echo '%dir /usr/share/doc/connetd'
	echo '%dir /usr/share/doc/connetd/examples'
	(cd "$stage" && find . -type f -printf '/%P\n' | LC_ALL=C sort) | while read -r f; do
		case $f in
		/etc/*) echo "%config(noreplace) $f" ;;
		*) echo "$f" ;;
		esac
	done
} >"$files"

date=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y')
awk -v version="$VERSION" -v date="$date" -v maint="$(cat "$here/../maintainer")" \
	-v files="$files" -v sysusers="$stage/usr/lib/sysusers.d/connetd.conf" '
	/^@FILES@$/ { while ((getline l < files) > 0) print l; next }
	/^@SYSUSERS@$/ { while ((getline l < sysusers) > 0) print l; next }
	{ gsub(/@VERSION@/, version); gsub(/@DATE@/, date); gsub(/@MAINTAINER@/, maint); print }
' "$here/connetd.spec.in" >"$top/SPECS/connetd.spec"

rpmbuild -bb --quiet --target "$arch" \
	--define "_topdir $top" --define "stagedir $stage" \
	--define "_rpmdir $top/RPMS" --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
	"$top/SPECS/connetd.spec" >"$top/rpmbuild.log" 2>&1 || { cat "$top/rpmbuild.log" >&2; exit 1; }
mkdir -p "$out"
rpm=$(find "$top/RPMS" -name '*.rpm' | head -n1)
cp "$rpm" "$out/"
echo "$out/$(basename "$rpm")"
