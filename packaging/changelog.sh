#!/usr/bin/env bash
# Prints the Debian-format changelog for VERSION (first argument): the
# entries of packaging/changelog, headed by a snapshot entry when VERSION is
# not the latest of them (a build between releases), dated SOURCE_DATE_EPOCH
# (second argument) so that the output is reproducible.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: changelog.sh VERSION EPOCH}
epoch=${2:?usage: changelog.sh VERSION EPOCH}
latest=$(sed -n '1s/^connetd (\([^)]*\)).*/\1/p' packaging/changelog)
if [ "$version" != "$latest" ]; then
	commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
	printf 'connetd (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Snapshot of git commit %s after %s.\n\n' "$commit" "$latest"
	printf ' -- %s  %s\n\n' "$(cat packaging/maintainer)" "$(LC_ALL=C date -u -R -d "@$epoch")"
fi
cat packaging/changelog
