package config

import (
	"strings"
	"testing"
)

func warnings(f *File) []string {
	var out []string
	for _, w := range f.Warnings {
		out = append(out, w.Error())
	}
	return out
}

// name-matches keeps connet's meaning, a match anywhere in the name;
// name-matches-anchored = true asks for the whole name. An unanchored
// pattern loads, with a warning that names its line.
func TestNameMatchesAnchoredOrWarned(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "s.toml", doc(
		`[server]`,
		`cert-file = "cert.pem"`,
		`key-file = "key.pem"`,
		`tokens = ["a", "b", "c"]`,
		`[[server.token-restriction]]`,
		`name-matches = "web"`,
		`[[server.token-restriction]]`,
		`name-matches = "web|api"`,
		`name-matches-anchored = true`,
		`[[server.token-restriction]]`,
		`name-matches = "^web-[a-z]+$"`,
	))
	f, err := Load("s.toml")
	if err != nil {
		t.Fatal(err)
	}
	loose, whole, written := f.Server.TokenRestricts[0], f.Server.TokenRestricts[1], f.Server.TokenRestricts[2]
	for _, c := range []struct {
		what string
		got  bool
		want bool
	}{
		{`"web" (connet's meaning) allows evil-web`, loose.AcceptsEndpoint("evil-web", "source"), true},
		{`"web|api" anchored allows api`, whole.AcceptsEndpoint("api", "source"), true},
		{`"web|api" anchored allows evil-web`, whole.AcceptsEndpoint("evil-web", "source"), false},
		{`"web|api" anchored allows xapi`, whole.AcceptsEndpoint("xapi", "source"), false},
		{`"^web-[a-z]+$" allows web-abc`, written.AcceptsEndpoint("web-abc", "source"), true},
		{`"^web-[a-z]+$" allows evil-web-abc`, written.AcceptsEndpoint("evil-web-abc", "source"), false},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	w := warnings(f)
	if len(w) != 1 || !strings.HasPrefix(w[0], `s.toml:6: server.token-restriction[0].name-matches: "web" is not anchored`) ||
		!strings.Contains(w[0], "name-matches-anchored = true") {
		t.Fatalf("warnings %q, want one about line 6's unanchored pattern", w)
	}
}

// A relay has no endpoint names, so its restrictions' name-matches is not
// worth a warning; a client token's is, for [control] as for [server].
func TestNameMatchesWarnedOnlyForClientTokens(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "c.toml", doc(
		`[control]`,
		`cert-file = "cert.pem"`,
		`key-file = "key.pem"`,
		`clients-tokens = ["a"]`,
		`relays-tokens = ["r"]`,
		`[[control.clients-token-restriction]]`,
		`name-matches = "^web|api"`,
		`[[control.relays-token-ip-restriction]]`,
		`name-matches = "x"`,
	))
	f, err := Load("c.toml")
	if err != nil {
		t.Fatal(err)
	}
	w := warnings(f)
	if len(w) != 1 || !strings.HasPrefix(w[0], `c.toml:7: control.clients-token-restriction[0].name-matches: "^web|api"`) {
		t.Fatalf("warnings %q, want one about the clients' pattern", w)
	}
}

func TestNameMatchesAnchoredStillReportsABadPattern(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "s.toml", doc(
		`[server]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `tokens = ["a"]`,
		`[[server.token-restriction]]`, `name-matches-anchored = true`, `name-matches = "a)|(b"`,
	))
	_, err := Load("s.toml")
	wantErr(t, err, "s.toml", 7, "server.token-restriction[0].name-matches", "unexpected )")
}

// A token on the command line is readable by every user: connetd runs with
// it, but warns and points to the file flag.
func TestTokenFlagsWarnThatTheCommandLineIsPublic(t *testing.T) {
	inTempDir(t, flagFiles)
	for _, c := range []struct {
		args []string
		want string // "" for no warning
	}{
		{[]string{"client", "--token", "s3cret"}, "flag --token: every user of this machine can read the command line"},
		{[]string{"relay", "--token", "s3cret"}, "use --token-file instead"},
		{[]string{"server", "--config", "server.toml", "--tokens", "s3cret"}, "use --tokens-file instead"},
		{[]string{"control", "--cert-file", "cert.pem", "--key-file", "key.pem", "--clients-tokens", "a", "--relays-tokens", "s3cret"}, "flag --relays-tokens"},
		{[]string{"client", "--token-file", "token.txt"}, ""},
		{[]string{"--config", "client.toml"}, ""},
	} {
		f, err := ParseCommandLine(c.args)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		w := strings.Join(warnings(f), "\n")
		if c.want == "" && w != "" || !strings.Contains(w, c.want) {
			t.Errorf("%q: warnings %q, want %q", c.args, w, c.want)
		}
		if strings.Contains(w, "s3cret") {
			t.Errorf("%q: the warning repeats the secret: %q", c.args, w)
		}
	}
}
