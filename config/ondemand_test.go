package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadOnDemand(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "c.toml", with(clientHead,
		`[client.destinations.app]`, `addr = "127.0.0.1:8080"`, `start-unit = "connetd-ondemand-app.service"`, `stop-idle = "10m"`,
		`[client.destinations.web]`, `url = "http://127.0.0.1:8081"`, `start-unit = "web@blue.service"`))
	f, err := Load("c.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Client.Destinations["app"].OnDemand; got != (OnDemand{StartUnit: "connetd-ondemand-app.service", StopIdle: "10m", StopIdleAfter: 10 * time.Minute}) {
		t.Fatalf("app: %+v", got)
	}
	if got := f.Client.Destinations["web"].OnDemand; got != (OnDemand{StartUnit: "web@blue.service"}) {
		t.Fatalf("web: %+v", got)
	}
	// Only web's unit is outside what the shipped polkit rule allows.
	if len(f.Warnings) != 1 || f.Warnings[0].Key != "client.destinations.web.start-unit" || !strings.Contains(f.Warnings[0].Msg, "polkit rule") {
		t.Fatalf("warnings %v, want one about web's start-unit and polkit", f.Warnings)
	}
}

func TestLoadOnDemandErrors(t *testing.T) {
	dst := append(append([]string{}, clientHead...), `[client.destinations.app]`)
	tests := []struct {
		name  string
		lines []string
		key   string
		msg   string
	}{
		{"not a service", []string{`addr = ":80"`, `start-unit = "app.socket"`}, "start-unit", "not a systemd service name"},
		{"path", []string{`addr = ":80"`, `start-unit = "/etc/systemd/system/app.service"`}, "start-unit", "not a systemd service name"},
		{"empty name", []string{`addr = ":80"`, `start-unit = ".service"`}, "start-unit", "not a systemd service name"},
		{"udp", []string{`url = "udp://:53"`, `start-unit = "dns.service"`}, "start-unit", "not udp://"},
		{"file", []string{`url = "file:///srv"`, `start-unit = "app.service"`}, "start-unit", "not a file server"},
		{"idle without unit", []string{`addr = ":80"`, `stop-idle = "10m"`}, "stop-idle", "only with start-unit"},
		{"bad idle", []string{`addr = ":80"`, `start-unit = "app.service"`, `stop-idle = "10"`}, "stop-idle", "not a positive duration"},
		{"negative idle", []string{`addr = ":80"`, `start-unit = "app.service"`, `stop-idle = "-1m"`}, "stop-idle", "not a positive duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, stdFiles)
			write(t, "bad.toml", with(dst, tt.lines...))
			_, err := Load("bad.toml")
			wantErr(t, err, "bad.toml", len(dst)+len(tt.lines), "client.destinations.app."+tt.key, tt.msg)
		})
	}
}
