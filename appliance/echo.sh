#!/bin/bash
# Runs inside the appliance container: one round trip through 127.0.0.1:PORT
# (a connetd source in front of an echo service). Prints what came back;
# fails if nothing did within 10 seconds.
# usage: echo.sh PORT MESSAGE
set -euo pipefail
port=$1 msg=$2
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf '%s\n' "$msg" >&3
IFS= read -r -t 10 line <&3
printf '%s\n' "$line"
[ "$line" = "$msg" ]
