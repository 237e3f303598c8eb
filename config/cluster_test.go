package config

import "testing"

func TestClusterStoreKeysAreReadInServerAndControl(t *testing.T) {
	inTempDir(t, stdFiles)
	write(t, "s.toml", with(serverHead, `store = "etcd"`, `etcd-endpoints = ["https://10.0.0.1:2379", "http://[::1]:2379"]`,
		`etcd-cas-file = "cert.pem"`, `etcd-cert-file = "cert.pem"`, `etcd-key-file = "key.pem"`))
	f, err := Load("s.toml")
	if err != nil {
		t.Fatal(err)
	}
	eq(t, f.Server.ClusterStore, ClusterStore{Store: StoreEtcd, EtcdEndpoints: []string{"https://10.0.0.1:2379", "http://[::1]:2379"},
		EtcdCAsFile: "cert.pem", EtcdCertFile: "cert.pem", EtcdKeyFile: "key.pem", EtcdPrefix: DefaultEtcdPrefix})

	write(t, "c.toml", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["c"]`))
	if f, err = Load("c.toml"); err != nil {
		t.Fatal(err)
	}
	eq(t, f.Control.ClusterStore, ClusterStore{Store: StoreLocal})
}

func TestClusterStoreErrorsNameFileLineAndKey(t *testing.T) {
	tests := []struct {
		name, toml string
		line       int
		key, msg   string
	}{
		{"unknown store", with(serverHead, `store = "raft"`), 5, "server.store", `"raft" is not a store`},
		{"etcd without endpoints", with(serverHead, `store = "etcd"`), 5, "server.store", "needs etcd-endpoints"},
		{"endpoint without scheme", with(serverHead, `store = "etcd"`, `etcd-endpoints = ["10.0.0.1:2379"]`), 6,
			"server.etcd-endpoints", "give http:// or https://"},
		{"endpoint without port", with(serverHead, `store = "etcd"`, `etcd-endpoints = ["https://ctl-1"]`), 6,
			"server.etcd-endpoints", "give scheme, host and port only"},
		{"etcd keys with the local store", with(serverHead, `etcd-prefix = "/x/"`), 5, "server.etcd-prefix", `need store = "etcd"`},
		{"cert without key", doc(`[control]`, `cert-file = "cert.pem"`, `key-file = "key.pem"`, `clients-tokens = ["c"]`,
			`store = "etcd"`, `etcd-endpoints = ["https://h:2379"]`, `etcd-cert-file = "cert.pem"`), 7,
			"control.etcd-cert-file", "needs etcd-key-file too"},
		{"missing CA file", with(serverHead, `store = "etcd"`, `etcd-endpoints = ["https://h:2379"]`, `etcd-cas-file = "nope.pem"`), 7,
			"server.etcd-cas-file", "no such file"},
		{"prefix not a path", with(serverHead, `store = "etcd"`, `etcd-endpoints = ["https://h:2379"]`, `etcd-prefix = "connetd"`), 7,
			"server.etcd-prefix", "starts and ends with /"},
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
