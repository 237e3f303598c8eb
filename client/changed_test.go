package client_test

import (
	"testing"
	"time"

	"github.com/connetd/connetd/client"
)

// waitChanged waits on Changed until cond holds for the status, without
// polling: every look at the status follows a notification.
func waitChanged(t *testing.T, c *client.Client, what string, cond func(client.Status) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		ch := c.Changed()
		if cond(c.Status()) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no change notification brought %s: %+v", what, c.Status())
		}
	}
}

func TestChangesArePushedForPathsAndBytes(t *testing.T) {
	l := newLab(t)
	svc := echoServer(t)
	l.client("dst", client.Config{}, func(c *client.Client) {
		must(t, c.AddDestination("svc", client.DestinationConfig{Addr: svc}))
	})
	addr := freeTCP(t)
	src := l.client("src", client.Config{}, func(c *client.Client) {
		must(t, c.AddSource("svc", client.SourceConfig{Addr: addr}))
	})
	waitChanged(t, src, "a direct path", func(st client.Status) bool {
		return len(st.Sources) == 1 && len(st.Sources[0].Peers) == 1 && st.Sources[0].Peers[0].Path == "direct"
	})
	msg := "counted bytes"
	echo(t, addr, msg)
	// The last bytes of a flow are signalled too, not only the first.
	waitChanged(t, src, "the echoed bytes", func(st client.Status) bool {
		s := st.Sources[0]
		return s.BytesOut == int64(len(msg)) && s.BytesIn == int64(len(msg))
	})
	must(t, src.RemoveSource("svc"))
	waitChanged(t, src, "the source's removal", func(st client.Status) bool { return len(st.Sources) == 0 })
}
