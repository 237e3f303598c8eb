#!/usr/bin/env bash
# Checks the packages `make deb` and `make rpm` built (arguments: the .deb and
# the .rpm): lintian, the rpm queries, the same files in both, an rpm install
# into an empty rpm root and, with its scriptlets, into a Debian root, and
# ShellCheck on the packaging scripts. Further arguments are the packages
# of other architectures (`make packages-all`): each .deb gets lintian, and
# each package the file list and binaries built for its architecture (ELF
# machine, GOARCH and its variant, static); an .rpm's binaries must be its
# .deb's. Prints each check with PASS or FAIL and exits 1 if any failed.
# The checks are functions that check() calls by name (SC2317). They run
# with pipefail: "producer | grep -q" would fail when grep's early exit kills
# the producer with SIGPIPE, so they let grep read everything (>/dev/null).
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:?usage: check.sh DEB RPM [PACKAGE...]}
rpm=${2:?usage: check.sh DEB RPM [PACKAGE...]}
shift 2
others=("$@")

work=$(mktemp -d "${TMPDIR:-/tmp}/connetd-check.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
failed=0

# check NAME COMMAND...: runs COMMAND with errexit (any failing command in a
# check function fails the check), prints PASS or FAIL with its output.
check() {
	local name=$1 out rc
	shift
	set +e
	out=$(set -e; "$@" 2>&1)
	rc=$?
	set -e
	if [ $rc -eq 0 ]; then
		printf 'PASS  %s\n' "$name"
		[ -z "${VERBOSE:-}" ] || printf '%s\n' "$out" | sed 's/^/      /'
	else
		printf 'FAIL  %s\n' "$name"
		printf '%s\n' "$out" | tail -n 40 | sed 's/^/      /'
		failed=1
	fi
}

for f in "$deb" "$rpm" "${others[@]}"; do
	[ -f "$f" ] || { echo "check.sh: $f not found" >&2; exit 1; }
done

# Files every package must hold (optional inputs only when they exist).
expected=(
	/usr/bin/connetd /usr/bin/connetctl
	/usr/lib/systemd/system/connetd@.service /usr/lib/systemd/system/connetd-wait@.service
	/usr/lib/systemd/system/connetd-server-control.socket
	/usr/lib/systemd/system/connetd-server-relay.socket
	/usr/lib/systemd/system/connetd-client-direct.socket
	/usr/lib/sysusers.d/connetd.conf /usr/lib/sysctl.d/60-connetd.conf
	/usr/lib/systemd/catalog/connetd.catalog
	/usr/share/polkit-1/rules.d/50-connetd.rules
	/usr/share/man/man8/connetd.8.gz /usr/share/man/man1/connetctl.1.gz
	/usr/share/man/man5/connetd.toml.5.gz
	/usr/share/doc/connetd/copyright /usr/share/doc/connetd/changelog.gz
	/usr/share/doc/connetd/examples/server.toml /etc/connet/README
)
[ ! -f units/org.connetd.Connetd1.conf ] || expected+=(/usr/share/dbus-1/system.d/org.connetd.Connetd1.conf)
[ ! -f completions/connetctl.bash ] || expected+=(/usr/share/bash-completion/completions/connetctl)

has_all() { # LISTFILE: every expected path is listed
	local missing=0
	for p in "${expected[@]}"; do
		grep -qxF "$p" "$1" || { echo "missing: $p"; missing=1; }
	done
	return "$missing"
}

# --- Debian package
lintian_clean() {
	# --fail-on makes errors and warnings fatal; overrides carry reasons
	# (packaging/deb/lintian-overrides).
	lintian --pedantic --fail-on error,warning "$deb"
}
check "lintian: no errors or warnings (pedantic)" lintian_clean

dpkg-deb -c "$deb" | awk '{ print substr($6, 2) }' | sed 's|/$||' | grep -v '^$' | sort >"$work/deb.files"
check "deb: holds every file" has_all "$work/deb.files"
deb_conffiles() {
	dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | tee /dev/stderr | grep -xF /etc/connet/README >/dev/null
}
check "deb: /etc/connet/README is a conffile" deb_conffiles
deb_binaries_static() {
	local d=$work/debx
	dpkg-deb -x "$deb" "$d"
	for b in "$d/usr/bin/connetd" "$d/usr/bin/connetctl"; do
		file "$b"
		# No shared library: Go's linker, no cgo.
		if readelf -d "$b" | grep NEEDED >/dev/null; then echo "$b needs shared libraries"; return 1; fi
		go version -m "$b" | grep -E 'CGO_ENABLED=0|-trimpath' | sed 's/^/  /'
		go version -m "$b" | grep 'CGO_ENABLED=0' >/dev/null || { echo "$b: not built with CGO_ENABLED=0"; return 1; }
		go version -m "$b" | grep -- '-trimpath=true' >/dev/null || { echo "$b: not built with -trimpath"; return 1; }
	done
}
check "deb: binaries need no shared library, built with CGO_ENABLED=0 -trimpath" deb_binaries_static

# --- RPM package
rpm -qpl "$rpm" 2>/dev/null | sort >"$work/rpm.files"
check "rpm -qpl: holds every file" has_all "$work/rpm.files"
same_files() {
	# The .deb adds only Debian's lintian overrides; directories are listed
	# by dpkg only.
	comm -3 <(grep -v '^/usr/share/lintian' "$work/deb.files" | while read -r p; do [ -d "$work/debx$p" ] || echo "$p"; done) \
		<(while read -r p; do [ -d "$work/debx$p" ] || echo "$p"; done <"$work/rpm.files") | tee /dev/stderr | grep . >/dev/null && return 1
	return 0
}
check "deb and rpm hold the same files (one staging tree)" same_files
rpm_scripts() {
	local s
	s=$(rpm -qp --scripts "$rpm" 2>/dev/null)
	for want in 'preinstall scriptlet' 'systemd-sysusers' 'postinstall scriptlet' 'systemd-sysctl' 'update-catalog' 'daemon-reload' \
		'preuninstall scriptlet' "stop 'connetd-\*.socket'" "stop 'connetd@\*.service'" 'posttrans scriptlet' "try-restart 'connetd@\*.service'"; do
		grep -q -- "$want" <<<"$s" || { echo "rpm --scripts lacks: $want"; return 1; }
	done
	if grep -qE 'systemctl (enable|start) ' <<<"$s"; then echo "a scriptlet enables or starts a unit"; return 1; fi
}
check "rpm --scripts: sysusers, sysctl, catalog, reload, stop on removal, restart on upgrade, never enable" rpm_scripts
rpm_configfiles() {
	[ "$(rpm -qp --configfiles "$rpm" 2>/dev/null)" = /etc/connet/README ]
}
check "rpm --configfiles: /etc/connet/README" rpm_configfiles

rpm_into_empty_root() {
	local r=$work/rpmroot
	mkdir -p "$r"
	rpm --root "$r" --initdb
	# Payload only: an empty root has no /bin/sh for the scriptlets, and no
	# systemd to satisfy Requires.
	rpm --root "$r" -i --nodeps --noscripts "$rpm"
	rpm --root "$r" -V --nodeps connetd
	[ -x "$r/usr/bin/connetd" ]
	rpm --root "$r" -e --nodeps --noscripts connetd
	[ ! -e "$r/usr/bin/connetd" ]
}
check "rpm: installs, verifies (rpm -V) and erases in an empty rpm root" rpm_into_empty_root

rpm_into_debian_root() {
	local base r
	base=$(appliance/root.sh)
	r=$work/debroot
	cp -a --reflink=auto "$base" "$r"
	rpm --root "$r" --initdb
	# With scriptlets: %pre creates the user before /etc/connet gets its
	# group. systemd comes from dpkg, which rpm cannot see: --nodeps.
	rpm --root "$r" -i --nodeps "$rpm"
	chroot "$r" getent passwd connetd
	chroot "$r" getent group connetd-admin
	[ "$(chroot "$r" stat -c '%U:%G %a' /etc/connet)" = "root:connetd 2750" ] || { chroot "$r" stat -c '%U:%G %a' /etc/connet; return 1; }
	rpm --root "$r" -V --nodeps connetd
	echo "local change" >>"$r/etc/connet/README"
	rpm --root "$r" -e --nodeps connetd
	[ ! -e "$r/usr/bin/connetd" ]
	# rpm keeps an edited configuration file as .rpmsave.
	[ -f "$r/etc/connet/README.rpmsave" ]
}
if [ "${PACKAGE_CHECK_NO_ROOT:-}" = 1 ]; then
	printf 'SKIP  rpm: install with scriptlets into a Debian root (PACKAGE_CHECK_NO_ROOT=1)\n'
elif [ "$(id -u)" -ne 0 ]; then
	printf 'SKIP  rpm: install with scriptlets into a Debian root (needs root for debootstrap and chroot)\n'
else
	check "rpm: installs with scriptlets, verifies and erases in a Debian root (no rpm-based root can be built offline here)" rpm_into_debian_root
fi

reproducible() {
	# A second build of the same tree in another directory, with an empty
	# Go build cache, must give byte-identical packages.
	local src=$work/src
	mkdir -p "$src"
	git ls-files -z --cached --others --exclude-standard | grep -zv -e '^bin/' -e '^dist/' |
		xargs -0 cp --parents -t "$src" 2>/dev/null || true
	cp -a .git "$src/.git"
	GOCACHE=$work/gocache make -C "$src" --no-print-directory deb rpm >"$work/rebuild.log" 2>&1 ||
		{ tail -n 20 "$work/rebuild.log"; return 1; }
	sha256sum "$deb" "$rpm" "$src/$deb" "$src/$rpm"
	cmp "$deb" "$src/$deb"
	cmp "$rpm" "$src/$rpm"
}
if [ "${PACKAGE_CHECK_NO_REBUILD:-}" = 1 ]; then
	printf 'SKIP  reproducible (PACKAGE_CHECK_NO_REBUILD=1)\n'
else
	check "reproducible: a rebuild elsewhere with an empty build cache gives identical .deb and .rpm" reproducible
fi

# --- Other architectures
# binaries_for DIR DEBARCH: DIR/usr/bin's binaries are static Go programs
# for DEBARCH, built as packaging/arch.sh says.
binaries_for() {
	local dir=$1 arch=$2 elf machine class b setting
	elf=$(packaging/arch.sh elf "$arch")
	machine=${elf%|*} class=${elf#*|}
	for b in "$dir/usr/bin/connetd" "$dir/usr/bin/connetctl"; do
		readelf -h "$b" | grep -E '^ *(Class|Machine):' | sed "s|^ *|  $(basename "$b"): |"
		readelf -h "$b" | grep -E "^ *Machine: *$machine\$" >/dev/null || { echo "$b: not a $machine binary"; return 1; }
		readelf -h "$b" | grep -E "^ *Class: *$class\$" >/dev/null || { echo "$b: not $class"; return 1; }
		if readelf -d "$b" | grep NEEDED >/dev/null; then echo "$b needs shared libraries"; return 1; fi
		for setting in CGO_ENABLED=0 -trimpath=true $(packaging/arch.sh go "$arch"); do
			go version -m "$b" | grep -E "^[[:space:]]+build[[:space:]]+$setting\$" >/dev/null ||
				{ echo "$b: not built with $setting"; go version -m "$b" | grep -E '^[[:space:]]+build'; return 1; }
		done
	done
}
# (pkg, not p: has_all's loop variable is not local.)
other_deb() {
	local pkg=$1 arch=$2 d=$work/other-$2
	lintian --pedantic --fail-on error,warning "$pkg"
	dpkg-deb -c "$pkg" | awk '{ print substr($6, 2) }' | sed 's|/$||' | grep -v '^$' | sort >"$d.files"
	has_all "$d.files"
	rm -rf "$d"
	dpkg-deb -x "$pkg" "$d"
	binaries_for "$d" "$arch"
}
other_rpm() {
	local pkg=$1 arch=$2 d=$work/otherrpm-$2 want
	want=$(packaging/arch.sh rpm "$arch")
	[ "$(rpm -qp --qf '%{ARCH}' "$pkg" 2>/dev/null)" = "$want" ] || { echo "$pkg: rpm architecture is not $want"; return 1; }
	rpm -qpl "$pkg" 2>/dev/null | sort >"$d.files"
	has_all "$d.files"
	rm -rf "$d"
	mkdir -p "$d"
	# Payload only, as into the empty root above; another CPU's.
	rpm --root "$d" --initdb
	rpm --root "$d" -i --nodeps --noscripts --ignorearch "$pkg"
	binaries_for "$d" "$arch"
	# One staging tree per architecture: the .deb's binaries, byte for byte.
	[ -d "$work/other-$arch" ] || { echo "no .deb for $arch given before the .rpm"; return 1; }
	cmp "$d/usr/bin/connetd" "$work/other-$arch/usr/bin/connetd"
	cmp "$d/usr/bin/connetctl" "$work/other-$arch/usr/bin/connetctl"
}
rpm_to_deb_arch() { # rpm's architecture name to Debian's
	local a
	for a in amd64 arm64 armhf armel mips64el mipsel riscv64 i386; do
		[ "$(packaging/arch.sh rpm "$a")" != "$1" ] || { echo "$a"; return 0; }
	done
	return 1
}
for p in "${others[@]}"; do
	case $p in
	*.deb)
		a=$(dpkg-deb -f "$p" Architecture)
		check "$a: lintian clean (pedantic), every file, $a binaries without shared libraries ($(packaging/arch.sh go "$a"))" other_deb "$p" "$a"
		;;
	*.rpm)
		a=$(rpm_to_deb_arch "$(rpm -qp --qf '%{ARCH}' "$p" 2>/dev/null)") || a=unknown
		check "$a: .rpm $(rpm -qp --qf '%{ARCH}' "$p" 2>/dev/null): every file, the .deb's binaries" other_rpm "$p" "$a"
		;;
	*)
		echo "check.sh: $p is neither .deb nor .rpm" >&2
		exit 1
		;;
	esac
done

if command -v shellcheck >/dev/null; then
	check "shellcheck: packaging and appliance scripts" shellcheck -x \
		packaging/*.sh packaging/deb/build.sh packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm \
		packaging/rpm/build.sh appliance/*.sh scripts/install.sh scripts/version.sh scripts/source-date-epoch.sh \
		scripts/deps.sh cross/*.sh
else
	printf 'SKIP  shellcheck: not installed (apt-get install shellcheck)\n'
fi

exit $failed
