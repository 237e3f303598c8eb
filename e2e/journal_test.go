package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/internal/testenv"
)

// journaldBin is where Debian and Fedora keep the journal daemon.
const journaldBin = "/lib/systemd/systemd-journald"

// journalScript runs one connetd against a journald of its own: inside a
// private mount namespace (unshare -m) a tmpfs over /run gives it its own
// /run/systemd/journal/socket, where connetd's native logging writes, and
// /run/log/journal, where journalctl reads; nothing of it outlives the
// namespace. connetd's stderr is a file named in JOURNAL_STREAM, as systemd
// names the stream it connects, which is what makes connetd log natively.
// It prints the journal's entries with the id as JSON once one is there.
const journalScript = `set -eu
dir=$1 id=$2 connetd=$3
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
# Leave the kernel's log alone: it is the machine's, not the test's.
printf '[Journal]\nStorage=volatile\nReadKMsg=no\n' >"$dir/journald.conf"
if [ -f /etc/systemd/journald.conf ]; then mount --bind "$dir/journald.conf" /etc/systemd/journald.conf; fi
` + journaldBin + ` &
jpid=$!
cpid=
trap 'kill $cpid $jpid 2>/dev/null; wait' EXIT
i=0
until [ -S /run/systemd/journal/socket ]; do
	i=$((i + 1)); [ "$i" -lt 100 ] || { echo "journald made no socket" >&2; exit 1; }
	sleep 0.1
done
: >"$dir/stderr"
JOURNAL_STREAM=$(stat -c %d:%i "$dir/stderr") STATE_DIRECTORY="$dir/state-dst" "$connetd" --config dst.toml 2>>"$dir/stderr" &
cpid=$!
i=0
while :; do
	out=$(journalctl -D /run/log/journal/* -o json MESSAGE_ID="$id" 2>&1 || true)
	case $out in *'"MESSAGE_ID"'*) break ;; esac
	i=$((i + 1)); [ "$i" -lt 150 ] || { echo "no entry with MESSAGE_ID=$id: $out" >&2; exit 1; }
	sleep 0.1
done
printf '%s\n' "$out"
`

// TestJournalMessageID: a client's "connected to control" reaches a real
// journald natively with msgid.ControlConnected as the journal's own
// MESSAGE_ID field (what journalctl -x looks up in the catalog), not as a
// CONNET_ field, next to the CONNET_ fields of its attributes.
func TestJournalMessageID(t *testing.T) {
	testenv.RequireRoot(t, "give journald a private /run (unshare -m)")
	testenv.RequireTool(t, "unshare", "util-linux")
	testenv.RequireTool(t, "journalctl", "systemd")
	if _, err := os.Stat(journaldBin); err != nil {
		testenv.Missing(t, "%s not installed (Debian package systemd)", journaldBin)
	}
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.startServer(t)
	if err := os.WriteFile(filepath.Join(tp.dir, "journal.sh"), []byte(journalScript), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private",
		"sh", "journal.sh", tp.dir, string(msgid.ControlConnected), filepath.Join(binDir, "connetd"))
	cmd.Dir = tp.dir
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/connetd-e2e")
	out, err := cmd.Output()
	if err != nil {
		stderr, _ := os.ReadFile(filepath.Join(tp.dir, "stderr"))
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("journal.sh: %v\n%s\nconnetd's stderr:\n%s", err, ee.Stderr, stderr)
		}
		t.Fatalf("journal.sh: %v\nconnetd's stderr:\n%s", err, stderr)
	}
	found := false
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("journalctl -o json: %v: %s", err, sc.Text())
		}
		t.Logf("entry: MESSAGE=%v MESSAGE_ID=%v CONNET_SERVER=%v PRIORITY=%v", e["MESSAGE"], e["MESSAGE_ID"], e["CONNET_SERVER"], e["PRIORITY"])
		if e["MESSAGE"] != "connected to control" || e["MESSAGE_ID"] != string(msgid.ControlConnected) {
			continue
		}
		if _, ok := e["CONNET_MESSAGE_ID"]; ok {
			t.Errorf("the id is also a CONNET_ field: %v", e)
		}
		if e["CONNET_SERVER"] != addr(tp.serverPort) {
			t.Errorf("CONNET_SERVER = %v, want %s", e["CONNET_SERVER"], addr(tp.serverPort))
		}
		found = true
	}
	if !found {
		t.Fatalf("no \"connected to control\" entry with MESSAGE_ID=%s:\n%s", msgid.ControlConnected, out)
	}
}
