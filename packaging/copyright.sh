#!/usr/bin/env bash
# Prints the Debian copyright file (machine-readable format 1.0) for the
# given Go binaries: connetd's own paragraph from packaging/copyright.in,
# then one paragraph per Go module linked into them (go version -m), with
# the copyright lines and license text from the module cache.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: copyright.sh BINARY..." >&2; exit 2; }

modcache=$(go env GOMODCACHE)
goroot=$(go env GOROOT)

# The module cache spells upper-case letters as !lower-case (\L is GNU
# sed's; bash's ${var//} cannot lower-case a match).
# shellcheck disable=SC2001
escape() { sed 's/[A-Z]/!\L&/g' <<<"$1"; }

# license ID of a module, from packaging/licenses.
license_of() { awk -v m="$1" '$1 == m { print $2 }' packaging/licenses; }

# DEP-5 continuation lines: one leading space, "." for blank lines.
indent() { sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /'; }

# "go version -m" lists a binary's modules as "dep PATH VERSION SUM" (a
# replaced module adds "=> PATH VERSION SUM").
mapfile -t mods < <(for b in "$@"; do go version -m "$b"; done |
	awk '$1 == "dep" { print $2, $3 }' | sort -u)
gover=$(go version "$1" | awk '{ print $2 }')

sed "s|@MAINTAINER@|$(cat packaging/maintainer)|" packaging/copyright.in

paragraph() { # module version dir
	local mod=$1 ver=$2 dir=$3 id text copyrights notice=""
	id=$(license_of "$mod")
	if [ -z "$id" ]; then
		echo "copyright.sh: $mod is linked but has no license in packaging/licenses; read its LICENSE and add it" >&2
		exit 1
	fi
	text=$(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'COPYING*' \) | sort | head -n1)
	[ -n "$text" ] || { echo "copyright.sh: no license file in $dir" >&2; exit 1; }
	copyrights=$(grep -E '^[[:space:]]*Copyright (\(c\) |©)?[0-9]' "$text" "$dir/NOTICE" 2>/dev/null |
		sed -E 's/^[^:]*:[[:space:]]*Copyright (\(c\) |©)?//' | sort -u || true)
	[ -n "$copyrights" ] || copyrights="the authors of $mod"
	printf '\nFiles: go-modules/%s/*\n' "$mod"
	printf 'Copyright:'
	printf '%s\n' "$copyrights" | sed 's/^/ /'
	printf 'License: %s\n' "$id"
	printf 'Comment: %s %s, statically linked into the binaries.\n' "$mod" "$ver"
	if [ -f "$dir/NOTICE" ]; then
		notice=$(cat "$dir/NOTICE")
		printf ' Its NOTICE file reads:\n .\n'
		printf '%s\n' "$notice" | indent
	fi
	if [ "$id" = Apache-2.0 ]; then
		printf ' .\n On Debian systems, the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n'
	else
		# BSD and MIT texts name their copyright holders: keep each one.
		printf ' .\n The license text of %s:\n .\n' "$mod"
		indent <"$text"
	fi
}

paragraph std "$gover" "$goroot" | sed 's|^Files: go-modules/std/\*|Files: go-stdlib/*|'
for m in "${mods[@]}"; do
	read -r mod ver <<<"$m"
	paragraph "$mod" "$ver" "$modcache/$(escape "$mod")@$ver"
done
