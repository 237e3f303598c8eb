package relay_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/testcert"
	"github.com/connetd/connetd/relay"
	"github.com/connetd/connetd/wire"
)

// A relay registers with a real control server over QUIC, and a wrong
// token comes back as control's refusal.
func TestRelayRegistersWithControl(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	ctrl := control.New(control.Config{Cert: cert.TLS, Logger: slog.New(slog.DiscardHandler),
		Auth: control.Auth{RelayTokens: []string{"relay-token"}}})
	cu := udp(t)
	ctr := &quic.Transport{Conn: cu}
	defer ctr.Close()
	relayID, err := identity.New("relay")
	if err != nil {
		t.Fatal(err)
	}
	srv := relay.New(relay.Config{Identity: relayID, Conn: udp(t), Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()

	var g errgroup.Group
	defer g.Wait()
	defer cancel()
	g.Go(func() error { return ctrl.ServeRelays(ctx, ctr) })
	controlAddr := cu.LocalAddr().String()
	verify := &tls.Config{RootCAs: cert.Pool, ServerName: "127.0.0.1"}

	if _, err := srv.DialControl(ctx, controlAddr, verify, "wrong", "relay.example:1"); err == nil {
		t.Fatal("control accepted a wrong relay token")
	} else if werr := (*wire.Error)(nil); !errors.As(err, &werr) || werr.Code != wire.CodeUnauthorized {
		t.Fatalf("wrong token: %v, want control's unauthorized error", err)
	}

	g.Go(func() error {
		return srv.RunControl(ctx, func(ctx context.Context) (io.ReadWriteCloser, error) {
			return srv.DialControl(ctx, controlAddr, verify, "relay-token", "relay.example:19191")
		})
	})
	for {
		changed := ctrl.Changed()
		st := ctrl.Status()
		if len(st.Relays) == 1 {
			if st.Relays[0].ID != relayID.ID.String() || st.Relays[0].Addr != "relay.example:19191" {
				t.Fatalf("control lists %+v", st.Relays[0])
			}
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatal("the relay never registered")
		}
	}
}
