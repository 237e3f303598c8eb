// Package quicconf holds the quic-go settings of each kind of link, so that
// both ends of a link agree and tuning happens in one place.
package quicconf

import (
	"time"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/wire"
)

// InitialPacket is the size of the first packets of every connection: the
// UDP payload a 1280-byte IPv6 path carries (1280 − 40 − 8), so links
// through tunnels and small-MTU paths come up. Path MTU discovery grows
// the packets where the path allows.
const InitialPacket = 1232

// MaxPeerStreams is how many proxied TCP connections may be open at once over
// one peer connection. Above it new TCP connections are refused, not queued.
const MaxPeerStreams = 1 << 16

// Control is for client↔control, relay↔control and client↔relay links:
// few streams, quick detection of a dead server.
func Control() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout: 5 * time.Second,
		MaxIdleTimeout:       20 * time.Second,
		KeepAlivePeriod:      5 * time.Second,
		MaxIncomingStreams:   16,
		InitialPacketSize:    InitialPacket,
	}
}

// ControlFailover is Control for a client or relay that has several control
// addresses: a node that died silently (kill -9, power loss: no
// CONNECTION_CLOSE) must be noticed within about a second so that the link
// moves to the next node within two. QUIC's own keep-alive and idle timeout
// do it, with no protocol of our own: the idle timeout in effect is the
// smaller of both ends', so control's 20 s does not stretch ours, and four
// keep-alives per idle period let three in a row be lost before a live
// node is given up. A single address keeps Control: there is nowhere else
// to go, so the chatter would buy nothing.
func ControlFailover() *quic.Config {
	c := Control()
	c.HandshakeIdleTimeout = 2 * time.Second
	c.MaxIdleTimeout = time.Second
	c.KeepAlivePeriod = 250 * time.Millisecond
	return c
}

// Peer is for peer↔peer connections, direct or through a relay: many
// concurrent streams, large windows for bulk transfers.
func Peer() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout: 5 * time.Second,
		MaxIdleTimeout:       20 * time.Second,
		KeepAlivePeriod:      5 * time.Second,
		MaxIncomingStreams:   MaxPeerStreams,
		// One stream each way carries acknowledgements of resumable
		// flows (ALPN connetd-peer/2); a few more let a broken one be
		// replaced.
		MaxIncomingUniStreams:          4,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     64 << 20,
		InitialPacketSize:              InitialPacket,
		// UDP flows travel as DATAGRAM frames (RFC 9221); a peer
		// without them is told at the handshake and its flows fail
		// with a clear error rather than a silent drop.
		EnableDatagrams: true,
	}
}

// RelayedPeer is Peer for connections through a relay: each packet
// travels in a relay frame, whose header must fit in the path too.
func RelayedPeer() *quic.Config {
	c := Peer()
	c.InitialPacketSize = uint16(InitialPacket - wire.RelayFrameHeader)
	return c
}
