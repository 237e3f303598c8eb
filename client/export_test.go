package client

import "github.com/quic-go/quic-go"

// AdmitPeer hands conn to admitPeer as the accept loops do once TLS
// pinning has let its peer in. Pinning and admitPeer ask the same
// question (is the peer a source of ours?), at the handshake and at the
// accept: admitPeer refuses a peer that stopped being a source in between.
// Tests reach that case by accepting the connection themselves.
func (c *Client) AdmitPeer(conn *quic.Conn) { c.admitPeer(conn, pathDirect) }
