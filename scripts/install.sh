#!/usr/bin/env bash
# Stages everything the connetd packages install under DESTDIR (the first
# argument; empty installs onto this machine). `make install` runs it after
# `make build` and `make man`; `make deb` and `make rpm` package the tree it
# makes, so both packages hold the same files.
#
# Optional inputs, installed when they exist: the D-Bus policy
# units/org.connetd.Connetd1.conf and the completion completions/connetctl.bash.
set -euo pipefail
cd "$(dirname "$0")/.."
destdir=${1-}
bin=${BIN:-bin}
version=${VERSION:-$(scripts/version.sh)}
epoch=${SOURCE_DATE_EPOCH:-$(scripts/source-date-epoch.sh)}

for f in "$bin/connetd" "$bin/connetctl"; do
	[ -x "$f" ] || { echo "install: $f missing; run make build" >&2; exit 1; }
done

d() { printf '%s%s' "$destdir" "$1"; }
file() { install -D -m "$1" "$2" "$(d "$3")"; }

file 0755 "$bin/connetd" /usr/bin/connetd
file 0755 "$bin/connetctl" /usr/bin/connetctl

# systemd: the instance template, the endpoint readiness template
# (connetd-wait@INSTANCE:ENDPOINT), the socket units, the service user, the
# UDP buffer limits and the journal catalog.
unitdir=/usr/lib/systemd/system
file 0644 units/connetd@.service "$unitdir/connetd@.service"
file 0644 units/connetd-wait@.service "$unitdir/connetd-wait@.service"
for s in units/*.socket; do
	file 0644 "$s" "$unitdir/$(basename "$s")"
done
file 0644 units/connetd.sysusers /usr/lib/sysusers.d/connetd.conf
file 0644 units/connetd.sysctl /usr/lib/sysctl.d/60-connetd.conf
# The journal catalog: journalctl -x explains each event by its MESSAGE_ID.
file 0644 units/connetd.catalog /usr/lib/systemd/catalog/connetd.catalog
# polkit: lets user connetd start and stop connetd-ondemand-*.service (a
# destination's start-unit); inert without polkitd.
file 0644 units/connetd-ondemand.rules /usr/share/polkit-1/rules.d/50-connetd.rules

if [ -f units/org.connetd.Connetd1.conf ]; then
	file 0644 units/org.connetd.Connetd1.conf /usr/share/dbus-1/system.d/org.connetd.Connetd1.conf
else
	echo "install: units/org.connetd.Connetd1.conf not there yet; no D-Bus policy installed" >&2
fi
if [ -f completions/connetctl.bash ]; then
	file 0644 completions/connetctl.bash /usr/share/bash-completion/completions/connetctl
else
	echo "install: completions/connetctl.bash not there yet; no bash completion installed" >&2
fi

# Manual pages, compressed without names or times (reproducible).
for page in man/connetd.8 man/connetctl.1 man/connetd.toml.5; do
	section=${page##*.}
	install -d -m 0755 "$(d "/usr/share/man/man$section")"
	gzip -9nc "$page" >"$(d "/usr/share/man/man$section/$(basename "$page").gz")"
	chmod 0644 "$(d "/usr/share/man/man$section/$(basename "$page").gz")"
done

# Documentation: copyright, changelog, README and the example configurations.
doc=/usr/share/doc/connetd
install -d -m 0755 "$(d "$doc/examples")"
packaging/copyright.sh "$bin/connetd" "$bin/connetctl" >"$(d "$doc/copyright")"
chmod 0644 "$(d "$doc/copyright")"
packaging/changelog.sh "$version" "$epoch" | gzip -9n >"$(d "$doc/changelog.gz")"
chmod 0644 "$(d "$doc/changelog.gz")"
file 0644 README.md "$doc/README.md"
for e in docs/examples/*.toml; do
	file 0644 "$e" "$doc/examples/$(basename "$e")"
done

# /etc/connet: instance configurations (NAME.toml for connetd@NAME). The
# packages make it root:connetd 2750 once the group exists.
install -d -m 0755 "$(d /etc/connet)"
file 0644 packaging/etc-connet-README /etc/connet/README
