package control_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/testcert"
)

// A relay that links to control again (it restarted, or its old link is
// half dead) replaces its previous link: two links of one relay never run
// side by side.
func TestRelayLinkReplacesThePreviousLinkOfTheSameRelay(t *testing.T) {
	c, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := control.New(control.Config{Cert: c.TLS, Logger: slog.New(slog.DiscardHandler)})
	relayID, err := identity.New("relay")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var readers sync.WaitGroup
	link := func() (done chan error) {
		ours, theirs := net.Pipe()
		done = make(chan error, 1)
		go func() { done <- srv.AttachRelay(ctx, ours, relayID.DER, "127.0.0.1:19191") }()
		readers.Go(func() { _, _ = io.Copy(io.Discard, theirs) }) // the relay reads its tables
		t.Cleanup(func() { theirs.Close() })
		return done
	}
	t.Cleanup(readers.Wait) // after the pipes close (cleanups run last-first)
	first := link()
	waitRelays(t, srv, 1)
	second := link()
	select {
	case err := <-first:
		if err == nil {
			t.Fatal("the first link ended without saying why")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the first link of the relay still runs beside the second")
	}
	select {
	case err := <-second:
		t.Fatalf("the second link ended too: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(srv.Status().Relays); n != 1 {
		t.Fatalf("control lists %d relays, want 1", n)
	}
	cancel()
	<-second
}

func waitRelays(t *testing.T, srv *control.Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(srv.Status().Relays) == n {
			return
		}
	}
	t.Fatalf("control never listed %d relays", n)
}
