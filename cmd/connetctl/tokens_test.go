package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The token of "tokens add" comes from standard input or a file, read as
// connetd reads a token-file; the old TOKEN argument works with a warning.
func TestTokenArgReadsStdinOrFileAndWarnsAboutTheCommandLine(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("# the new client\n\n  from-file  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		verb  string
		args  []string
		stdin string
		want  string
		warn  bool
	}{
		{"add", []string{"-"}, "from-stdin\n", "from-stdin", false},
		{"add", []string{"-"}, "from-stdin-no-newline", "from-stdin-no-newline", false},
		{"add", []string{"--file", file}, "", "from-file", false},
		{"add", []string{"--file=" + file}, "", "from-file", false},
		{"revoke", []string{"-"}, "# old\nold-token\n", "old-token", false},
		{"add", []string{"on-the-command-line"}, "", "on-the-command-line", true},
		{"revoke", []string{"on-the-command-line"}, "", "on-the-command-line", false},
	} {
		var errOut bytes.Buffer
		e := &env{stdin: strings.NewReader(c.stdin), stderr: &errOut}
		got, err := e.tokenArg(c.verb, c.args)
		if err != nil || got != c.want {
			t.Errorf("tokens %s %q: %q, %v; want %q", c.verb, c.args, got, err, c.want)
		}
		if warned := strings.Contains(errOut.String(), "readable by every user"); warned != c.warn {
			t.Errorf("tokens %s %q: warned %v (%q), want %v", c.verb, c.args, warned, errOut.String(), c.warn)
		}
		if strings.Contains(errOut.String(), c.want) {
			t.Errorf("tokens %s %q: the warning repeats the token: %q", c.verb, c.args, errOut.String())
		}
	}
}

func TestTokenArgRefusesWhatIsNotExactlyOneToken(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("a"), maxTokenInput+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		stdin string
		msg   string
	}{
		{[]string{"-"}, "", "holds 0 tokens"},
		{[]string{"-"}, "# only a comment\n\n", "holds 0 tokens"},
		{[]string{"-"}, "one\ntwo\n", "holds 2 tokens"},
		{[]string{"--file", filepath.Join(dir, "missing")}, "", "no such file"},
		{[]string{"--file", big}, "", "more than"},
		{[]string{"--file"}, "", "expected"},
		{[]string{"-", "extra"}, "", "expected"},
	} {
		e := &env{stdin: strings.NewReader(c.stdin), stderr: &bytes.Buffer{}}
		_, err := e.tokenArg("add", c.args)
		if err == nil || !strings.Contains(err.Error(), c.msg) || exitCode(err) != exitUsage {
			t.Errorf("tokens add %q with stdin %q: %v (exit %d); want a usage error about %q", c.args, c.stdin, err, exitCode(err), c.msg)
		}
	}
}
