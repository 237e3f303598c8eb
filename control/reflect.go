package control

import (
	"context"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/internal/ratelimit"
	"github.com/connetd/connetd/wire"
)

// serveReflect answers reflect requests on the clients' socket until ctx
// ends: a client compares the address control sees with the one a relay
// sees for the same socket to learn how its NAT maps.
func serveReflect(ctx context.Context, tr *quic.Transport) {
	limit := ratelimit.Reflect()
	buf := make([]byte, 1500)
	for {
		n, from, err := tr.ReadNonQUICPacket(ctx, buf)
		if err != nil {
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		if !wire.IsProbe(buf[:n]) || !limit.Allow(ua.AddrPort().Addr(), time.Now()) {
			continue
		}
		if reply := wire.AnswerReflect(buf[:n], ua.AddrPort()); reply != nil {
			_, _ = tr.WriteTo(reply, from)
		}
	}
}
