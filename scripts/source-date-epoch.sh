#!/usr/bin/env bash
# Prints SOURCE_DATE_EPOCH for reproducible packages: the time of the
# commit, or of the VERSION file's last change when there is no git.
set -euo pipefail
cd "$(dirname "$0")/.."
if git rev-parse --git-dir >/dev/null 2>&1; then
	git log -1 --format=%ct
else
	stat -c %Y VERSION
fi
