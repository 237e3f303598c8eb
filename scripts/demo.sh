#!/usr/bin/env bash
# The loopback demo: a server, a destination that serves a directory over
# HTTP, and a source; a request goes through the source, once over the
# direct route and once through the relay. Everything stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
make build >/dev/null

work=$(mktemp -d /tmp/connetd-demo.XXXXXX)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
bin=$PWD/bin/connetd
ctl=$PWD/bin/connetctl
cd "$work"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "connetctl init server: certificate, key, tokens and a bundle per client"
"$ctl" init server --public-addr 127.0.0.1 --out "$work" --port 19190 --relay-port 19191 2>&1
say "connetctl init client: install the bundles as client-d.toml and client-s.toml"
"$ctl" init client --from "$work/clients/client-1" --out "$work" --name client-d 2>&1
"$ctl" init client --from "$work/clients/client-2" --out "$work" --name client-s 2>&1
mkdir -p www && echo "hello from behind the destination, $(date -u +%H:%M:%S)" > www/index.html

# The installed files end inside [client]: what follows lands there.
cat >> client-d.toml <<'TOML'
direct-addr = "127.0.0.1:19192"
status-addr = "127.0.0.1:19181"

[client.destinations.website]
addr = "127.0.0.1:13000"
file-server-root = "www"

[client.destinations.website-relayed]
addr = "127.0.0.1:13000"
route = "relay"
TOML
cat >> client-s.toml <<'TOML'
direct-addr = "127.0.0.1:19193"
status-addr = "127.0.0.1:19182"

[client.sources.website]
addr = "127.0.0.1:18000"

[client.sources.website-relayed]
addr = "127.0.0.1:18001"
TOML
for f in server.toml client-d.toml client-s.toml; do say "$f"; cat "$f"; done

say "starting connetd server, destination and source"
# Flags override the file: keep the server on loopback, with a status page.
"$bin" server --config server.toml --addr 127.0.0.1:19190 --relay-addr 127.0.0.1:19191 \
	--status-addr 127.0.0.1:19180 --store-dir server-store >server.log 2>&1 & pids+=($!)
"$bin" --config client-d.toml >client-d.log 2>&1 & pids+=($!)
"$bin" --config client-s.toml >client-s.log 2>&1 & pids+=($!)

path_of() { # status JSON → path of source $1
	curl -fsS http://127.0.0.1:19182/ 2>/dev/null | tr -d ' \n' |
		grep -o "\"name\":\"$1\",[^]]*\"path\":\"[a-z]*\"" | sed 's/.*"path":"\([a-z]*\)"/\1/'
}
for i in $(seq 100); do
	[ "$(path_of website)" = direct ] && [ "$(path_of website-relayed)" = relay ] && break
	sleep 0.1
done

say "curl http://127.0.0.1:18000/   (source → direct QUIC → destination → file server)"
curl -fsS --max-time 5 http://127.0.0.1:18000/
echo "path in use: $(path_of website)"

say "curl http://127.0.0.1:18001/   (source → relay → destination, end-to-end encrypted)"
curl -fsS --max-time 5 http://127.0.0.1:18001/
echo "path in use: $(path_of website-relayed)"

say "source status (curl http://127.0.0.1:19182/)"
curl -fsS http://127.0.0.1:19182/

say "source log"
cat client-s.log
if [ -n "${DEMO_KEEP:-}" ]; then
	say "running until Ctrl-C (DEMO_KEEP is set)"
	wait
fi
