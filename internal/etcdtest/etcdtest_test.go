package etcdtest

import (
	"net/http"
	"testing"
	"time"
)

func TestClusterStopStart(t *testing.T) {
	c := Start(t, 3)
	if got := len(c.Endpoints()); got != 3 {
		t.Fatalf("endpoints: %d, want 3", got)
	}
	m := c.Members[1]
	m.Stop(t)
	if m.Running() {
		t.Fatal("stopped member still running")
	}
	m.Start(t)
	m.WaitHealthy(t, 10*time.Second)
	c.Members[2].Kill(t)
	c.Members[2].Start(t)
	c.Members[2].WaitHealthy(t, 10*time.Second)
}

func TestClusterTLS(t *testing.T) {
	c := Start(t, 1, WithTLS())
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.ClientTLS()}}
	if err := healthy(hc, c.Members[0].ClientURL); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{c.CAFile, c.ClientCertFile, c.ClientKeyFile} {
		if f == "" {
			t.Fatal("certificate file not set")
		}
	}
}
