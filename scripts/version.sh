#!/usr/bin/env bash
# Prints connetd's version: VERSION, exactly, when HEAD is tagged v$(VERSION);
# otherwise VERSION+gitYYYYMMDDHHMMSS.COMMIT (the commit's UTC time, so that
# snapshots sort in commit order for dpkg and rpm), with .dirty for a tree
# with uncommitted changes. Without git, VERSION alone.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(tr -d ' \n' <VERSION)
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "$base"
	exit 0
fi
if [ "$(git tag --points-at HEAD "v$base" 2>/dev/null)" = "v$base" ] && git diff --quiet HEAD 2>/dev/null; then
	echo "$base"
	exit 0
fi
when=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)
v="$base+git$when.$(git rev-parse --short=7 HEAD)"
if ! git diff --quiet HEAD 2>/dev/null; then
	v="$v.dirty"
fi
echo "$v"
