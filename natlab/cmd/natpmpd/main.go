// Command natpmpd is a small NAT-PMP (RFC 6886), PCP (RFC 6887) and UPnP
// IGD server for the NAT lab's routers: Debian's miniupnpd refuses to map anything
// while its WAN address lies in a reserved range, and every range a lab may
// use is reserved. It grants UDP mappings by installing real iptables DNAT
// rules, so what a client is told is what the router does, and removes them
// when they expire, are deleted, or the server stops.
//
//	natpmpd -listen 10.101.0.1 -lan lan -wan wan -external 10.200.5.2 -protocols pcp,nat-pmp,upnp
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/connetd/connetd/portmap"
)

type mapping struct {
	internal netip.AddrPort
	external uint16
	expires  time.Time
}

type server struct {
	external netip.Addr
	epoch    time.Time
	pcp      bool // serve PCP; otherwise answer it as a NAT-PMP-only router

	mu   sync.Mutex
	maps map[netip.AddrPort]*mapping // by internal address
}

func main() {
	listen := flag.String("listen", "", "LAN address to serve on (port 5351)")
	wan := flag.String("wan", "", "WAN interface")
	ext := flag.String("external", "", "WAN address")
	maxLife := flag.Duration("max-lifetime", time.Hour, "longest lifetime granted")
	lan := flag.String("lan", "lan", "LAN interface (UPnP's SSDP)")
	protos := flag.String("protocols", "pcp,nat-pmp", "protocols served: pcp, nat-pmp, upnp")
	flag.Parse()
	serve := map[string]bool{}
	for _, p := range strings.Split(*protos, ",") {
		serve[strings.TrimSpace(p)] = true
	}
	extAddr, err := netip.ParseAddr(*ext)
	if err != nil || *wan == "" {
		log.Fatalf("natpmpd: need -wan and a valid -external: %v", err)
	}
	laddr, err := netip.ParseAddr(*listen)
	if err != nil {
		log.Fatalf("natpmpd: -listen: %v", err)
	}
	wanIf = *wan
	s := &server{external: extAddr, epoch: time.Now(), maps: map[netip.AddrPort]*mapping{}, pcp: serve["pcp"]}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go s.expire(ctx)
	if serve["upnp"] {
		if err := s.serveUPnP(ctx, *lan, laddr, *maxLife); err != nil {
			log.Fatalf("natpmpd: %v", err)
		}
	}
	if serve["pcp"] || serve["nat-pmp"] {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(laddr, portmap.Port)))
		if err != nil {
			log.Fatalf("natpmpd: %v", err)
		}
		go func() { <-ctx.Done(); conn.Close() }()
		log.Printf("natpmpd: serving %s on %s for %s (%s)", *protos, conn.LocalAddr(), *wan, extAddr)
		buf := make([]byte, 1100)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if reply := s.handle(buf[:n], from, *maxLife); reply != nil {
				_, _ = conn.WriteToUDPAddrPort(reply, from)
			}
		}
	} else {
		<-ctx.Done()
	}
	s.mu.Lock()
	for _, m := range s.maps {
		s.remove(m)
	}
	s.mu.Unlock()
	log.Printf("natpmpd: stopped")
}

func (s *server) epochSecs() uint32 { return uint32(time.Since(s.epoch) / time.Second) }

func (s *server) handle(b []byte, from netip.AddrPort, maxLife time.Duration) []byte {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if portmap.IsPCP(b) && !s.pcp {
		return portmap.AppendPCPUnsupported(nil)
	}
	if portmap.IsPCP(b) {
		req, err := portmap.ParsePCPMap(b)
		if err != nil || req.Response {
			return nil
		}
		resp := req
		resp.Response, resp.Epoch = true, s.epochSecs()
		if req.Client != from.Addr() || req.Protocol != portmap.ProtoUDP {
			resp.Result = 12 // ADDRESS_MISMATCH / UNSUPP_PROTOCOL: refuse
			return portmap.AppendPCPMap(nil, resp)
		}
		life := min(time.Duration(req.Lifetime)*time.Second, maxLife)
		port, err := s.setMapping(netip.AddrPortFrom(from.Addr(), req.Internal), req.External.Port(), life)
		if err != nil {
			log.Printf("natpmpd: %v", err)
			resp.Result = 8 // NO_RESOURCES
			return portmap.AppendPCPMap(nil, resp)
		}
		resp.Lifetime = uint32(life / time.Second)
		resp.External = netip.AddrPortFrom(s.external, port)
		return portmap.AppendPCPMap(nil, resp)
	}
	req, err := portmap.ParsePMPRequest(b)
	if err != nil {
		if len(b) > 0 && b[0] != 0 {
			return portmap.AppendPCPUnsupported(nil)
		}
		return nil
	}
	if req.AddrOnly {
		return portmap.AppendPMPAddrResponse(nil, portmap.PMPAddrResponse{Epoch: s.epochSecs(), External: s.external})
	}
	resp := portmap.PMPMapResponse{TCP: req.Map.TCP, Epoch: s.epochSecs(), Internal: req.Map.Internal}
	if req.Map.TCP {
		resp.Result = 5 // unsupported opcode: this lab maps UDP only
		return portmap.AppendPMPMapResponse(nil, resp)
	}
	life := min(time.Duration(req.Map.Lifetime)*time.Second, maxLife)
	port, err := s.setMapping(netip.AddrPortFrom(from.Addr(), req.Map.Internal), req.Map.SuggestedExt, life)
	if err != nil {
		log.Printf("natpmpd: %v", err)
		resp.Result = 4 // out of resources
		return portmap.AppendPMPMapResponse(nil, resp)
	}
	resp.External, resp.Lifetime = port, uint32(life/time.Second)
	return portmap.AppendPMPMapResponse(nil, resp)
}

// setMapping creates, renews or (life 0) deletes the mapping of internal.
func (s *server) setMapping(internal netip.AddrPort, suggested uint16, life time.Duration) (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.maps[internal]
	if life == 0 {
		if m != nil {
			s.remove(m)
			delete(s.maps, internal)
		}
		return 0, nil
	}
	if m != nil {
		m.expires = time.Now().Add(life)
		return m.external, nil
	}
	port := suggested
	for port < 1024 || s.taken(port) {
		port = uint16(1024 + rand.IntN(64512))
	}
	m = &mapping{internal: internal, external: port, expires: time.Now().Add(life)}
	if err := ruleFunc("-A", m); err != nil {
		return 0, err
	}
	s.maps[internal] = m
	log.Printf("natpmpd: mapped %s:%d -> %s for %s", s.external, port, internal, life)
	return port, nil
}

// deleteExternal removes the mapping of an external port (UPnP deletes by
// external port).
func (s *server) deleteExternal(port uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, m := range s.maps {
		if m.external == port {
			s.remove(m)
			delete(s.maps, k)
			return true
		}
	}
	return false
}

func (s *server) taken(port uint16) bool {
	for _, m := range s.maps {
		if m.external == port {
			return true
		}
	}
	return false
}

func (s *server) remove(m *mapping) {
	if err := ruleFunc("-D", m); err != nil {
		log.Printf("natpmpd: %v", err)
	}
	log.Printf("natpmpd: removed %d -> %s", m.external, m.internal)
}

// ruleFunc installs or removes a mapping's rule; tests replace it.
var ruleFunc = iptables

// wanIf is the -wan interface the DNAT rules match.
var wanIf string

func iptables(op string, m *mapping) error {
	args := []string{"-w", "-t", "nat", op, "PREROUTING", "-i", wanIf, "-p", "udp", "--dport", strconv.Itoa(int(m.external)),
		"-j", "DNAT", "--to-destination", m.internal.String()}
	if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %v: %v: %s", args, err, out)
	}
	return nil
}

func (s *server) expire(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for k, m := range s.maps {
			if time.Now().After(m.expires) {
				s.remove(m)
				delete(s.maps, k)
			}
		}
		s.mu.Unlock()
	}
}
