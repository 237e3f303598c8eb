package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestClientConfiguredOnlyByFlags(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.startEcho(t)
	tp.startServer(t)
	tp.dst = tp.connetd(t, "dst", "--config", "dst.toml")
	port, status := freePort(t), freePort(t)
	p := tp.connetd(t, "flag-src", "client", "--token", "client-s-token", "--server-addr", addr(tp.serverPort),
		"--server-cas", "cert.pem", "--direct-addr", addr(freePort(t)), "--status-addr", addr(status),
		"--src-name", "svc", "--src-addr", addr(port), "--log-format", "json")
	waitPath(t, addr(status), "svc", "direct", 15*time.Second)
	got, err := echoRoundTrip(addr(port), []byte("configured by flags"))
	if err != nil || string(got) != "configured by flags" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	// The token works, but every user can read it in the command line: one
	// warning at start points to --token-file, and never repeats the token.
	logs := p.out.String()
	if n := strings.Count(logs, "flag --token: every user of this machine can read the command line"); n != 1 || !strings.Contains(logs, "--token-file") {
		t.Errorf("connetd --token logged the command-line warning %d times, want once, pointing to --token-file:\n%s", n, logs)
	}
	if strings.Contains(logs, "client-s-token") {
		t.Errorf("connetd logged its token:\n%s", logs)
	}
}

func TestDestinationSendsProxyProtocolHeader(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
			cfg := readFile(t, tp.dir, "dst.toml") + `proxy-proto-version = "` + version + "\"\n"
			writeFile(t, tp.dir, "dst.toml", cfg)
			tp.start(t)
			// echod echoes the header the destination wrote before the bytes.
			got, err := echoRoundTrip(tp.srcAddr("svc"), []byte("payload"))
			if err != nil {
				t.Fatal(err)
			}
			switch version {
			case "v1":
				re := regexp.MustCompile(`^PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ \d+\r\npayload$`)
				if !re.Match(got) {
					t.Fatalf("got %q, want a PROXY v1 line then the payload", got)
				}
			case "v2":
				sig := "\r\n\r\n\x00\r\nQUIT\n"
				if !strings.HasPrefix(string(got), sig) || got[12] != 0x21 || got[13] != 0x11 || !strings.HasSuffix(string(got), "payload") || len(got) != 16+12+len("payload") {
					t.Fatalf("got %q, want a PROXY v2 IPv4 header then the payload", got)
				}
			}
		})
	}
}

func TestSIGTERMStopsEveryRoleCleanly(t *testing.T) {
	tp := newTopology(t, endpoint{name: "svc", srcRoute: "any", dstRoute: "any"})
	tp.start(t)
	for _, p := range []*proc{tp.src, tp.dst, tp.server} {
		p.stop(t)
		out := p.out.String()
		if !strings.Contains(out, "connetd stopped") {
			t.Errorf("%s did not log a clean stop", p.name)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "level=ERROR") {
				t.Errorf("%s logged an error on a normal stop: %s", p.name, line)
			}
		}
	}
}

func TestBadConfigRefusesToStartNamingFileLineAndKey(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "bad.toml", "[client]\ntoken = \"t\"\n\n[client.sources.web]\naddr = \":8000\"\nroute = \"sideways\"\n")
	cmd := exec.Command(filepath.Join(binDir, "connetd"), "--config", "bad.toml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("connetd with a bad config: %v, want a non-zero exit", err)
	}
	want := `bad.toml:6: client.sources.web.route: "sideways" is not one of any, direct, relay`
	if !strings.Contains(string(out), want) {
		t.Fatalf("output %q does not contain %q", out, want)
	}
}
