package config

import "testing"

func TestLimitKeysAreReadInServerAndControl(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "s.toml", with(serverHead, `max-sessions-per-token = 4`, `max-endpoints-per-client = 8`,
		`max-peers-per-endpoint = 2`, `max-punches-per-minute = 30`))
	f, err := Load("s.toml")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, f.Server.Limits, Limits{MaxSessionsPerToken: 4, MaxEndpointsPerClient: 8, MaxPeersPerEndpoint: 2, MaxPunchesPerMinute: 30})

	write(t, "c.toml", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["c"]`,
		`max-peers-per-endpoint = 5`))
	if f, err = Load("c.toml"); err != nil {
		t.Fatal(err)
	}
	// Absent keys stay 0: control applies its defaults.
	eq(t, f.Control.Limits, Limits{MaxPeersPerEndpoint: 5})
}

func TestLimitKeysRefuseNegativeNumbersAndOtherTypes(t *testing.T) {
	tests := []struct {
		name, toml string
		line       int
		key, msg   string
	}{
		{"negative in server", with(serverHead, `max-sessions-per-token = 0`, `max-endpoints-per-client = -1`), 6,
			"server.max-endpoints-per-client", "-1 is negative: give a positive number, or 0 for the default"},
		{"negative in control", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["c"]`,
			`max-punches-per-minute = -60`), 5, "control.max-punches-per-minute", "-60 is negative"},
		{"string", with(serverHead, `max-peers-per-endpoint = "64"`), 5, "server.max-peers-per-endpoint",
			"expected an integer, found a string"},
		{"in the wrong table", with(clientHead, `max-sessions-per-token = 3`), 3, "client.max-sessions-per-token", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTempDir(t, stdFiles)
			write(t, "bad.toml", tt.toml)
			_, err := Load("bad.toml")
			wantErr(t, err, "bad.toml", tt.line, tt.key, tt.msg)
		})
	}
}
