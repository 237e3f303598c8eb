package portmap

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
)

// Mapper maps one internal UDP port on the router at Gateway.
type Mapper struct {
	Gateway  netip.Addr // the default route's gateway: the only router asked
	Port     uint16     // internal UDP port to map
	Lifetime time.Duration

	// UPnPLocation, when set, is used instead of SSDP discovery (tests).
	UPnPLocation *url.URL
	// ServerPort is the NAT-PMP/PCP port; 0 means Port (tests change it).
	ServerPort uint16
}

func (m *Mapper) server() netip.AddrPort {
	if m.ServerPort != 0 {
		return netip.AddrPortFrom(m.Gateway, m.ServerPort)
	}
	return netip.AddrPortFrom(m.Gateway, Port)
}

// Mapping is a granted mapping.
type Mapping struct {
	Proto    string // "pcp", "nat-pmp" or "upnp"
	External netip.AddrPort
	Lifetime time.Duration

	nonce [pcpNonceLen]byte
	upnp  *internetgateway2.WANIPConnection1
}

// ErrNoMapping is returned when no protocol gave a mapping.
var ErrNoMapping = errors.New("router gave no port mapping")

// Retransmission: RFC 6886 starts at 250 ms and doubles; three tries
// (1.75 s) are enough on a LAN and bound the wait.
var retries = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second}

func (m *Mapper) lifetime() time.Duration {
	if m.Lifetime <= 0 {
		return 2 * time.Hour
	}
	return m.Lifetime
}

// Map asks for a mapping: PCP first, NAT-PMP when the router answers PCP
// with "unsupported version" (or not at all), then UPnP. prev, if set, is
// renewed: the same external port is suggested and PCP reuses its nonce.
func (m *Mapper) Map(ctx context.Context, prev *Mapping) (*Mapping, error) {
	if !m.Gateway.Is4() {
		return nil, fmt.Errorf("%w: no IPv4 gateway", ErrNoMapping)
	}
	var errs []error
	if prev == nil || prev.Proto != "upnp" {
		mp, err := m.pcp(ctx, prev, m.lifetime())
		if err == nil {
			return mp, nil
		}
		errs = append(errs, fmt.Errorf("pcp: %w", err))
		mp, err = m.natpmp(ctx, prev, m.lifetime())
		if err == nil {
			return mp, nil
		}
		errs = append(errs, fmt.Errorf("nat-pmp: %w", err))
	}
	mp, err := m.upnpMap(ctx, prev)
	if err == nil {
		return mp, nil
	}
	errs = append(errs, fmt.Errorf("upnp: %w", err))
	return nil, fmt.Errorf("%w: %w", ErrNoMapping, errors.Join(errs...))
}

// Delete removes a mapping (shutdown).
func (m *Mapper) Delete(ctx context.Context, mp *Mapping) error {
	switch mp.Proto {
	case "pcp":
		_, err := m.pcp(ctx, mp, 0)
		return err
	case "nat-pmp":
		_, err := m.natpmp(ctx, mp, 0)
		return err
	case "upnp":
		return mp.upnp.DeletePortMappingCtx(ctx, "", mp.External.Port(), "UDP")
	}
	return nil
}

// exchange sends req to the gateway and returns the first answer accept
// takes, retransmitting per RFC 6886.
func (m *Mapper) exchange(ctx context.Context, req []byte, accept func([]byte) bool) (netip.Addr, error) {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(m.server()))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("socket toward %s: %w", m.Gateway, err)
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	buf := make([]byte, maxPCPMessage)
	for _, wait := range retries {
		if len(req) > 0 {
			if _, err := conn.Write(req); err != nil {
				return local, fmt.Errorf("send to %s: %w", m.Gateway, err)
			}
		}
		deadline := time.Now().Add(wait)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = conn.SetReadDeadline(deadline)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break // timeout (or ICMP unreachable): retransmit
			}
			if accept(buf[:n]) {
				return local, nil
			}
		}
		if ctx.Err() != nil {
			return local, ctx.Err()
		}
	}
	return local, errors.New("no answer")
}

// localToward is our address toward the gateway (PCP's client address).
func (m *Mapper) localToward() (netip.Addr, error) {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(m.server()))
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

func (m *Mapper) pcp(ctx context.Context, prev *Mapping, life time.Duration) (*Mapping, error) {
	req := PCPMap{Lifetime: uint32(life / time.Second), Protocol: ProtoUDP, Internal: m.Port}
	if prev != nil && prev.Proto == "pcp" {
		req.Nonce, req.External = prev.nonce, prev.External
	} else {
		_, _ = rand.Read(req.Nonce[:])
		if prev != nil {
			req.External = netip.AddrPortFrom(netip.IPv4Unspecified(), prev.External.Port())
		} else {
			req.External = netip.AddrPortFrom(netip.IPv4Unspecified(), m.Port)
		}
	}
	local, err := m.localToward()
	if err != nil {
		return nil, err
	}
	req.Client = local
	var resp PCPMap
	var unsupported bool
	_, err = m.exchange(ctx, AppendPCPMap(nil, req), func(b []byte) bool {
		if PCPUnsupportedVersion(b) {
			unsupported = true
			return true
		}
		r, err := ParsePCPMap(b)
		if err != nil || !r.Response || r.Nonce != req.Nonce {
			return false
		}
		resp = r
		return true
	})
	switch {
	case err != nil:
		return nil, err
	case unsupported:
		return nil, errors.New("router speaks only NAT-PMP")
	case resp.Result != ResultSuccess:
		return nil, fmt.Errorf("result code %d", resp.Result)
	}
	return &Mapping{Proto: "pcp", External: resp.External, Lifetime: time.Duration(resp.Lifetime) * time.Second, nonce: req.Nonce}, nil
}

func (m *Mapper) natpmp(ctx context.Context, prev *Mapping, life time.Duration) (*Mapping, error) {
	var ext netip.Addr
	if life > 0 {
		var addr PMPAddrResponse
		if _, err := m.exchange(ctx, AppendPMPAddrRequest(nil), func(b []byte) bool {
			r, err := ParsePMPAddrResponse(b)
			if err != nil {
				return false
			}
			addr = r
			return true
		}); err != nil {
			return nil, err
		}
		if addr.Result != ResultSuccess {
			return nil, fmt.Errorf("external address: result code %d", addr.Result)
		}
		ext = addr.External
	}
	suggested := m.Port
	if prev != nil {
		suggested = prev.External.Port()
	}
	if life == 0 {
		suggested = 0 // RFC 6886 §3.4: a deletion suggests port 0
	}
	req := PMPMapRequest{Internal: m.Port, SuggestedExt: suggested, Lifetime: uint32(life / time.Second)}
	var resp PMPMapResponse
	if _, err := m.exchange(ctx, AppendPMPMapRequest(nil, req), func(b []byte) bool {
		r, err := ParsePMPMapResponse(b)
		if err != nil || r.TCP || r.Internal != m.Port && r.Result == ResultSuccess {
			return false
		}
		resp = r
		return true
	}); err != nil {
		return nil, err
	}
	if resp.Result != ResultSuccess {
		return nil, fmt.Errorf("map: result code %d", resp.Result)
	}
	return &Mapping{Proto: "nat-pmp", External: netip.AddrPortFrom(ext, resp.External), Lifetime: time.Duration(resp.Lifetime) * time.Second}, nil
}

func (m *Mapper) upnpMap(ctx context.Context, prev *Mapping) (*Mapping, error) {
	var client *internetgateway2.WANIPConnection1
	if prev != nil && prev.upnp != nil {
		client = prev.upnp
	} else {
		c, err := m.upnpClient(ctx)
		if err != nil {
			return nil, err
		}
		client = c
	}
	local, err := m.localToward()
	if err != nil {
		return nil, err
	}
	extIP, err := client.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return nil, fmt.Errorf("external address: %w", err)
	}
	ext, err := netip.ParseAddr(extIP)
	if err != nil {
		return nil, fmt.Errorf("external address %q: %w", extIP, err)
	}
	port := m.Port
	if prev != nil {
		port = prev.External.Port()
	}
	life := uint32(m.lifetime() / time.Second)
	if err := client.AddPortMappingCtx(ctx, "", port, "UDP", m.Port, local.String(), true, "connetd", life); err != nil {
		return nil, fmt.Errorf("add mapping: %w", err)
	}
	return &Mapping{Proto: "upnp", External: netip.AddrPortFrom(ext.Unmap(), port), Lifetime: m.lifetime(), upnp: client}, nil
}

// upnpClient finds the gateway's WANIPConnection service. Only a device
// at the gateway's own address is used: anything else on the LAN could
// answer SSDP.
func (m *Mapper) upnpClient(ctx context.Context) (*internetgateway2.WANIPConnection1, error) {
	loc := m.UPnPLocation
	if loc == nil {
		devs, err := goupnp.DiscoverDevicesCtx(ctx, internetgateway2.URN_WANIPConnection_1)
		if err != nil {
			return nil, fmt.Errorf("discover: %w", err)
		}
		for _, d := range devs {
			if d.Err == nil && d.Location != nil && d.Location.Hostname() == m.Gateway.String() {
				loc = d.Location
				break
			}
		}
		if loc == nil {
			return nil, errors.New("no internet gateway device at the gateway's address")
		}
	}
	clients, err := internetgateway2.NewWANIPConnection1ClientsByURLCtx(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("device at %s: %w", loc, err)
	}
	if len(clients) == 0 {
		return nil, fmt.Errorf("device at %s has no WANIPConnection service", loc)
	}
	return clients[0], nil
}

// String describes a mapping for logs and status.
func (mp *Mapping) String() string {
	return mp.Proto + " " + mp.External.String() + " for " + strconv.Itoa(int(mp.Lifetime/time.Second)) + "s"
}
