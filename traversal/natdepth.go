package traversal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// How far away is the outermost NAT? A punch's opening packets must be
// forwarded by it (only then does it create the mapping and the filter
// entry the peer's packets need) and die soon after, before they reach the
// peer's NAT. One home NAT is the first hop, so TTL 2 does; behind a home
// NAT inside a carrier NAT (CGNAT) the outermost NAT is the second hop and
// TTL 2 dies inside it, at the carrier's router: the opening does nothing
// there, and two such clients never meet.
//
// natDepth finds the hop count by asking the outermost NAT itself: the
// address control observed for us is that NAT's public address, and a
// datagram sent to it from inside is delivered to that router locally once
// it gets there. Sent with TTL 1, 2, 3..., each datagram dies at the hop
// its TTL runs out (an ICMP "time exceeded" from that hop) until the TTL
// reaches the NAT, which answers "port unreachable" from the public address
// (or, if it filters such datagrams, nothing). So the hop count is the
// first TTL that gets anything but "time exceeded": the reflexive address
// appears.
//
// The ICMP errors come from the socket's error queue (IP_RECVERR), on a
// socket of its own: the direct socket's reads belong to quic-go, and an
// error queued there would surface as an error of its next read.
const (
	maxNATDepth = 4
	// Routers limit the ICMP errors they send one host to a burst of six,
	// then one a second (Linux's icmp_ratelimit), and a client that has
	// just asked its router for a port mapping (NAT-PMP, PCP) the router
	// does not serve has had "port unreachable" for each request: the
	// next answer may be a second away. So a TTL that gets no answer is
	// tried again after depthWait, depthTries times in all.
	depthWait  = 1100 * time.Millisecond
	depthTries = 3
	// depthPort is where the datagrams go on the NAT: a port nothing
	// listens on (discard), and not the direct socket's mapped port, which
	// a NAT that hairpins would send back to us.
	depthPort = 9
)

// natDepth returns the hop count to the router that owns public (1: the
// first router), or an error when the hops do not answer as described.
func natDepth(ctx context.Context, public netip.Addr) (int, error) {
	if !public.Is4() {
		return 0, errors.New("the public address is not IPv4")
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return 0, fmt.Errorf("probe socket: %w", err)
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1) }); err != nil || serr != nil {
		return 0, fmt.Errorf("IP_RECVERR: %w", errors.Join(err, serr))
	}
	to := &net.UDPAddr{IP: public.AsSlice(), Port: depthPort}
	for ttl := 1; ttl <= maxNATDepth; ttl++ {
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl) }); err != nil || serr != nil {
			return 0, fmt.Errorf("IP_TTL: %w", errors.Join(err, serr))
		}
		var ans icmpAnswer
		for try := 0; try < depthTries && !ans.ok; try++ {
			if _, err := c.WriteToUDP([]byte("connetd nat depth"), to); err != nil {
				return 0, fmt.Errorf("send with TTL %d: %w", ttl, err)
			}
			if ans, err = readICMP(ctx, c, rc, depthWait); err != nil {
				return 0, err
			}
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
		}
		switch {
		case !ans.ok:
			// Silence: the NAT drops datagrams to itself. The hops before
			// it answered (else this would be the first TTL and no proof
			// of anything).
			if ttl == 1 {
				return 0, errors.New("no answer from the first hop")
			}
			return ttl, nil
		case ans.typ == icmpTimeExceeded && ans.from != public:
			continue
		case ans.from == public:
			return ttl, nil
		default:
			return 0, fmt.Errorf("TTL %d: ICMP type %d code %d from %s", ttl, ans.typ, ans.code, ans.from)
		}
	}
	return 0, fmt.Errorf("no answer from %s within %d hops", public, maxNATDepth)
}

const (
	icmpDestUnreachable = 3
	icmpTimeExceeded    = 11
)

type icmpAnswer struct {
	ok        bool
	typ, code uint8
	from      netip.Addr
}

// readICMP waits up to d for one ICMP error in c's error queue.
func readICMP(ctx context.Context, c *net.UDPConn, rc interface {
	Read(func(fd uintptr) bool) error
}, d time.Duration) (icmpAnswer, error) {
	deadline := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	var ans icmpAnswer
	var perr error
	buf := make([]byte, 64)
	oob := make([]byte, 512)
	err := rc.Read(func(fd uintptr) bool {
		// The poller wakes readers on EPOLLERR too, so a queued error
		// ends the wait like data would.
		_, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			// Nothing queued: drain a datagram, if one came, so that it
			// does not keep the socket readable.
			_, _, _ = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return false
		}
		if err != nil {
			perr = err
			return true
		}
		ans, perr = parseRecvErr(oob[:oobn])
		return true
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return icmpAnswer{}, nil
	}
	if err != nil {
		return icmpAnswer{}, fmt.Errorf("read error queue: %w", err)
	}
	return ans, perr
}

// parseRecvErr finds the sock_extended_err of an ICMP error among control
// messages: struct { u32 errno; u8 origin, type, code, pad; u32 info, data }
// followed by the offender's sockaddr_in.
func parseRecvErr(oob []byte) (icmpAnswer, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return icmpAnswer{}, fmt.Errorf("parse error queue message: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IP || m.Header.Type != unix.IP_RECVERR || len(m.Data) < 16 {
			continue
		}
		if m.Data[4] != unix.SO_EE_ORIGIN_ICMP {
			continue
		}
		ans := icmpAnswer{ok: true, typ: m.Data[5], code: m.Data[6]}
		// sockaddr_in: family (2), port (2), address (4).
		if off := m.Data[16:]; len(off) >= 8 && binary.NativeEndian.Uint16(off) == unix.AF_INET {
			ans.from = netip.AddrFrom4([4]byte(off[4:8]))
		}
		return ans, nil
	}
	return icmpAnswer{}, errors.New("error queue message without an ICMP error")
}
