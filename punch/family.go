package punch

import (
	"net/netip"
	"time"
)

// Choosing the address family. A peer with a public IPv6 address behind a
// stateful firewall and IPv4 behind a NAT offers candidates of both; the
// same attempt probes both (opening packets open a firewall just as they
// open a NAT). Where IPv4 cannot punch (two hard NATs) the IPv6 path is the
// only direct one. Where both work, the dialing side takes the one with
// the lower RTT, and IPv6 on a tie: no NAT on the way, so no mapping that
// can expire or move.

// pathSample is the first path of one address family an attempt saw.
type pathSample struct {
	conn   Conn
	remote netip.AddrPort
	rtt    time.Duration // 0 until a pong from remote was timed
}

// family indexes Session.paths: 0 IPv4, 1 IPv6.
func family(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 0
	}
	return 1
}

// dualStack reports whether addrs has candidates of both families.
func dualStack(addrs []netip.AddrPort) bool {
	var has [2]bool
	for _, a := range addrs {
		has[family(a.Addr())] = true
	}
	return has[0] && has[1]
}

// PreferIPv6 reports whether an IPv6 path with RTT v6 beats an IPv4 path
// with RTT v4. Lower RTT wins; RTTs within a tie margin — 10 % of the
// lower one, at least 1 ms, the jitter of a single timed probe — are a
// tie, and IPv6 wins a tie.
func PreferIPv6(v4, v6 time.Duration) bool {
	return v6 <= v4+tieMargin(v4, v6)
}

func tieMargin(a, b time.Duration) time.Duration {
	return max(time.Millisecond, min(a, b)/10)
}

// notePathLocked records a probe of this attempt from `from` on c while a
// dual-stack choice is open, keeping each family's least RTT. It reports whether the probe is on a path still in the
// running (to be answered): a family keeps the socket of its first path,
// so that both sides settle on the same sockets.
func (s *Session) notePathLocked(c Conn, from netip.AddrPort, pong bool, now time.Time) bool {
	f := family(from.Addr())
	p := s.paths[f]
	if p == nil {
		p = &pathSample{conn: c, remote: from}
		s.paths[f] = p
		if s.seenAt.IsZero() {
			s.seenAt = now
			close(s.seen)
		}
	}
	if p.conn != c {
		return false
	}
	if sent, ok := s.sent[from.Addr()]; pong && ok && from == p.remote {
		if rtt := max(now.Sub(sent), time.Microsecond); p.rtt == 0 || rtt < p.rtt {
			p.rtt = rtt
		}
	}
	return true
}

// chooseLocked names the path of a dual-stack choice once its wait is over (the
// settle time is over, or the attempt ends), from what was seen: two timed
// paths by RTT, else a timed path beats an untimed one (a path found by the peer's ping alone), and among
// equals IPv6 wins.
//
// It never chooses earlier: one pong is one sample, and scheduling jitter
// on a loaded host exceeds a LAN's RTT difference; the settle time brings
// the pongs of two or three ping rounds, and each family's least counts.
func (s *Session) chooseLocked() {
	if s.result != nil {
		return
	}
	v4, v6 := s.paths[0], s.paths[1]
	var pick *pathSample
	switch {
	case v4 != nil && v6 != nil && v4.rtt > 0 && v6.rtt > 0:
		pick = v4
		if PreferIPv6(v4.rtt, v6.rtt) {
			pick = v6
		}
	case v4 == nil:
		pick = v6
	case v6 == nil:
		pick = v4
	case v4.rtt > 0 && v6.rtt == 0:
		pick = v4
	default:
		pick = v6
	}
	if pick == nil {
		return
	}
	s.result = &Result{Conn: pick.conn, Remote: pick.remote}
	close(s.found)
}

func (s *Session) seenTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seenAt
}
