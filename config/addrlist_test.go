package config

import (
	"os"
	"testing"
)

func TestControlAddressLists(t *testing.T) {
	inTempDir(t, stdFiles)
	for _, c := range []struct {
		name, toml, want string
	}{
		{"one", doc(`[client]`, `token = "t"`, `server-addr = "ctl-1:19190"`), "ctl-1:19190"},
		{"comma list", doc(`[client]`, `token = "t"`, `server-addr = "ctl-1:19190, ctl-2:19190,ctl-3:19190"`), "ctl-1:19190,ctl-2:19190,ctl-3:19190"},
		{"array", doc(`[client]`, `token = "t"`, `server-addrs = ["ctl-1:19190", "[::1]:19190"]`), "ctl-1:19190,[::1]:19190"},
	} {
		t.Run(c.name, func(t *testing.T) {
			write(t, "c.toml", c.toml)
			f, err := Load("c.toml")
			if err != nil {
				t.Fatal(err)
			}
			eq(t, f.Client.ServerAddr, c.want)
			eq(t, ControlAddrs(f.Client.ServerAddr), ControlAddrs(c.want))
		})
	}
	write(t, "r.toml", doc(`[relay]`, `token = "t"`, `control-addrs = ["a:19189", "b:19189"]`))
	f, err := Load("r.toml")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, f.Relay.ControlAddr, "a:19189,b:19189")
}

func TestControlAddressListErrors(t *testing.T) {
	inTempDir(t, stdFiles)
	for _, c := range []struct {
		name, toml string
		line       int
		key, msg   string
	}{
		{"both", doc(`[client]`, `token = "t"`, `server-addr = "a:1"`, `server-addrs = ["b:2"]`), 4, "client.server-addrs", "server-addr and server-addrs are both set"},
		{"bad item", doc(`[client]`, `token = "t"`, `server-addr = "a:1,b"`), 3, "client.server-addr", `"b" is not a host:port address`},
		{"empty item", doc(`[client]`, `token = "t"`, `server-addr = "a:1,,b:2"`), 3, "client.server-addr", "address 2 of the list is empty"},
		{"array item", doc(`[client]`, `token = "t"`, `server-addrs = ["a:1", "a:1"]`), 3, "client.server-addrs[1]", `"a:1" is listed twice`},
		{"relay both", doc(`[relay]`, `token = "t"`, `control-addr = "a:1"`, `control-addrs = ["b:2"]`), 4, "relay.control-addrs", "control-addr and control-addrs are both set"},
		{"relay bad", doc(`[relay]`, `token = "t"`, `control-addrs = ["a:1", "b:x"]`), 3, "relay.control-addrs[1]", `"b:x" is not a host:port address`},
		{"node name", doc(`[server]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `tokens = ["a"]`, `node-name = "ctl 1"`), 5, "server.node-name", "is not a node name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			write(t, "c.toml", c.toml)
			_, err := Load("c.toml")
			wantErr(t, err, "c.toml", c.line, c.key, c.msg)
		})
	}
}

func TestNodeName(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "s.toml", doc(`[server]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `tokens = ["a"]`))
	f, err := Load("s.toml")
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	eq(t, f.Server.NodeName, host)
	write(t, "c.toml", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["a"]`, `node-name = "ctl-1"`))
	if f, err = Load("c.toml"); err != nil {
		t.Fatal(err)
	}
	eq(t, f.Control.NodeName, "ctl-1")
}

func TestControlAddressFlags(t *testing.T) {
	inTempDir(t, stdFiles)
	f, err := ParseCommandLine([]string{"client", "--token", "t", "--server-addr", "a:1,b:2"})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, f.Client.ServerAddr, "a:1,b:2")
	// A flag replaces the file's list, whichever key the file used.
	write(t, "c.toml", doc(`[client]`, `token = "t"`, `server-addrs = ["x:1", "y:2"]`))
	if f, err = ParseCommandLine([]string{"client", "--config", "c.toml", "--server-addr", "a:1"}); err != nil {
		t.Fatal(err)
	}
	eq(t, f.Client.ServerAddr, "a:1")
	if f, err = ParseCommandLine([]string{"relay", "--token", "t", "--control-addrs", "a:1,b:2"}); err != nil {
		t.Fatal(err)
	}
	eq(t, f.Relay.ControlAddr, "a:1,b:2")
}
