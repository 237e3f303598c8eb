#!/bin/bash
# Runs inside the appliance container: holds one connection through
# 127.0.0.1:PORT open across a reload. It sends "before", waits (at most 60
# seconds) for the file DIR/go, then sends "after" on the same connection,
# writing each echo to DIR/before and DIR/after.
# usage: flow.sh PORT DIR
set -euo pipefail
port=$1 dir=$2
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'before\n' >&3
IFS= read -r -t 10 line <&3
printf '%s\n' "$line" >"$dir/before"
for _ in $(seq 600); do
	[ -e "$dir/go" ] && break
	sleep 0.1
done
printf 'after\n' >&3
IFS= read -r -t 10 line <&3
printf '%s\n' "$line" >"$dir/after"
