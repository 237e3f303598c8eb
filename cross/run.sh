#!/usr/bin/env bash
# The packages of other architectures, run (cross/README.md): every
# architecture's binaries start under qemu-user; the arm64 and armhf ones
# carry a tunnel on loopback (server, destination, source and an echo
# service, all of that architecture, each under explicit qemu); the arm64
# .deb installs, with its maintainer scripts, into a Debian arm64 root and
# purges again. Prints each check with PASS or FAIL and its time, and exits
# 1 if any failed.
# Every architecture's binaries are plain static executables (no loader, no
# sysroot): qemu-user runs them as they are.
# usage: run.sh DIST (the directory `make packages-all` filled)
# The checks are functions that check() calls by name (SC2317).
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:?usage: run.sh DIST}
version=${VERSION:-$(scripts/version.sh)}
tunnel_arches=${CROSS_TUNNEL_ARCHES:-arm64 armhf}
root_arch=${CROSS_ROOT_ARCH:-arm64}

host=$(dpkg --print-architecture)

work=$(mktemp -d "${TMPDIR:-/tmp}/connetd-cross.XXXXXX")
registered=
base=
cleanup() {
	[ "$registered" != registered ] || cross/binfmt.sh off "$root_arch"
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT
pids=()
failed=0

# check NAME COMMAND...: as in packaging/check.sh, with the time it took.
check() {
	local name=$1 out rc start=$SECONDS
	shift
	set +e
	out=$(set -e; "$@" 2>&1)
	rc=$?
	set -e
	if [ $rc -eq 0 ]; then
		printf 'PASS  %s (%d s)\n' "$name" $((SECONDS - start))
		[ -z "${VERBOSE:-}" ] || printf '%s\n' "$out" | sed 's/^/      /'
	else
		printf 'FAIL  %s (%d s)\n' "$name" $((SECONDS - start))
		printf '%s\n' "$out" | tail -n 40 | sed 's/^/      /'
		failed=1
	fi
}

deb_of() { echo "$dist/connetd_${version}_$1.deb"; }

# --- The Debian root of another CPU (cross/root.sh, cached), for the .deb.
# binfmt_misc runs its programs in a chroot.
if [ "$(id -u)" -eq 0 ]; then
	start=$SECONDS
	registered=$(cross/binfmt.sh on "$root_arch")
	if base=$(cross/root.sh "$root_arch"); then
		printf 'PASS  %s: Debian root %s (%d s)\n' "$root_arch" "$base" $((SECONDS - start))
	else
		printf 'FAIL  %s: Debian root (cross/root.sh) (%d s)\n' "$root_arch" $((SECONDS - start))
		base='' failed=1
	fi
else
	printf 'SKIP  %s: Debian root (needs root for debootstrap, binfmt_misc and chroot)\n' "$root_arch"
fi

# emulator DEBARCH: sets the array qemu to the command that runs DEBARCH's
# binaries (empty: natively). i386 runs natively on an amd64 kernel (IA32
# emulation): qemu-i386 (7.2) cannot run Go's 386 runtime, which dies at
# its first thread ("bad g in signal handler").
emulator() {
	if [ "$1" = "$host" ] || { [ "$1" = i386 ] && [ "$host" = amd64 ]; }; then
		qemu=()
		return 0
	fi
	qemu=("$(packaging/arch.sh qemu "$1")")
}

# unpack DEBARCH: the package's files under $work/pkg-DEBARCH.
unpack() {
	local d=$work/pkg-$1
	[ -d "$d" ] || dpkg-deb -x "$(deb_of "$1")" "$d"
	echo "$d"
}

# --- Every architecture starts
runs() {
	local arch=$1 qemu d out
	emulator "$arch"
	d=$(unpack "$arch")
	out=$("${qemu[@]}" "$d/usr/bin/connetd" version)
	echo "$out"
	[ "$out" = "connetd $version" ] || { echo "want: connetd $version"; return 1; }
	"${qemu[@]}" "$d/usr/bin/connetctl" help >/dev/null
}
for deb in "$dist"/connetd_"${version}"_*.deb; do
	[ -f "$deb" ] || { echo "run.sh: no packages of $version in $dist (make packages-all)" >&2; exit 1; }
	arch=$(dpkg-deb -f "$deb" Architecture)
	emulator "$arch"
	check "$arch: connetd version and connetctl help run ${qemu[*]:+under }${qemu[*]:-natively}" runs "$arch"
done

# --- A tunnel carried by foreign binaries
# ports N: N loopback ports no socket uses now, at random, below the
# ephemeral range (outgoing connections take no port from under us).
ports() {
	local used n=0 p picked=" "
	used=" $(ss -Htanu | awk '{ n = split($5, a, ":"); print a[n] }' | sort -u | tr '\n' ' ') "
	while [ "$n" -lt "$1" ]; do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range
		case "$used$picked" in *" $p "*) continue ;; esac
		picked+="$p "
		n=$((n + 1))
	done
	echo "$picked"
}

# roundtrip PORT FILE [SECONDS]: FILE's bytes come back through
# 127.0.0.1:PORT within SECONDS (default 120).
roundtrip() {
	local port=$1 file=$2 size
	size=$(stat -c %s "$file")
	# shellcheck disable=SC2016 # the script's arguments expand in it
	timeout "${3:-120}" bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1"
		cat "$2" >&3 &
		head -c "$3" <&3 >"$2.back"
		wait
	' roundtrip "$port" "$file" "$size"
	cmp "$file" "$file.back"
}

tunnel() {
	local arch=$1 qemu d dir p ctl relay ddirect sdirect echo src status start line
	# check runs this in a subshell: it stops what it started itself.
	trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait' EXIT
	emulator "$arch"
	d=$(unpack "$arch")
	dir=$work/tunnel-$arch
	mkdir -p "$dir"
	# The service behind the destination is a foreign binary too.
	# shellcheck disable=SC2046 # the words are NAME=VALUE settings
	env CGO_ENABLED=0 $(packaging/arch.sh go "$arch") go build -trimpath -o "$dir/echod" ./e2e/echod
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
	read -r ctl relay ddirect sdirect echo src status <<<"$(ports 7)"
	cat >"$dir/server.toml" <<-TOML
		[server]
		tokens = ["dst-token", "src-token"]
		cert-file = "$dir/cert.pem"
		key-file = "$dir/key.pem"
		addr = "127.0.0.1:$ctl"
		relay-addr = "127.0.0.1:$relay"
		relay-hostname = "127.0.0.1"
		store-dir = "$dir/store"
	TOML
	cat >"$dir/dst.toml" <<-TOML
		[client]
		token = "dst-token"
		server-addr = "127.0.0.1:$ctl"
		server-cas = "$dir/cert.pem"
		direct-addr = "127.0.0.1:$ddirect"
		port-mapping = "off"

		[client.destinations.echo]
		addr = "127.0.0.1:$echo"
	TOML
	cat >"$dir/src.toml" <<-TOML
		[client]
		token = "src-token"
		server-addr = "127.0.0.1:$ctl"
		server-cas = "$dir/cert.pem"
		direct-addr = "127.0.0.1:$sdirect"
		status-addr = "127.0.0.1:$status"
		port-mapping = "off"

		[client.sources.echo]
		addr = "127.0.0.1:$src"
	TOML
	mkdir -p "$dir/store"
	"${qemu[@]}" "$dir/echod" "127.0.0.1:$echo" >"$dir/echod.log" 2>&1 &
	pids+=($!)
	for p in server dst src; do
		"${qemu[@]}" "$d/usr/bin/connetd" --config "$dir/$p.toml" >"$dir/$p.log" 2>&1 &
		pids+=($!)
	done
	# Up when a line comes back through the source (at most 90 seconds:
	# everything is emulated).
	start=$SECONDS
	printf 'hello from %s\n' "$arch" >"$dir/hello"
	until roundtrip "$src" "$dir/hello" 5 2>/dev/null; do
		if [ $((SECONDS - start)) -ge 90 ]; then
			echo "no echo through the tunnel within 90 s"
			tail -n 15 "$dir"/*.log
			return 1
		fi
		sleep 1
	done
	echo "tunnel up after $((SECONDS - start)) s"
	line=$(curl -fsS "http://127.0.0.1:$status/" | grep -o '"path": *"[a-z]*"' | head -n1) || true
	echo "source's path: ${line:-unknown}"
	# A megabyte each way on one connection, then four connections at once.
	head -c 1048576 /dev/urandom >"$dir/big"
	start=$SECONDS
	roundtrip "$src" "$dir/big"
	echo "1 MiB echoed in $((SECONDS - start)) s"
	local bg=()
	for p in 1 2 3 4; do
		head -c 65536 /dev/urandom >"$dir/par$p"
		roundtrip "$src" "$dir/par$p" &
		bg+=($!)
	done
	for p in "${bg[@]}"; do wait "$p"; done
	echo "4 concurrent connections echoed"
}
for arch in $tunnel_arches; do
	emulator "$arch"
	check "$arch: a tunnel on loopback, server, destination, source and echo service all $arch under qemu" tunnel "$arch"
done

# --- The .deb in a foreign Debian root
foreign_root() {
	local r deb out start
	deb=$(deb_of "$root_arch")
	r=$work/root
	cp -a --reflink=auto "$base" "$r"
	cp "$deb" "$r/tmp/connetd.deb"
	start=$SECONDS
	# No systemd as PID 1 and no /proc: the scripts do what they can
	# (sysusers, the statoverride, the catalog) and say what waits for boot.
	chroot "$r" dpkg -i /tmp/connetd.deb
	echo "dpkg -i took $((SECONDS - start)) s"
	# shellcheck disable=SC2016 # dpkg-query's field, not the shell's
	[ "$(chroot "$r" dpkg-query -W -f '${Status}' connetd)" = "install ok installed" ]
	chroot "$r" getent passwd connetd
	chroot "$r" getent group connetd-admin
	[ "$(chroot "$r" stat -c '%U:%G %a' /etc/connet)" = "root:connetd 2750" ] || { chroot "$r" stat -c '%U:%G %a' /etc/connet; return 1; }
	out=$(chroot "$r" /usr/bin/connetd version)
	[ "$out" = "connetd $version" ] || { echo "connetd version: $out"; return 1; }
	chroot "$r" /usr/bin/connetctl help >/dev/null
	start=$SECONDS
	chroot "$r" dpkg --purge connetd
	echo "dpkg --purge took $((SECONDS - start)) s"
	[ ! -e "$r/usr/bin/connetd" ]
	[ ! -e "$r/etc/connet" ]
}
if [ -z "$base" ]; then
	printf 'SKIP  %s: the .deb in a Debian %s root (no root)\n' "$root_arch" "$root_arch"
else
	check "$root_arch: dpkg -i, maintainer scripts under qemu, in a debootstrapped Debian $root_arch root; dpkg --purge" foreign_root
fi

exit $failed
