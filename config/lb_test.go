package config

import (
	"strings"
	"testing"
)

func TestLoadLBErrors(t *testing.T) {
	src := func(more ...string) string {
		return with(clientHead, append([]string{`[client.sources.web]`, `addr = ":80"`}, more...)...)
	}
	tests := []struct {
		name string
		toml string
		line int
		key  string
		msg  string
	}{
		{"bad policy", src(`lb-policy = "fastest"`), 5, "client.sources.web.lb-policy", `"fastest" is not one of least-latency, least-conns, round-robin, random`},
		{"bad retry", src(`lb-retry = "always"`), 5, "client.sources.web.lb-retry", `"always" is not one of count, timed, all`},
		{"negative retry max", src(`lb-retry = "all"`, `lb-retry-max = -1`), 6, "client.sources.web.lb-retry-max", "-1 is negative"},
		{"count without max", src(`lb-policy = "random"`, `lb-retry = "count"`), 6, "client.sources.web.lb-retry", `"count" needs lb-retry-max, the tries`},
		{"timed without max", src(`lb-retry = "timed"`, `lb-retry-max = 0`), 5, "client.sources.web.lb-retry", `"timed" needs lb-retry-max, the milliseconds`},
		{"lb on a udp source", with(clientHead, `[client.sources.dns]`, `url = "udp://:53"`, `lb-policy = "round-robin"`), 5, "client.sources.dns.lb-policy", "applies only to tcp sources"},
		{"lb on an http source", with(clientHead, `[client.sources.web]`, `url = "http://:8080/"`, `lb-retry = "all"`), 5, "client.sources.web.lb-retry", "applies only to tcp:// sources: a http source does not balance"},
		{"lb on a destination", with(clientHead, `[client.destinations.web]`, `addr = ":80"`, `lb-policy = "random"`), 5, "client.destinations.web.lb-policy", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, stdFiles)
			write(t, "bad.toml", tt.toml)
			f, err := Load("bad.toml")
			if f != nil {
				t.Errorf("Load returned a config along with error %v", err)
			}
			wantErr(t, err, "bad.toml", tt.line, tt.key, tt.msg)
		})
	}
}

func TestLoadLB(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "c.toml", with(clientHead,
		`[client.sources.web]`, `addr = ":80"`, `lb-policy = "least-conns"`, `lb-retry = "timed"`, `lb-retry-max = 250`,
		`[client.sources.api]`, `addr = ":81"`, `lb-retry = "all"`, `lb-retry-max = 3`,
		`[client.sources.plain]`, `addr = ":82"`))
	f, err := Load("c.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Client.Sources["web"].LB, (LB{LBPolicy: "least-conns", LBRetry: "timed", LBRetryMax: 250}); got != want {
		t.Errorf("web: %+v, want %+v", got, want)
	}
	if got := f.Client.Sources["plain"].LB; got != (LB{}) {
		t.Errorf("plain: %+v, want no balancing", got)
	}
	w := strings.Join(warnings(f), "\n")
	if !strings.Contains(w, "c.toml:11: client.sources.api.lb-retry-max") || !strings.Contains(w, "ignored") {
		t.Errorf("warnings %q, want one that api's lb-retry-max is ignored", w)
	}
	again := f.Client.Sources["web"]
	if err := CheckSource("web", &again); err != nil || again != f.Client.Sources["web"] {
		t.Fatalf("validated again: %+v, %v; want it unchanged", again, err)
	}
}
