#!/usr/bin/env bash
# Installs what connetd's tests, demo and benchmarks need on Debian.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# command:package — systemd-analyze, systemd-sysusers and
# systemd-socket-activate for the unit and activation tests; ip for the
# network monitor's test and the NAT lab, iptables and sysctl for the NAT
# lab; dbus-daemon and setpriv for the D-Bus tests; mandoc and man for the
# manual pages (under CI, a test missing any of these fails rather than
# skips: internal/testenv); dpkg-deb, rpmbuild, lintian, readelf, file
# and shellcheck for the packages (make package-check); debootstrap,
# systemd-nspawn and nsenter for the appliance test (make test-appliance);
# node to run the polkit rule as polkit would (units tests);
# qemu-user-static and ss for the other architectures' test (make
# test-cross); conntrack for the NAT lab's dump of its routers' tables
# when a row fails to go direct.
for tool in openssl:openssl curl:curl systemd-analyze:systemd systemd-sysusers:systemd systemd-socket-activate:systemd \
	ip:iproute2 iptables:iptables sysctl:procps dbus-daemon:dbus setpriv:util-linux \
	mandoc:mandoc man:man-db dpkg-deb:dpkg rpmbuild:rpm lintian:lintian readelf:binutils file:file \
	shellcheck:shellcheck debootstrap:debootstrap systemd-nspawn:systemd-container nsenter:util-linux \
	node:nodejs qemu-aarch64-static:qemu-user-static ss:iproute2 conntrack:conntrack; do
	cmd=${tool%%:*} pkg=${tool##*:}
	command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need_apt[*]}; run as root or: sudo apt-get install ${need_apt[*]}" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# extract_tool CMD PACKAGE: installs /usr/bin/CMD of a Debian package to
# /usr/local/bin without installing the package, whose maintainer scripts
# would start a server we do not want running: promtool (the metrics and
# rules tests) from prometheus, etcd (the cluster tests, which run their
# own members on random loopback ports: internal/etcdtest) from etcd-server.
extract_tool() {
	local cmd=$1 pkg=$2 tmp
	command -v "$cmd" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing $cmd; run as root to extract it from the $pkg package" >&2
		exit 1
	fi
	tmp=$(mktemp -d)
	# apt-get download writes as _apt when it can: let it.
	chmod 0777 "$tmp"
	apt-get update -qq
	(cd "$tmp" && apt-get download -qq "$pkg")
	dpkg-deb -x "$tmp/${pkg}"_*.deb "$tmp/root"
	install -m 0755 "$tmp/root/usr/bin/$cmd" "/usr/local/bin/$cmd"
	rm -rf "$tmp"
}
extract_tool promtool prometheus
extract_tool etcd etcd-server

staticcheck_version=$(sed -n 's/^STATICCHECK_VERSION = //p' Makefile)
if ! "$(go env GOPATH)/bin/staticcheck" -version 2>/dev/null | grep -q "(${staticcheck_version#v})"; then
	go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi
