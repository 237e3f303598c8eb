package config

import (
	"strings"
	"testing"
)

func TestMetricsAddrEveryRoleOffUnlessSet(t *testing.T) {
	inTempDir(t, stdFiles)
	for _, tt := range []struct {
		role, table string
		get         func(f *File) string
	}{
		{"client", doc(`[client]`, `token = "t"`), func(f *File) string { return f.Client.MetricsAddr }},
		{"server", doc(`[server]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `tokens = ["a"]`), func(f *File) string { return f.Server.MetricsAddr }},
		{"control", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["a"]`), func(f *File) string { return f.Control.MetricsAddr }},
		{"relay", doc(`[relay]`, `token = "t"`), func(f *File) string { return f.Relay.MetricsAddr }},
	} {
		t.Run(tt.role, func(t *testing.T) {
			write(t, "off.toml", tt.table)
			f, err := Load("off.toml")
			if err != nil {
				t.Fatal(err)
			}
			eq(t, tt.get(f), "")

			write(t, "on.toml", tt.table+`metrics-addr = "127.0.0.1:19183"`+"\n")
			if f, err = Load("on.toml"); err != nil {
				t.Fatal(err)
			}
			eq(t, tt.get(f), "127.0.0.1:19183")

			// The key is on the table's last line; errors name file, line and key.
			write(t, "bad.toml", tt.table+`metrics-addr = "nope"`+"\n")
			_, err = Load("bad.toml")
			line := strings.Count(tt.table, "\n") + 1
			wantErr(t, err, "bad.toml", line, tt.role+".metrics-addr", "")

			if f, err = ParseCommandLine([]string{"--config", "off.toml", "--metrics-addr", "[::1]:9"}); err != nil {
				t.Fatal(err)
			}
			eq(t, tt.get(f), "[::1]:9")
		})
	}
}
