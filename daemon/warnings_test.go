package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/connetd/connetd/config"
)

// Configuration warnings are logged at start, and at a reload only when
// new: a daemon started with --token and reloaded keeps its one warning.
func TestConfigurationWarningsAreLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	d := &Daemon{log: slog.New(slog.NewTextHandler(&buf, nil))}
	parse := func(args ...string) *config.File {
		f, err := config.ParseCommandLine(args)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	start := parse("client", "--token", "s3cret")
	d.logWarnings(start, nil)
	d.logWarnings(parse("client", "--token", "s3cret"), start)
	if n := strings.Count(buf.String(), "flag --token"); n != 1 {
		t.Fatalf("the --token warning was logged %d times over a start and a reload, want once:\n%s", n, buf.String())
	}
	if strings.Contains(buf.String(), "s3cret") {
		t.Fatalf("a warning repeats the token:\n%s", buf.String())
	}
	// A reload that brings a new warning logs that one.
	next := parse("client", "--token", "s3cret")
	next.Warnings = append(next.Warnings, &config.Error{Key: "server.token-restriction[0].name-matches", Msg: "new"})
	d.logWarnings(next, start)
	if n := strings.Count(buf.String(), "flag --token"); n != 1 || !strings.Contains(buf.String(), "name-matches: new") {
		t.Fatalf("after a reload with a new warning:\n%s", buf.String())
	}
}
