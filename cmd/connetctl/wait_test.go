package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/dbusapi"
)

func TestParseWaitReadsNameInstancePathAndTimeout(t *testing.T) {
	for _, tc := range []struct {
		instance string
		args     []string
		want     waitOpts
	}{
		{"", []string{"svc"}, waitOpts{name: "svc", path: "any", timeout: 30 * time.Second}},
		{"src", []string{"svc", "--path", "direct", "--timeout", "10s"}, waitOpts{instance: "src", name: "svc", path: "direct", timeout: 10 * time.Second}},
		{"", []string{"--path=any", "--timeout=1m30s", "db"}, waitOpts{name: "db", path: "any", timeout: 90 * time.Second}},
		{"", []string{"svc", "--timeout", "0"}, waitOpts{name: "svc", path: "any", timeout: 0}},
		{"", []string{"svc", "--timeout", "infinity"}, waitOpts{name: "svc", path: "any", timeout: -1}},
		{"", []string{"--unit-instance", "client:web"}, waitOpts{instance: "client", name: "web", path: "any", timeout: 30 * time.Second}},
		// The instance ends at the first colon; the name may hold more.
		{"", []string{"--unit-instance", "client:a:b/c d"}, waitOpts{instance: "client", name: "a:b/c d", path: "any", timeout: 30 * time.Second}},
	} {
		got, err := parseWait(tc.instance, tc.args)
		if err != nil || got != tc.want {
			t.Errorf("parseWait(%q, %q) = %+v, %v; want %+v", tc.instance, tc.args, got, err, tc.want)
		}
	}
}

func TestParseWaitRefusesBadArgumentsWithExit2(t *testing.T) {
	for _, tc := range []struct {
		instance string
		args     []string
		msg      string
	}{
		{"", nil, "expected NAME"},
		{"", []string{"a", "b"}, "expected NAME"},
		{"", []string{""}, "empty"},
		{"", []string{"svc", "--path", "relay"}, "expected any or direct"},
		{"", []string{"svc", "--timeout", "soon"}, "expected a duration"},
		{"", []string{"svc", "--timeout", "-1s"}, "expected a duration"},
		{"", []string{"svc", "--timeout"}, "needs a value"},
		{"", []string{"svc", "--colour", "red"}, "unknown option"},
		{"", []string{"--unit-instance", "client"}, "expected INSTANCE:NAME"},
		{"", []string{"--unit-instance", ":svc"}, "expected INSTANCE:NAME"},
		{"", []string{"--unit-instance", "client:"}, "expected INSTANCE:NAME"},
		{"", []string{"--unit-instance", "client:svc", "svc"}, "not both"},
		{"src", []string{"--unit-instance", "client:svc"}, "not both"},
	} {
		_, err := parseWait(tc.instance, tc.args)
		if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("parseWait(%q, %q): %v (exit %d); want exit %d mentioning %q", tc.instance, tc.args, err, exitCode(err), exitUsage, tc.msg)
		}
	}
	// Through run, as a user sees it.
	var out, errOut bytes.Buffer
	if code := run([]string{"wait", "svc", "--path", "sideways"}, nil, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), "--path") {
		t.Errorf("connetctl wait --path sideways: exit %d, %q", code, errOut.String())
	}
}

func TestWaitVerdictSaysWhatIsMissing(t *testing.T) {
	peer := func(path string) dbusapi.PeerInfo { return dbusapi.PeerInfo{ID: "p-" + path, Path: path} }
	for _, tc := range []struct {
		name      string
		want      string
		eps       []waitEndpoint
		ready     bool
		path, msg string
	}{
		{"no endpoint", "any", nil, false, "", "no such endpoint"},
		{"no peer", "any", []waitEndpoint{{kind: "source", state: "active"}}, false, "", "no peer: source"},
		{"refused", "any", []waitEndpoint{{kind: "source", state: "refused: name taken"}}, false, "", "(refused: name taken)"},
		{"peer without path", "any", []waitEndpoint{{kind: "destination", peers: []dbusapi.PeerInfo{peer("none")}}}, false, "", "peers but no path: destination"},
		{"relay is enough", "any", []waitEndpoint{{kind: "source", peers: []dbusapi.PeerInfo{peer("none"), peer("relay")}}}, true, "relay", ""},
		{"relay is not direct", "direct", []waitEndpoint{{kind: "source", peers: []dbusapi.PeerInfo{peer("relay")}}}, false, "", "only relay"},
		{"one direct peer will do", "direct", []waitEndpoint{{kind: "source", peers: []dbusapi.PeerInfo{peer("relay"), peer("direct")}}}, true, "direct", ""},
		{"direct is best for any", "any", []waitEndpoint{{kind: "source", peers: []dbusapi.PeerInfo{peer("relay"), peer("direct")}}}, true, "direct", ""},
		{"either kind will do", "any", []waitEndpoint{{kind: "source"}, {kind: "destination", peers: []dbusapi.PeerInfo{peer("relay")}}}, true, "relay", ""},
		{"both missing", "any", []waitEndpoint{{kind: "source"}, {kind: "destination", peers: []dbusapi.PeerInfo{peer("none")}}}, false, "", "no peer: source \"svc\" has no peer yet; peers but no path"},
	} {
		ready, _, path, msg := waitVerdict("svc", tc.want, tc.eps)
		if ready != tc.ready || path != tc.path || !strings.Contains(msg, tc.msg) || (tc.ready && msg != "") {
			t.Errorf("%s: ready %v path %q %q; want %v %q %q", tc.name, ready, path, msg, tc.ready, tc.path, tc.msg)
		}
	}
}

func TestWaitWithoutABusExitsWith3(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/connetctl-test")
	var out, errOut bytes.Buffer
	if code := run([]string{"wait", "svc", "--timeout", "1s"}, nil, &out, &errOut); code != exitNotRunning || !strings.Contains(errOut.String(), "system bus") {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitNotRunning, errOut.String())
	}
}

// The template unit passes its instance (%I) to --unit-instance, and the
// defaults of its environment must parse.
func TestWaitUnitCommandLineParses(t *testing.T) {
	b, err := os.ReadFile("../../units/connetd-wait@.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	exec := regexp.MustCompile(`(?m)^ExecStart=/usr/bin/connetctl (.*)$`).FindStringSubmatch(unit)
	env := regexp.MustCompile(`(?m)^Environment=(.*)$`).FindStringSubmatch(unit)
	if exec == nil || env == nil {
		t.Fatalf("no ExecStart=/usr/bin/connetctl or Environment= in the unit")
	}
	vars := map[string]string{"%I": "client:web"}
	for _, kv := range strings.Fields(env[1]) {
		k, v, _ := strings.Cut(kv, "=")
		vars["$"+k] = v
	}
	args := strings.Fields(exec[1])
	for i, a := range args {
		if v, ok := vars[a]; ok {
			args[i] = v
		}
	}
	if args[0] != "wait" {
		t.Fatalf("ExecStart runs connetctl %s, not wait", args[0])
	}
	o, err := parseWait("", args[1:])
	if err != nil || o.instance != "client" || o.name != "web" || o.path != "any" || o.timeout <= 0 {
		t.Fatalf("the unit's command line %q: %+v, %v", args, o, err)
	}
	for _, want := range []string{"Type=oneshot", "RemainAfterExit=yes"} {
		if !strings.Contains(unit, "\n"+want+"\n") {
			t.Errorf("the unit lacks %s", want)
		}
	}
}
