// Package netmon reads the host's network state over netlink (addresses,
// the default route) and reports changes to it, so that the client can
// re-gather its direct candidates when an address, route or link changes.
package netmon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Options select the namespace to read (tests) and how changes are batched.
type Options struct {
	// Namespace is the network namespace to read; nil is the current one.
	Namespace *netns.NsHandle
	// Debounce batches bursts of changes (an address change is often a
	// delete, an add and route updates): onChange runs once they settle.
	Debounce time.Duration
}

func (o Options) handle() (*netlink.Handle, error) {
	if o.Namespace != nil {
		return netlink.NewHandleAt(*o.Namespace)
	}
	return netlink.NewHandle()
}

// State is a snapshot of what the client needs to know.
type State struct {
	// Addrs are unicast addresses of links that are up, without loopback
	// and link-local ones (a link-local address needs a zone a peer cannot
	// know). The source addresses of default routes come first.
	Addrs []netip.Addr
	// Gateway is the IPv4 default route's gateway (the NAT-PMP/PCP
	// server), if any.
	Gateway netip.Addr
	// GatewaySrc is the source address the host uses toward Gateway.
	GatewaySrc netip.Addr
}

// Read returns the current state.
func Read(o Options) (State, error) {
	h, err := o.handle()
	if err != nil {
		return State{}, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return State{}, fmt.Errorf("list links: %w", err)
	}
	up := map[int]bool{}
	for _, l := range links {
		a := l.Attrs()
		up[a.Index] = a.Flags&net.FlagUp != 0 && a.Flags&net.FlagLoopback == 0 && a.OperState != netlink.OperDown
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return State{}, fmt.Errorf("list addresses: %w", err)
	}
	var st State
	var all []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !up[a.LinkIndex] || !usable(ip.Unmap()) || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue
		}
		all = append(all, ip.Unmap())
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return State{}, fmt.Errorf("list routes: %w", err)
	}
	var first []netip.Addr
	for _, r := range routes {
		if !isDefault(r) || !up[r.LinkIndex] {
			continue
		}
		src, _ := netip.AddrFromSlice(r.Src)
		gw, _ := netip.AddrFromSlice(r.Gw)
		src, gw = src.Unmap(), gw.Unmap()
		if !src.IsValid() {
			src = firstOnLink(addrs, r.LinkIndex, gw)
		}
		if src.IsValid() && usable(src) {
			first = append(first, src)
		}
		if gw.Is4() && !st.Gateway.IsValid() {
			st.Gateway, st.GatewaySrc = gw, src
		}
	}
	for _, a := range append(first, all...) {
		if !slices.Contains(st.Addrs, a) {
			st.Addrs = append(st.Addrs, a)
		}
	}
	return st, nil
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// firstOnLink picks the address a default route over link uses when the
// route names no source: one in the gateway's subnet, else the first.
func firstOnLink(addrs []netlink.Addr, link int, gw netip.Addr) netip.Addr {
	var fallback netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.LinkIndex != link || !usable(ip.Unmap()) || ip.Unmap().Is4() != gw.Is4() {
			continue
		}
		if a.IPNet != nil && gw.IsValid() && a.IPNet.Contains(gw.AsSlice()) {
			return ip.Unmap()
		}
		if !fallback.IsValid() {
			fallback = ip.Unmap()
		}
	}
	return fallback
}

func usable(ip netip.Addr) bool {
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsMulticast() && !ip.IsUnspecified()
}

// Watch calls onChange after every settled batch of address, route or link
// changes, until ctx ends. It returns when ctx ends or when netlink fails.
func Watch(ctx context.Context, o Options, onChange func()) error {
	if o.Debounce <= 0 {
		o.Debounce = 300 * time.Millisecond
	}
	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 3)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	addrCh := make(chan netlink.AddrUpdate, 64)
	routeCh := make(chan netlink.RouteUpdate, 64)
	linkCh := make(chan netlink.LinkUpdate, 64)
	var err error
	if o.Namespace != nil {
		err = errors.Join(
			netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{Namespace: o.Namespace, ErrorCallback: onErr}),
			netlink.RouteSubscribeWithOptions(routeCh, done, netlink.RouteSubscribeOptions{Namespace: o.Namespace, ErrorCallback: onErr}),
			netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{Namespace: o.Namespace, ErrorCallback: onErr}))
	} else {
		err = errors.Join(
			netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}),
			netlink.RouteSubscribeWithOptions(routeCh, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr}),
			netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}))
	}
	if err != nil {
		return fmt.Errorf("subscribe to netlink changes: %w", err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("netlink subscription: %w", err)
		case _, ok := <-addrCh:
			if !ok {
				return errors.New("netlink address subscription closed")
			}
		case _, ok := <-routeCh:
			if !ok {
				return errors.New("netlink route subscription closed")
			}
		case _, ok := <-linkCh:
			if !ok {
				return errors.New("netlink link subscription closed")
			}
		case <-timer.C:
			onChange()
			continue
		}
		timer.Reset(o.Debounce)
	}
}
