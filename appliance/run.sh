#!/usr/bin/env bash
# The whole-appliance test (make test-appliance). It boots a minimal Debian
# bookworm with systemd-nspawn --boot, installs the .deb given as argument
# and uses connetd the way an administrator would: configuration files in
# /etc/connet, systemctl, connetctl, journalctl, a reload, a crash, socket
# activation, an upgrade and a purge. Every step prints PASS, FAIL or SKIPPED;
# every wait is bounded; the container and its root are removed on any exit.
#
# Traffic stays on the container's own loopback (--private-network).
#
# Environment:
#   APPLIANCE_CACHE             where the debootstrap root is cached
#                               (appliance/root.sh)
#   APPLIANCE_KEEP=1            keep the work directory (not the container)
#   VERBOSE=1                   print the output of passing steps too
#
# usage: appliance/run.sh connetd_VERSION_ARCH.deb
#
# Steps are functions that step() calls by name (SC2317), and the '${...}'
# strings are dpkg-query formats and container-side shell (SC2016).
# shellcheck disable=SC2016,SC2317
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(readlink -f "${1:?usage: appliance/run.sh CONNETD.deb}")
[ -f "$deb" ] || { echo "run.sh: $deb not found" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: must run as root (systemd-nspawn)" >&2; exit 2; }
for tool in systemd-nspawn nsenter debootstrap openssl dpkg-deb go; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not installed (scripts/deps.sh installs it)" >&2; exit 2; }
done

t0=$(date +%s)
work=""
nspawn_pid=""
leader=""
failures=0
declare -a results=()

# Steps run with pipefail: a "producer | grep -q" fails when grep's early
# exit kills the producer with SIGPIPE, so they read everything instead
# ("grep PATTERN >/dev/null").

# --- reporting

report() { # STATUS NAME [DETAIL]
	local status=$1 name=$2 detail=${3:-}
	printf '%-8s %s\n' "$status" "$name"
	if [ -n "$detail" ]; then
		printf '%s\n' "$detail" | tail -n 30 | sed 's/^/         | /'
	fi
	results+=("$(printf '%-8s %s' "$status" "$name")")
	if [ "$status" = FAIL ]; then
		failures=$((failures + 1))
	fi
}

# step NAME FUNCTION [ARGS...]: runs FUNCTION with errexit, so any failing
# command in it fails the step; sets step_rc. The output is shown on failure.
step_rc=0
step() {
	local name=$1 out start secs
	shift
	start=$(date +%s%N)
	set +e
	out=$(set -e; "$@" 2>&1)
	step_rc=$?
	set -e
	secs=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
	if [ "$step_rc" -eq 0 ]; then
		report PASS "$name (${secs}s)" "${VERBOSE:+$out}"
	else
		report FAIL "$name (${secs}s)" "$out"
	fi
}

# must NAME FUNCTION [ARGS...]: a step the rest cannot do without.
must() {
	step "$@"
	if [ "$step_rc" -ne 0 ]; then
		report ABORT "the remaining steps need this one"
		exit 1
	fi
}

skip() { report SKIPPED "$1" "$2"; }

# ctl_step: a connetctl step (kept apart so they can be found at a glance).
ctl_step() { step "$@"; }

# --- the container

# ct COMMAND...: runs COMMAND inside the booted container, as root with a
# clean environment, killed after CT_TIMEOUT seconds (default 60).
ct() {
	nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 timeout -k 5 "${CT_TIMEOUT:-60}" "$@"
}

# wait_for SECONDS COMMAND...: retries COMMAND every half second until it
# succeeds; on timeout prints its last output and fails.
wait_for() {
	local deadline out
	deadline=$(($(date +%s) + $1))
	shift
	while :; do
		if out=$("$@" 2>&1); then
			[ -z "$out" ] || printf '%s\n' "$out"
			return 0
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			printf 'still failing after the time allowed: %s\n%s\n' "$*" "$out"
			return 1
		fi
		sleep 0.5
	done
}

cleanup() {
	local rc=$?
	set +e
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		if [ -n "$leader" ]; then
			CT_TIMEOUT=10 ct systemctl poweroff --no-block >/dev/null 2>&1
		fi
		for _ in $(seq 60); do
			kill -0 "$nspawn_pid" 2>/dev/null || break
			sleep 0.5
		done
		if kill -0 "$nspawn_pid" 2>/dev/null; then
			echo "cleanup: the container did not power off in 30s; killing it" >&2
			kill -TERM "$nspawn_pid" 2>/dev/null
			sleep 5
			# Killing the container's PID 1 kills everything in its namespace.
			[ -z "$leader" ] || kill -KILL "$leader" 2>/dev/null
			kill -KILL "$nspawn_pid" 2>/dev/null
		fi
	fi
	[ -z "$nspawn_pid" ] || wait "$nspawn_pid" 2>/dev/null
	if [ -n "$work" ] && [ -d "$work" ]; then
		# Nothing may stay mounted below the work directory before it goes.
		findmnt -rn -o TARGET | grep -F "$work/" | sort -r | xargs -r -n1 umount -l
		if [ "${APPLIANCE_KEEP:-}" = 1 ]; then
			echo "kept $work"
		else
			rm -rf --one-file-system "$work"
		fi
	fi
	echo
	echo "=== appliance test summary ($(($(date +%s) - t0))s)"
	printf '%s\n' "${results[@]}"
	if [ "$failures" -gt 0 ]; then
		echo "=== FAILED: $failures step(s) failed"
		exit 1
	fi
	if [ "$rc" -ne 0 ]; then
		echo "=== FAILED: the test stopped early (exit status $rc)"
		exit 1
	fi
	echo "=== PASSED"
	exit 0
}
trap cleanup EXIT
trap 'echo "run.sh: line $LINENO: $BASH_COMMAND failed" >&2' ERR
trap 'echo "interrupted"; exit 130' INT TERM HUP

echo "=== connetd appliance test: $(basename "$deb")"

# --- 1. a Debian root with the package and the test's files

must "debootstrap root (cached in ${APPLIANCE_CACHE:-/var/cache/connetd-appliance})" appliance/root.sh
base=$(appliance/root.sh)

work=$(mktemp -d /var/tmp/connetd-appliance.XXXXXX)
root=$work/root
inbox=/root/appliance # /tmp is a tmpfs inside the container

prepare_root() {
	cp -a --reflink=auto "$base" "$root"
	local in=$root$inbox
	mkdir -p "$in"
	cp "$deb" "$in/connetd.deb"
	install -m 0755 appliance/echo.sh appliance/flow.sh "$in/"
	# The service behind the destination: the e2e tests' echo server.
	CGO_ENABLED=0 go build -trimpath -o "$root/usr/local/bin/echod" ./e2e/echod
	# A self-signed certificate for the server, valid for 127.0.0.1.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$in/key.pem" -out "$in/cert.pem" 2>/dev/null
	# The same package with a higher version, for the upgrade step.
	dpkg-deb -R "$deb" "$work/upgrade"
	sed -i 's/^Version: .*/&+appliance1/' "$work/upgrade/DEBIAN/control"
	dpkg-deb --root-owner-group -b "$work/upgrade" "$in/connetd-upgrade.deb" >/dev/null
	write_configs "$in"
}

write_configs() {
	cat >"$1/server.toml" <<'EOF'
[server]
tokens = ["dst-token", "src-token"]
cert-file = "/etc/connet/cert.pem"
key-file = "/etc/connet/key.pem"
relay-hostname = "127.0.0.1"
EOF
	cat >"$1/dst.toml" <<'EOF'
[client]
token = "dst-token"
server-addr = "127.0.0.1:19190"
server-cas = "/etc/connet/cert.pem"
direct-addr = "127.0.0.1:19192"

[client.destinations.echo]
addr = "127.0.0.1:3000"

[client.destinations.second]
addr = "127.0.0.1:3000"

[client.destinations.third]
addr = "127.0.0.1:3000"
EOF
	cat >"$1/src.toml" <<'EOF'
log-level = "debug"

[client]
token = "src-token"
server-addr = "127.0.0.1:19190"
server-cas = "/etc/connet/cert.pem"
direct-addr = "127.0.0.1:19193"

[client.sources.echo]
addr = "127.0.0.1:8000"
EOF
	# A second source client that a socket unit starts on its first
	# connection (source port 8003).
	cat >"$1/src2.toml" <<'EOF'
[client]
token = "src-token"
server-addr = "127.0.0.1:19190"
server-cas = "/etc/connet/cert.pem"
direct-addr = "127.0.0.1:19194"

[client.sources.echo]
addr = "127.0.0.1:8003"
EOF
	cat >"$1/connetd-src2-echo.socket" <<'EOF'
[Unit]
Description=connetd src2 source port (appliance test)

[Socket]
ListenStream=127.0.0.1:8003
FileDescriptorName=source-echo
Service=connetd@src2.service

[Install]
WantedBy=sockets.target
EOF
}
must "prepare the root: package, certificate, configurations, echo service" prepare_root

# --- 2. boot

# systemd-nspawn runs in this shell (steps run in subshells), so that the
# cleanup can stop it and wait for it.
systemd-nspawn --quiet -D "$root" --boot --register=no --keep-unit --private-network \
	--console=passive --machine="connetd-appl-$$" >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!
# The container's PID 1: the child of systemd-nspawn in another PID namespace
# running systemd (nspawn's short-lived setup child comes first).
find_leader() {
	local c
	for c in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null || true); do
		if [ "$(readlink "/proc/$c/ns/pid" 2>/dev/null)" != "$(readlink /proc/self/ns/pid)" ] &&
			[ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ]; then
			echo "$c"
			return 0
		fi
	done
	return 1
}
for _ in $(seq 100); do
	leader=$(find_leader) && break
	leader=""
	kill -0 "$nspawn_pid" 2>/dev/null || break
	sleep 0.2
done

booted() {
	[ -n "$leader" ] || { echo "no container init within 20s"; cat "$work/nspawn.log"; return 1; }
	echo "systemd-nspawn $nspawn_pid, container PID 1 is $leader ($(cat "/proc/$leader/comm"))"
	local state
	# PID 1 is found as soon as it runs; systemctl needs its private
	# socket, which it makes a little later (on a loaded machine, later
	# still): without it, systemctl fails at once instead of waiting.
	wait_for 60 ct test -S /run/systemd/private || return 1
	state=$(CT_TIMEOUT=120 ct systemctl is-system-running --wait) || true
	echo "system state: $state"
	case $state in
	running) ;;
	degraded) ct systemctl --failed --no-legend ;; # shown, not fatal: nothing of ours runs yet
	*)
		cat "$work/nspawn.log"
		return 1
		;;
	esac
}
must "boot Debian with systemd-nspawn --boot; systemd is PID 1 and reaches running" booted

# --- 3. install

install_deb() {
	ct apt-get install -y --no-install-recommends "$inbox/connetd.deb"
	[ "$(ct dpkg-query -W -f '${Status}' connetd)" = "install ok installed" ]
}
must "apt-get install ./connetd.deb (offline)" install_deb

user_and_groups() {
	ct getent passwd connetd
	ct getent group connetd
	ct getent group connetd-admin
}
step "maintainer scripts created the user connetd and the groups connetd, connetd-admin" user_and_groups

etc_connet() {
	local mode
	mode=$(ct stat -c '%U:%G %a' /etc/connet)
	echo "/etc/connet: $mode"
	[ "$mode" = "root:connetd 2750" ]
	ct test -f /etc/connet/README
}
step "/etc/connet is root:connetd 2750 and holds the README conffile" etc_connet

nothing_enabled() {
	local enabled active
	enabled=$(ct find /etc/systemd/system -name 'connetd*')
	active=$(ct systemctl list-units --no-legend --plain --state=active 'connetd*')
	echo "enabled: ${enabled:-none}; active: ${active:-none}"
	[ -z "$enabled" ] && [ -z "$active" ]
	ct systemctl cat connetd@server.service >/dev/null
}
step "the package enabled and started nothing; systemd knows connetd@.service" nothing_enabled

sysctl_dropin() {
	ct /lib/systemd/systemd-sysctl --cat-config | grep -E '^net\.core\.(r|w)mem_max = 7500000$'
}
step "sysctl.d drop-in installed and read by systemd-sysctl" sysctl_dropin
if ct test -w /proc/sys/net/core/rmem_max; then
	step "sysctl values applied" ct sh -c 'test "$(cat /proc/sys/net/core/rmem_max)" -ge 7500000'
else
	skip "sysctl values applied by the postinst" "/proc/sys is read-only inside systemd-nspawn; the kernel value cannot change here (the socket units force their buffers regardless)"
fi

dbus_policy() {
	ct test -f /usr/share/dbus-1/system.d/org.connetd.Connetd1.conf
	ct systemctl is-active dbus.service
}
step "D-Bus policy installed, system bus running" dbus_policy

journal_catalog() {
	# The postinst ran journalctl --update-catalog: the catalog database
	# knows connetd's events (msgid.ControlConnected here).
	ct test -f /usr/lib/systemd/catalog/connetd.catalog
	ct journalctl --list-catalog | grep -x '60afa1d11ae447058f6519caa5cba041 connetd: connetd client connected to the control server'
}
step "journal catalog installed and imported (journalctl --list-catalog)" journal_catalog

# --- 4. three instances

enable_instances() {
	ct install -m 0640 -g connetd "$inbox/cert.pem" "$inbox/key.pem" /etc/connet/
	for i in server dst src; do
		ct install -m 0640 -g connetd "$inbox/$i.toml" "/etc/connet/$i.toml"
	done
	ct ls -l /etc/connet
	ct systemctl enable --now connetd@server connetd@dst connetd@src
}
must "write /etc/connet/{server,dst,src}.toml; systemctl enable --now connetd@server connetd@dst connetd@src" enable_instances

all_active() {
	for i in server dst src; do
		printf 'connetd@%s: %s\n' "$i" "$(ct systemctl is-active "connetd@$i")"
	done
	for i in server dst src; do
		ct systemctl is-active --quiet "connetd@$i"
	done
}
step "systemctl is-active connetd@server connetd@dst connetd@src" wait_for 30 all_active

ready() { # instance, pattern the status text must match
	local st
	st=$(ct systemctl show -p ActiveState,SubState,StatusText "connetd@$1")
	printf '%s\n' "$st"
	grep -qx 'ActiveState=active' <<<"$st" && grep -qx 'SubState=running' <<<"$st" &&
		grep -qE "^StatusText=.*$2" <<<"$st"
}
all_ready() {
	ready server '.' && ready dst 'control connected' && ready src 'control connected'
}
step "READY=1 reached (active/running) and StatusText set: server, dst and src connected to control" wait_for 30 all_ready

echo_service() {
	ct systemd-run --unit=echo-service --property=DynamicUser=yes /usr/local/bin/echod 127.0.0.1:3000
	wait_for 10 ct systemctl is-active --quiet echo-service
}
step "a service behind the destination (echod on 127.0.0.1:3000, systemd-run)" echo_service

step "the service is reached through the source (127.0.0.1:8000)" wait_for 30 ct "$inbox/echo.sh" 8000 "hello through connetd"

# --- 5. connetctl

ctl_add_source() {
	ct connetctl --instance src add-source second :8001
}
ctl_step "connetctl --instance src add-source second :8001 exits 0" ctl_add_source
ctl_step "the new source carries traffic (:8001)" wait_for 30 ct "$inbox/echo.sh" 8001 "hello second source"
ctl_status() {
	local out
	out=$(ct connetctl --instance src status)
	printf '%s\n' "$out"
	grep -q 'second' <<<"$out" && grep -qwE 'direct|relay' <<<"$out"
}
ctl_step "connetctl --instance src status shows the sources and the path (direct or relay)" wait_for 20 ctl_status
ctl_refused() {
	local rc=0
	ct setpriv --reuid=nobody --regid=nogroup --clear-groups connetctl --instance src add-source intruder :8009 || rc=$?
	echo "exit status $rc"
	[ "$rc" -eq 4 ]
	ct setpriv --reuid=nobody --regid=nogroup --clear-groups connetctl --instance src status >/dev/null
}
ctl_step "an ordinary user may read status but is refused add-source (exit 4)" ctl_refused

# --- 6. the journal

journal_connection() {
	# An entry of the source's journal for a forwarded connection, with its
	# fields: the endpoint, the peer and the route it took.
	local entry
	entry=$(ct journalctl -u connetd@src --no-pager -o export | awk -v RS= '
		/\nMESSAGE=connection routed(\n|$)/ && /\nCONNET_ENDPOINT=echo(\n|$)/ && /\nCONNET_PEER=[^\n]+(\n|$)/ && /\nCONNET_ROUTE=(direct|relay)(\n|$)/ { last = $0 }
		END { if (last == "") exit 1; print last }' | grep -E '^(MESSAGE|CONNET_[A-Z_]+|_SYSTEMD_UNIT|PRIORITY)=')
	printf '%s\n' "$entry"
}
step "journalctl -u connetd@src shows the connection with fields CONNET_ENDPOINT, CONNET_PEER, CONNET_ROUTE" wait_for 10 journal_connection
journal_match() {
	ct journalctl -u connetd@src --no-pager -o cat CONNET_ENDPOINT=echo | awk 'NR <= 5' | grep .
}
step "journalctl -u connetd@src CONNET_ENDPOINT=echo matches by field" journal_match
journal_message_id() {
	# "connected to control" carries msgid.ControlConnected as the
	# journal's own MESSAGE_ID field (not CONNET_MESSAGE_ID).
	local entry
	entry=$(ct journalctl -u connetd@src --no-pager -o export MESSAGE_ID=60afa1d11ae447058f6519caa5cba041 | awk -v RS= '
		/\nMESSAGE=connected to control(\n|$)/ { last = $0 }
		END { if (last == "") exit 1; print last }' | grep -E '^(MESSAGE|MESSAGE_ID|CONNET_[A-Z_]+|_SYSTEMD_UNIT|PRIORITY)=')
	printf '%s\n' "$entry"
	! grep -q '^CONNET_MESSAGE_ID=' <<<"$entry"
}
step "journalctl MESSAGE_ID=<control connected> finds connetd@src's connection to control" journal_message_id
journal_explained() {
	# journalctl -x adds the catalog entry to the message: its Subject and
	# its text.
	local out
	out=$(ct journalctl -x -u connetd@src --no-pager MESSAGE_ID=60afa1d11ae447058f6519caa5cba041)
	printf '%s\n' "$out" | tail -n 20
	grep -q 'Subject: connetd client connected to the control server' <<<"$out" &&
		grep -q 'Defined-By: connetd' <<<"$out" &&
		grep -q 'handshake with the control server' <<<"$out"
}
step "journalctl -x -u connetd@src explains the event from the catalog" journal_explained
journal_path_up() {
	# A peer path (direct or relay) came up on the source: msgid.PeerPathUp
	# with the peer and the route.
	ct journalctl -u connetd@src --no-pager -o export MESSAGE_ID=ee3e73230e03412c93ebd29352934679 | awk -v RS= '
		/\nMESSAGE=peer path up(\n|$)/ && /\nCONNET_PEER=[^\n]+(\n|$)/ && /\nCONNET_ROUTE=(direct|relay)(\n|$)/ { last = $0 }
		END { if (last == "") exit 1; print last }' | grep -E '^(MESSAGE|MESSAGE_ID|CONNET_[A-Z_]+)='
}
step "journalctl MESSAGE_ID=<peer path up> finds the source's path to its peer, with CONNET_PEER and CONNET_ROUTE" wait_for 10 journal_path_up

# --- 7. reload keeps an open flow

reload_keeps_flow() {
	local pid_before pid_after
	ct rm -rf "$inbox/flow"
	ct mkdir -p "$inbox/flow"
	CT_TIMEOUT=90 ct "$inbox/flow.sh" 8000 "$inbox/flow" &
	local flow=$!
	wait_for 20 test -s "$root$inbox/flow/before"
	[ "$(cat "$root$inbox/flow/before")" = before ]
	pid_before=$(ct systemctl show -p MainPID --value connetd@src)
	# The reload also adds a source, so that it has something to apply.
	ct sh -c "printf '\n[client.sources.third]\naddr = \"127.0.0.1:8002\"\n' >>/etc/connet/src.toml"
	ct systemctl reload connetd@src
	ct touch "$inbox/flow/go"
	wait_for 20 test -s "$root$inbox/flow/after"
	wait "$flow"
	pid_after=$(ct systemctl show -p MainPID --value connetd@src)
	echo "echo on the open connection: $(cat "$root$inbox/flow/before") / $(cat "$root$inbox/flow/after"); MainPID $pid_before -> $pid_after"
	[ "$(cat "$root$inbox/flow/after")" = after ]
	[ "$pid_before" = "$pid_after" ]
	ct journalctl -u connetd@src --no-pager -o cat | grep 'configuration reloaded' >/dev/null
	# msgid.ReloadApplied
	ct journalctl -u connetd@src --no-pager -o cat MESSAGE_ID=b94de43998a9454ba10f203c9ed7d146 | grep 'configuration reloaded' >/dev/null
}
step "systemctl reload connetd@src keeps an open connection alive (same process, same TCP flow)" reload_keeps_flow
step "the reload applied the new source (127.0.0.1:8002)" wait_for 30 ct "$inbox/echo.sh" 8002 "hello third source"

# --- 8. crash and restart

kill_and_restart() {
	local old new
	old=$(ct systemctl show -p MainPID --value connetd@src)
	[ "$old" -gt 0 ]
	ct sh -c "kill -9 $old"
	# Restart=on-failure, RestartSec=2s.
	new_pid() {
		local p
		p=$(ct systemctl show -p MainPID --value connetd@src)
		[ "$p" -gt 0 ] && [ "$p" != "$old" ] && ct systemctl is-active --quiet connetd@src && echo "$p"
	}
	new=$(wait_for 30 new_pid)
	echo "MainPID $old killed with SIGKILL; systemd restarted connetd@src as $new (NRestarts=$(ct systemctl show -p NRestarts --value connetd@src))"
	wait_for 30 ct "$inbox/echo.sh" 8000 "hello after the crash"
}
step "kill -9 of connetd@src: systemd restarts it and traffic flows again" kill_and_restart
ctl_step "the source added with connetctl is back after the restart (:8001)" wait_for 30 ct "$inbox/echo.sh" 8001 "hello second source again"

# --- 8b. a restarted destination keeps its sockets and its direct path

# The source's path toward the destination for source echo:
# "PATH PUNCH_ATTEMPTS" from `connetctl --json peers`.
echo_peer() {
	ct connetctl --instance src --json peers | tr -d ' \n' | grep -o '"endpoint":"echo"[^}]*' |
		awk 'NR == 1' | sed -E 's/.*"Path":"([a-z]*)".*"PunchAttempts":([0-9]+).*/\1 \2/'
}
echo_peer_direct() { echo_peer | grep '^direct '; }
restart_keeps_direct() {
	local before after path punches t0 t1 t2 i since
	if ! wait_for 30 echo_peer_direct; then
		echo "the source's echo peer: '$(echo_peer)'"
		ct connetctl --instance src --json peers
		return 1
	fi
	before=$(echo_peer)
	punches=${before#* }
	since=$(ct date '+%Y-%m-%d %H:%M:%S')
	t0=$(date +%s%N)
	ct systemctl restart connetd@dst
	t1=$(date +%s%N)
	# systemctl restart returns once the new process is READY (registered
	# with control); from then a new connection must work within 1s.
	# The first connections may go through the relay while the source
	# re-dials its direct path; the clock stops at the first connection
	# that succeeds while the path is direct again.
	for i in $(seq 50); do
		if CT_TIMEOUT=5 ct "$inbox/echo.sh" 8000 "hello after the restart" >/dev/null 2>&1 && echo_peer_direct >/dev/null; then break; fi
		[ "$i" -lt 50 ] || { echo "no connection over a direct path through the source within 5s: '$(echo_peer)'"; return 1; }
		sleep 0.05
	done
	t2=$(date +%s%N)
	after=$(echo_peer)
	path=${after% *}
	echo "systemctl restart connetd@dst took $(((t1 - t0) / 1000000)) ms; a new connection through the source $(((t2 - t1) / 1000000)) ms after it returned ($(((t2 - t0) / 1000000)) ms after it was issued)"
	echo "source echo toward dst: before '$before', after '$after' (path, punch attempts)"
	[ $(((t2 - t1) / 1000000)) -le 1000 ]
	[ "$path" = direct ] && [ "${after#* }" = "$punches" ]
	# The source re-dialed the last address; the destination took its
	# sockets back from the file descriptor store.
	ct journalctl -u connetd@src --no-pager -o cat --since "$since" | grep 'direct path back at its last address, without punching'
	ct journalctl -u connetd@dst --no-pager -o export --since "$since" | grep -x 'CONNET_FD_NAME=direct' >/dev/null
	ct journalctl -u connetd@dst --no-pager -o export --since "$since" | grep -x 'CONNET_FD_NAME=client-relay' >/dev/null
}
step "systemctl restart connetd@dst: a new connection through the source within 1 s over the direct path without a new punch" restart_keeps_direct

# --- 9. socket activation

socket_activation_udp() {
	# The clients go first: a running client retries control at once, and
	# its packet would start the server before we could look at it.
	ct systemctl stop connetd@src connetd@dst
	ct systemctl stop connetd@server
	ct systemctl start connetd-server-control.socket connetd-server-relay.socket
	local st
	st=$(ct systemctl is-active connetd@server || true)
	echo "connetd@server after stop, with its sockets listening and no client running: $st"
	[ "$st" = inactive ]
	# The clients' first packet to control starts the server.
	ct systemctl start connetd@dst connetd@src
	wait_for 30 ct systemctl is-active --quiet connetd@server
	ct journalctl -u connetd@server --no-pager -o cat | grep 'using socket from systemd'
	ct journalctl -u connetd@server --no-pager -o export | grep -x 'CONNET_FD_NAME=control' >/dev/null
	wait_for 30 ct "$inbox/echo.sh" 8000 "hello through the activated server"
}
step "socket activation: connetd-server-control.socket starts connetd@server on the first client packet" socket_activation_udp

socket_activation_tcp() {
	ct install -m 0640 -g connetd "$inbox/src2.toml" /etc/connet/src2.toml
	ct cp "$inbox/connetd-src2-echo.socket" /etc/systemd/system/
	ct systemctl daemon-reload
	ct systemctl start connetd-src2-echo.socket
	local st
	st=$(ct systemctl is-active connetd@src2 || true)
	echo "connetd@src2 before the first connection: $st"
	[ "$st" = inactive ]
	# The very first connection starts the instance and is served by it.
	CT_TIMEOUT=40 ct "$inbox/echo.sh" 8003 "the first connection starts src2"
	ct systemctl is-active connetd@src2
}
step "socket activation: a source's socket unit starts connetd@src2 and its first connection is served" socket_activation_tcp

# --- 9b. connetctl init: a second server and two clients from nothing

# Ports and names of their own (19290/19291, direct 19292/19293, source
# 8010), so that the instances above are untouched; the step's instances
# are stopped and disabled again by the step after it.
init_instances() {
	ct connetctl init server --public-addr 127.0.0.1 --out /etc/connet/init --port 19290 --relay-port 19291
	ct install -m 0640 -g connetd /etc/connet/init/server.toml /etc/connet/initsrv.toml
	ct connetctl init client --from /etc/connet/init/clients/client-1 --name initdst
	ct connetctl init client --from /etc/connet/init/clients/client-2 --name initsrc
	local modes
	modes=$(ct stat -c '%n %U:%G %a' /etc/connet/init/server.key /etc/connet/init/server.tokens /etc/connet/initdst.toml /etc/connet/initsrc.toml)
	printf '%s\n' "$modes"
	[ "$(awk '{ print $2, $3 }' <<<"$modes" | sort -u)" = "root:connetd 640" ]
	# The installed files end inside [client]: appended keys land there.
	ct sh -c "printf 'direct-addr = \"127.0.0.1:19292\"\n\n[client.destinations.initecho]\naddr = \"127.0.0.1:3000\"\n' >>/etc/connet/initdst.toml"
	ct sh -c "printf 'direct-addr = \"127.0.0.1:19293\"\n\n[client.sources.initecho]\naddr = \"127.0.0.1:8010\"\n' >>/etc/connet/initsrc.toml"
	ct systemctl enable --now connetd@initsrv connetd@initdst connetd@initsrc
	wait_for 30 ct "$inbox/echo.sh" 8010 "hello through connetctl init"
}
ctl_step "connetctl init server ... && init client ... && systemctl enable --now connetd@initsrv connetd@initdst connetd@initsrc carries traffic (:8010)" init_instances
init_instances_off() {
	ct systemctl disable --now connetd@initsrv connetd@initdst connetd@initsrc
	ct rm -rf /etc/connet/init /etc/connet/initsrv.toml /etc/connet/initdst.toml /etc/connet/initdst-ca.pem \
		/etc/connet/initsrc.toml /etc/connet/initsrc-ca.pem
}
step "the connetctl init instances stopped, disabled and removed again" init_instances_off

# --- 9c. an on-demand destination: its service started by a connection

# A destination client (odst) whose service, echod on 127.0.0.1:3020, is a
# unit that is not running: the first connection through the source client
# osrc (port 8020) makes connetd (user connetd, allowed by the polkit rule
# 50-connetd.rules) start connetd-ondemand-echo.service, and is served;
# after stop-idle (3s) without connections connetd stops it again. Ports
# and names of their own; the instances and files are removed afterwards.
ondemand_files() {
	local in=$root$inbox
	cat >"$in/connetd-ondemand-echo.service" <<'EOF'
[Unit]
Description=echod started on demand by connetd@odst (appliance test)

[Service]
ExecStart=/usr/local/bin/echod 127.0.0.1:3020
EOF
	cat >"$in/odst.toml" <<'EOF'
[client]
token = "dst-token"
server-addr = "127.0.0.1:19190"
server-cas = "/etc/connet/cert.pem"
direct-addr = "127.0.0.1:19195"

[client.destinations.ondemand]
addr = "127.0.0.1:3020"
start-unit = "connetd-ondemand-echo.service"
stop-idle = "3s"
EOF
	cat >"$in/osrc.toml" <<'EOF'
[client]
token = "src-token"
server-addr = "127.0.0.1:19190"
server-cas = "/etc/connet/cert.pem"
direct-addr = "127.0.0.1:19196"

[client.sources.ondemand]
addr = "127.0.0.1:8020"
EOF
}
ondemand_path() {
	local out
	out=$(ct connetctl --instance osrc status)
	printf '%s\n' "$out"
	grep -q 'ondemand' <<<"$out" && grep -qwE 'direct|relay' <<<"$out"
}
ondemand_state() { # prints the unit's ActiveState
	ct systemctl is-active connetd-ondemand-echo.service || true
}
ondemand_inactive() { [ "$(ondemand_state)" = inactive ]; }
ondemand_setup() {
	ondemand_files
	ct test -f /usr/share/polkit-1/rules.d/50-connetd.rules
	ct cp "$inbox/connetd-ondemand-echo.service" /etc/systemd/system/
	ct install -m 0640 -g connetd "$inbox/odst.toml" /etc/connet/odst.toml
	ct install -m 0640 -g connetd "$inbox/osrc.toml" /etc/connet/osrc.toml
	ct systemctl daemon-reload
	ct systemctl start connetd@odst connetd@osrc
	wait_for 30 ct systemctl is-active --quiet connetd@odst connetd@osrc
	# The source has its peer (a path, direct or relay), so that the first
	# connection waits only for the unit.
	wait_for 30 ondemand_path
	echo "connetd-ondemand-echo.service before the first connection: $(ondemand_state)"
	ondemand_inactive
}
ondemand_first() {
	# One connection, not retried: it starts the unit and is served.
	CT_TIMEOUT=40 ct "$inbox/echo.sh" 8020 "the first connection starts the unit"
	echo "connetd-ondemand-echo.service after it: $(ondemand_state)"
	[ "$(ondemand_state)" = active ]
	# msgid.UnitStarted, exactly once, with the unit as CONNET_UNIT.
	local started
	started=$(ct journalctl -u connetd@odst --no-pager -o export MESSAGE_ID=0742093644ddccf4484b0008157fbae9 | awk -v RS= '
		/\nCONNET_UNIT=connetd-ondemand-echo\.service(\n|$)/ { n++; last = $0 }
		END { print last; print "ENTRIES=" n + 0 }' | grep -E '^(MESSAGE|MESSAGE_ID|CONNET_[A-Z_]+|ENTRIES)=')
	printf '%s\n' "$started"
	grep -qx 'ENTRIES=1' <<<"$started"
}
ondemand_idle() {
	# stop-idle = "3s": stopped a few seconds after the connection ended,
	# with msgid.UnitStopped in the journal.
	wait_for 20 ondemand_inactive
	ct journalctl -u connetd@odst --no-pager -o cat MESSAGE_ID=9b73fb7ff326897b0e6af82746dc4f8d | grep "stopped the idle destination's unit"
}
ondemand_off() {
	ct systemctl stop connetd@odst connetd@osrc connetd-ondemand-echo.service
	ct rm -f /etc/connet/odst.toml /etc/connet/osrc.toml /etc/systemd/system/connetd-ondemand-echo.service
	ct systemctl daemon-reload
}
if ct test -x /usr/lib/polkit-1/polkitd; then
	step "on-demand destination: connetd@odst and connetd@osrc running, connetd-ondemand-echo.service inactive" ondemand_setup
	if [ "$step_rc" -eq 0 ]; then
		step "on-demand destination: the first connection through the source starts connetd-ondemand-echo.service (StartUnit over D-Bus, allowed by polkit) and is served" ondemand_first
		step "on-demand destination: stop-idle stops the unit 3s after the last connection (StopUnit)" ondemand_idle
		step "on-demand destination: the next connection starts the unit again" wait_for 30 ct "$inbox/echo.sh" 8020 "started again"
	fi
	step "the on-demand instances and unit stopped and removed again" ondemand_off
else
	skip "on-demand destination (start-unit, stop-idle)" "polkitd is not in the root (appliance/root.sh): without polkit only root may start units"
fi

# --- 10. upgrade

upgrade() {
	ct sh -c 'echo "# local note kept across upgrades" >>/etc/connet/README'
	local links_before links_after running pids_before pids_after
	links_before=$(ct find /etc/systemd/system -name 'connetd*' | sort)
	running=$(ct systemctl list-units --no-legend --plain --state=running 'connetd@*' | awk '{ print $1 }' | sort)
	pids_before=$(for u in $running; do ct systemctl show -p MainPID --value "$u"; done)
	CT_TIMEOUT=120 ct env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$inbox/connetd-upgrade.deb"
	ct dpkg-query -W -f '${Version}\n' connetd | grep '+appliance1$'
	pids_after=$(for u in $running; do ct systemctl show -p MainPID --value "$u"; done)
	echo "running instances: $(echo "$running" | tr '\n' ' ')"
	echo "MainPIDs before: $(echo "$pids_before" | tr '\n' ' ') after: $(echo "$pids_after" | tr '\n' ' ')"
	[ -n "$running" ]
	for u in $running; do ct systemctl is-active --quiet "$u"; done
	# Every running instance was restarted: no PID survived.
	for p in $pids_before; do
		if grep -qx "$p" <<<"$pids_after"; then echo "PID $p was not restarted"; return 1; fi
	done
	ct grep -q 'local note kept across upgrades' /etc/connet/README
	[ "$(ct stat -c '%U:%G %a' /etc/connet)" = "root:connetd 2750" ]
	links_after=$(ct find /etc/systemd/system -name 'connetd*' | sort)
	[ "$links_before" = "$links_after" ] || { echo "enablement changed:"; diff <(echo "$links_before") <(echo "$links_after"); return 1; }
	wait_for 30 ct "$inbox/echo.sh" 8000 "hello after the upgrade"
}
step "upgrade: running instances restarted, conffile edit kept, nothing newly enabled, traffic flows" upgrade

# --- 10b. MemoryMax= sets the Go memory limit

# The unit's cgroup, and the file of its memory limit: cgroup v2's
# memory.max, or the v1 memory controller's memory.limit_in_bytes when the
# container runs with a hybrid hierarchy. Prints the file; fails when there
# is no memory controller (MemoryMax= would then limit nothing).
memory_file() {
	local cg
	cg=$(ct systemctl show -p ControlGroup --value connetd@src)
	[ -n "$cg" ] || return 1
	if ct test -f "/sys/fs/cgroup$cg/memory.max"; then
		echo "/sys/fs/cgroup$cg/memory.max"
	elif ct test -f "/sys/fs/cgroup/memory$cg/memory.limit_in_bytes"; then
		echo "/sys/fs/cgroup/memory$cg/memory.limit_in_bytes"
	else
		echo "connetd@src's cgroup $cg has no memory controller"
		return 1
	fi
}
memory_max() {
	ct mkdir -p /etc/systemd/system/connetd@src.service.d
	ct sh -c 'printf "[Service]\nMemoryMax=64M\n" >/etc/systemd/system/connetd@src.service.d/memory.conf'
	ct systemctl daemon-reload
	ct systemctl restart connetd@src
	wait_for 30 ct systemctl is-active --quiet connetd@src
	local file inv entry
	file=$(memory_file)
	echo "$file: $(ct cat "$file")"
	[ "$(ct cat "$file")" = 67108864 ]
	# This run's journal only: the line logged at start, with the cgroup's
	# limit and the Go limit (64 MiB less the 8 MiB minimum headroom).
	inv=$(ct systemctl show -p InvocationID --value connetd@src)
	journal_limit() {
		ct journalctl --no-pager -o export "_SYSTEMD_INVOCATION_ID=$inv" | awk -v RS= '
			/\nMESSAGE=Go memory limit set below the cgroup.s memory limit(\n|$)/ { last = $0 }
			END { if (last == "") exit 1; print last }' | grep -E '^(MESSAGE|CONNET_[A-Z_]+)='
	}
	entry=$(wait_for 10 journal_limit)
	printf '%s\n' "$entry"
	grep -qx 'CONNET_MEMORY_MAX=67108864' <<<"$entry"
	grep -qx 'CONNET_GO_MEMORY_LIMIT=58720256' <<<"$entry"
	wait_for 30 ct "$inbox/echo.sh" 8000 "hello with MemoryMax=64M"
}
memory_max_off() {
	ct rm -rf /etc/systemd/system/connetd@src.service.d
	ct systemctl daemon-reload
	ct systemctl restart connetd@src
	wait_for 30 ct systemctl is-active --quiet connetd@src
}
if memory_file >/dev/null 2>&1; then
	step "a drop-in with MemoryMax=64M: connetd@src logs its Go memory limit below it (56 MiB) and carries traffic" memory_max
	step "the MemoryMax= drop-in removed again" memory_max_off
else
	# e2e/memcgroup_test.go makes a memory cgroup itself and checks the
	# same thing outside the container.
	skip "MemoryMax= sets the Go memory limit" "$(memory_file 2>&1 || true); e2e's TestSourceUnderAMemoryCgroupLimit checks it in a cgroup of its own"
fi

# --- 11. purge

purge() {
	CT_TIMEOUT=120 ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y connetd
	local left=""
	ct sh -c '! dpkg-query -W -f "\${Status}" connetd 2>/dev/null | grep -q installed' || left="$left package-still-installed"
	for f in /usr/bin/connetd /usr/bin/connetctl /usr/lib/systemd/system/connetd@.service \
		/usr/lib/sysusers.d/connetd.conf /usr/share/dbus-1/system.d/org.connetd.Connetd1.conf \
		/usr/lib/systemd/catalog/connetd.catalog /etc/connet /var/lib/connetd /usr/share/doc/connetd; do
		if ct test -e "$f"; then left="$left $f"; fi
	done
	local links active procs override
	links=$(ct find /etc/systemd/system -type l -name 'connetd*')
	active=$(ct systemctl list-units --no-legend --plain --state=active 'connetd*')
	procs=$(ct sh -c 'grep -lx connetd /proc/[0-9]*/comm 2>/dev/null || true')
	override=$(ct dpkg-statoverride --list /etc/connet || true)
	echo "left behind: ${left:-nothing}; enablement links: ${links:-none}; active units: ${active:-none}; processes: ${procs:-none}; statoverride: ${override:-none}"
	echo "kept, as Debian does for system users: $(ct getent passwd connetd || echo 'no user connetd')"
	[ -z "$left" ] && [ -z "$links" ] && [ -z "$active" ] && [ -z "$procs" ] && [ -z "$override" ]
}
step "apt-get purge connetd stops the instances and removes files, configuration, state and enablement links" purge

poweroff() {
	CT_TIMEOUT=10 ct systemctl poweroff --no-block
	local i
	for i in $(seq 60); do
		kill -0 "$nspawn_pid" 2>/dev/null || { echo "powered off"; return 0; }
		sleep 0.5
	done
	echo "still running after 30s"
	return 1
}
step "the container powers off cleanly" poweroff
