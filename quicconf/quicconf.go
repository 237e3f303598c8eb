// Package quicconf holds the quic-go settings of each kind of link, so that
// both ends of a link agree and tuning happens in one place.
package quicconf

import (
	"time"

	"github.com/quic-go/quic-go"
)

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
	}
}

// Peer is for peer↔peer connections, direct or through a relay: many
// concurrent streams, large windows for bulk transfers.
func Peer() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           5 * time.Second,
		MaxIdleTimeout:                 20 * time.Second,
		KeepAlivePeriod:                5 * time.Second,
		MaxIncomingStreams:             MaxPeerStreams,
		MaxIncomingUniStreams:          -1,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 4 << 20,
		MaxConnectionReceiveWindow:     64 << 20,
	}
}
