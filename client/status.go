package client

import (
	"fmt"
	"net"
	"sort"

	"github.com/quic-go/quic-go"

	"github.com/connetd/connetd/traversal"
	"github.com/connetd/connetd/wire"
)

// Status is the client's JSON status.
type Status struct {
	ID         string `json:"id"`
	ServerAddr string `json:"server_addr"`
	Control    string `json:"control"` // "connected" or "connecting"
	// ControlAddr is the control address of the live session (one of
	// ServerAddr's, resolved); ControlNode is that control node's name,
	// from its welcome (empty from an older control).
	ControlAddr string `json:"control_addr,omitempty"`
	ControlNode string `json:"control_node,omitempty"`
	Observed    string `json:"observed,omitempty"`
	ControlRTT  int64  `json:"control_rtt_us,omitempty"` // smoothed RTT of the control connection
	// ClockSkewMs is control's clock minus ours, estimated from the last
	// welcome; absent before one (or with a control too old to say).
	ClockSkewMs *int64 `json:"clock_skew_ms,omitempty"`
	NAT         string `json:"nat"`                 // none, easy, hard or unknown
	NATBasis    string `json:"nat_basis,omitempty"` // how NAT was decided: what control and a relay observed
	// NATHops is how many hops away the outermost NAT is (2 behind a
	// home NAT inside a carrier NAT); OpenTTL the TTL punch openings use.
	NATHops      int              `json:"nat_hops,omitempty"`
	OpenTTL      int              `json:"open_ttl,omitempty"`
	Candidates   []string         `json:"candidates"`             // reported to control besides the observed address
	PortMapping  string           `json:"port_mapping,omitempty"` // e.g. "pcp 198.51.100.1:19192"
	Gateway      string           `json:"gateway,omitempty"`      // the IPv4 default gateway
	Sources      []EndpointStatus `json:"sources"`
	Destinations []EndpointStatus `json:"destinations"`
	Relays       []RelayStatus    `json:"relays"`
	// PunchOutcomes counts finished punch attempts by outcome and NAT
	// kinds since start; it outlives peers, unlike their PunchAttempts.
	PunchOutcomes []traversal.PunchOutcome `json:"punch_outcomes,omitempty"`
	// PathChanges counts the paths this client dialed to peers coming up
	// and going down since start, by reason (every reason, zeros too).
	PathChanges map[string]int64 `json:"path_changes,omitempty"`
	// FlowMoves counts resumable TCP flows that went on over another
	// path ("direct→relay", "none→direct" for one resumed after its
	// stream died with no other path, ...), with the longest stall a move
	// caused and the last move.
	FlowMoves FlowMovesStatus `json:"flow_moves"`
	// UDPDrops counts datagrams from peers that no flow took, by reason:
	// unknown_flow (the flow had ended), malformed (too short to name a
	// flow), queue_full (a burst faster than delivery). Datagrams
	// quic-go itself drops when its receive queue of 128 is full are not
	// seen here.
	UDPDrops map[string]int64 `json:"udp_drops,omitempty"`
	// TimeToDirect is the distribution of the peers' times to their
	// first direct path, from when the client first wanted one (soon
	// after it learned of the peer, for a route that allows direct).
	TimeToDirect *Histogram `json:"time_to_direct,omitempty"`
}

// EndpointStatus is one source or destination.
type EndpointStatus struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`
	Route   string `json:"route"`
	Proto   string `json:"proto"`             // tcp or udp
	Refused string `json:"refused,omitempty"` // why control refused it
	// Mismatch names peers of the endpoint's name that carry the other
	// protocol, and so are not used.
	Mismatch string       `json:"mismatch,omitempty"`
	UDP      *UDPStatus   `json:"udp,omitempty"`
	BytesIn  int64        `json:"bytes_in"`  // from the peer
	BytesOut int64        `json:"bytes_out"` // to the peer
	Active   int64        `json:"active_connections"`
	Peers    []PeerStatus `json:"peers"`
}

// PeerStatus is one peer of an endpoint and the path in use to it.
type PeerStatus struct {
	ID     string `json:"id"`
	Route  string `json:"route"` // the peer's route setting
	Path   string `json:"path"`  // direct, relay or none
	Remote string `json:"remote,omitempty"`
	// Family is the direct path's address family, ipv4 or ipv6.
	Family   string `json:"family,omitempty"`
	RTTMicro int64  `json:"rtt_us,omitempty"`
	Error    string `json:"error,omitempty"` // last direct connection error
	NAT      string `json:"nat,omitempty"`   // the peer's NAT behaviour
	// PunchAttempts and PairsTried count hole punching toward the peer:
	// attempts, and (socket, address) pairs probed including random ports.
	PunchAttempts  int   `json:"punch_attempts"`
	PairsTried     int   `json:"pairs_tried"`
	TimeToDirectMs int64 `json:"time_to_direct_ms,omitempty"` // from wanting a direct path to having one
	BytesIn        int64 `json:"bytes_in"`
	BytesOut       int64 `json:"bytes_out"`
	// Active is the endpoint's connections with this peer open now.
	Active int64 `json:"active_connections"`
	// ByPath splits this endpoint's share of the bytes by path.
	ByPath []PathBytes `json:"bytes_by_path,omitempty"`
	// Paths lists the connections up to the peer for this endpoint,
	// best first; a stalled one (silent for a while: its flows moved
	// away) as "direct (stalled)". Path is the best not stalled.
	Paths []string `json:"paths,omitempty"`
}

// RelayStatus is one relay and whether the client is connected to it.
type RelayStatus struct {
	ID        string `json:"id"`
	Addr      string `json:"addr"`
	Connected bool   `json:"connected"`
	RTTMicro  int64  `json:"rtt_us,omitempty"` // smoothed RTT while connected
}

// Status reports the client.
func (c *Client) Status() Status {
	st := Status{ID: c.id.ID.String(), ServerAddr: c.cfg.ServerAddr,
		Sources: []EndpointStatus{}, Destinations: []EndpointStatus{}, Relays: c.relays.status()}
	cs := c.ctl.state()
	st.Control, st.Observed, st.ControlRTT = cs.state, cs.observed, cs.rttMicros
	st.ControlAddr, st.ControlNode = cs.addr, cs.node
	if skew, ok := c.ctl.clockSkew(); ok {
		ms := skew.Milliseconds()
		st.ClockSkewMs = &ms
	}
	st.Candidates = c.trav.Candidates()
	st.NAT = traversal.Name(c.trav.NAT())
	st.NATBasis = c.trav.NATBasis()
	st.NATHops, st.OpenTTL = c.trav.NATDepth()
	st.PortMapping = c.trav.PortMapping()
	if gw := c.trav.Gateway(); gw.IsValid() {
		st.Gateway = gw.String()
	}
	st.PunchOutcomes = c.trav.PunchOutcomes()
	st.PathChanges = c.paths.status()
	st.FlowMoves = c.flowMoves.status()
	if d := &c.muxDrops; d.unknownFlow.Load()+d.malformed.Load()+d.queueFull.Load() > 0 {
		st.UDPDrops = map[string]int64{"unknown_flow": d.unknownFlow.Load(), "malformed": d.malformed.Load(), "queue_full": d.queueFull.Load()}
	}
	ttd := c.timeToDirect.status()
	st.TimeToDirect = &ttd
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sources {
		es := EndpointStatus{Name: s.name, Addr: s.localAddr().String(), Route: s.route, Proto: s.proto, Refused: s.refused,
			Mismatch: s.mismatch, BytesIn: s.traffic.in.Load(), BytesOut: s.traffic.out.Load(), Active: s.traffic.active.Load(), Peers: []PeerStatus{}}
		if s.proto == wire.ProtoUDP {
			_, _, best := c.pickLocked(s.name)
			es.UDP = s.udp.status(s.udpCfg, best)
		}
		for _, p := range c.peers {
			if ps, ok := p.status(s.name, true); ok {
				es.Peers = append(es.Peers, ps)
			}
		}
		sortPeers(es.Peers)
		st.Sources = append(st.Sources, es)
	}
	for _, d := range c.destinations {
		es := EndpointStatus{Name: d.name, Addr: d.addr, Route: d.route, Proto: d.proto, Refused: d.refused,
			Mismatch: d.mismatch, BytesIn: d.traffic.in.Load(), BytesOut: d.traffic.out.Load(), Active: d.traffic.active.Load(), Peers: []PeerStatus{}}
		if d.proto == wire.ProtoUDP {
			es.UDP = d.udp.status(d.udpCfg, c.bestInboundLocked(d.name))
		}
		for _, p := range c.peers {
			if ps, ok := p.status(d.name, false); ok {
				es.Peers = append(es.Peers, ps)
			}
		}
		sortPeers(es.Peers)
		st.Destinations = append(st.Destinations, es)
	}
	sort.Slice(st.Sources, func(i, j int) bool { return st.Sources[i].Name < st.Sources[j].Name })
	sort.Slice(st.Destinations, func(i, j int) bool { return st.Destinations[i].Name < st.Destinations[j].Name })
	return st
}

// status is the peer as counterpart of our endpoint name: a destination
// of our source (weAreSource), or a source of our destination.
func (p *peer) status(name string, weAreSource bool) (PeerStatus, bool) {
	punched := p.c.trav.PeerStats(p.id)
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.asSource
	if weAreSource {
		m = p.asDestination
	}
	r, ok := m[name]
	if !ok {
		return PeerStatus{}, false
	}
	ps := PeerStatus{ID: p.id.String(), Route: r.theirs, Path: "none",
		BytesIn: p.traffic.in.Load(), BytesOut: p.traffic.out.Load(), NAT: p.nat,
		PunchAttempts: punched.Attempts, PairsTried: punched.Pairs, ByPath: p.byPath.status(name, weAreSource),
		Active: p.byPath.active(name, weAreSource)}
	var conn *quic.Conn
	if weAreSource {
		ps.Error, ps.TimeToDirectMs = p.lastDirectErr, p.timeToDirect.Milliseconds()
		for _, cand := range []struct {
			conn *quic.Conn
			pa   path
		}{{p.directConn, pathDirect}, {p.relayConn, pathRelay}} {
			if cand.conn == nil || !r.allow(cand.pa) {
				continue
			}
			if p.stalled[cand.conn] {
				ps.Paths = append(ps.Paths, cand.pa.String()+" (stalled)")
				continue
			}
			ps.Paths = append(ps.Paths, cand.pa.String())
			if conn == nil {
				conn, ps.Path = cand.conn, cand.pa.String()
			}
		}
	} else {
		best := pathNone
		for in, pa := range p.inbound {
			if best == pathNone || pa < best {
				best, conn, ps.Path = pa, in, pa.String()
			}
		}
	}
	if conn != nil {
		ps.Remote = p.c.relayNet.Describe(conn.RemoteAddr())
		if ps.Path == pathDirect.String() {
			ps.Family = addrFamily(conn.RemoteAddr())
		}
		ps.RTTMicro = conn.ConnectionStats().SmoothedRTT.Microseconds()
	}
	return ps, true
}

func sortPeers(ps []PeerStatus) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
}

// PeerCounts counts distinct peers by the best path any endpoint uses to
// them: a peer serving two endpoints counts once, as direct if either
// endpoint reaches it directly. STATUS= and D-Bus both count this way.
func (st Status) PeerCounts() (direct, relayed, waiting int) {
	best := map[string]string{}
	rank := map[string]int{"direct": 0, "relay": 1}
	for _, list := range [][]EndpointStatus{st.Sources, st.Destinations} {
		for _, e := range list {
			for _, p := range e.Peers {
				old, seen := best[p.ID]
				r, ok := rank[p.Path]
				if !ok {
					r = 2
				}
				or, ook := rank[old]
				if !ook {
					or = 2
				}
				if !seen || r < or {
					best[p.ID] = p.Path
				}
			}
		}
	}
	for _, pa := range best {
		switch pa {
		case "direct":
			direct++
		case "relay":
			relayed++
		default:
			waiting++
		}
	}
	return direct, relayed, waiting
}

// Summary is the one-line state for systemd's STATUS=, e.g.
// "2 sources, 1 destination; control connected; 1 peer direct, 1 relayed".
func (st Status) Summary() string {
	direct, relayed, waiting := st.PeerCounts()
	s := fmt.Sprintf("%s, %s; control %s", plural(len(st.Sources), "source"), plural(len(st.Destinations), "destination"), st.Control)
	if direct+relayed+waiting > 0 {
		s += fmt.Sprintf("; %s direct, %d relayed", plural(direct, "peer"), relayed)
		if waiting > 0 {
			s += fmt.Sprintf(", %d without a path", waiting)
		}
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// bestInboundLocked is the best connection from a source of our
// destination name: direct before relayed.
func (c *Client) bestInboundLocked(name string) *quic.Conn {
	var best *quic.Conn
	bestPath := pathNone
	for _, p := range c.peers {
		if _, ok := p.sourceRoutes(name); !ok {
			continue
		}
		p.mu.Lock()
		for conn, pa := range p.inbound {
			if best == nil || pa < bestPath {
				best, bestPath = conn, pa
			}
		}
		p.mu.Unlock()
	}
	return best
}

// addrFamily names a direct path's address family; an IPv4-mapped address
// (an IPv4 peer on a dual-stack socket) is IPv4.
func addrFamily(a net.Addr) string {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return ""
	}
	if ua.AddrPort().Addr().Unmap().Is4() {
		return "ipv4"
	}
	return "ipv6"
}
