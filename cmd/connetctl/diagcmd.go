package main

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
)

// cmdDiagnose reports what keeps the instance from connecting, from its
// status over D-Bus and a few facts of this host. It prints the report, then
// fails naming the first problem, so that scripts get an exit code and
// people get the advice last, where they look.
func cmdDiagnose(e *env, args []string) error {
	if err := positional(args, 0, "no arguments"); err != nil {
		return err
	}
	if err := e.connect(); err != nil {
		return err
	}
	st, err := fetchStatus(e)
	if err != nil {
		return err
	}
	d := diagnose(e.g.instance, st, readHostFacts())
	if e.g.json {
		if err := e.printJSON(d); err != nil {
			return err
		}
	} else if _, err := fmt.Fprint(e.stdout, formatDiagnosis(d)); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if !d.Healthy {
		return fail(exitFailed, "%s", d.Problems[0])
	}
	return nil
}

// readHostFacts reads what connetctl can see itself; what it cannot read is
// left zero and the checks that need it are skipped.
func readHostFacts() hostFacts {
	h := hostFacts{RmemMax: readSysctl("/proc/sys/net/core/rmem_max"), WmemMax: readSysctl("/proc/sys/net/core/wmem_max")}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return h
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() != nil {
			continue
		}
		// Global unicast less unique local (fc00::/7), which is not
		// reachable from the internet either.
		if ipn.IP.IsGlobalUnicast() && !ipn.IP.IsPrivate() {
			h.GlobalIPv6 = append(h.GlobalIPv6, ipn.IP.String())
		}
	}
	sort.Strings(h.GlobalIPv6)
	return h
}

func readSysctl(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

func formatDiagnosis(d diagnosis) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connetd@%s (%s)\n", d.Instance, d.Role)
	if d.Role == "client" {
		nat := dash(d.Host.NAT)
		if d.Host.NATBasis != "" {
			nat += " (" + d.Host.NATBasis + ")"
		}
		fmt.Fprintf(&b, "NAT:           %s\n", nat)
		cg := "no"
		if d.Host.CGNAT {
			cg = "yes (" + d.Host.CGNATAddr + ")"
		}
		fmt.Fprintf(&b, "CGNAT:         %s\n", cg)
		fmt.Fprintf(&b, "Port mapping:  %s\n", dash(d.Host.PortMapping))
	}
	v6 := "none"
	if len(d.Host.GlobalIPv6) > 0 {
		v6 = strings.Join(d.Host.GlobalIPv6, ", ")
	}
	fmt.Fprintf(&b, "Global IPv6:   %s\n", v6)
	fmt.Fprintf(&b, "UDP buffers:   %s\n", bufferText(d.Host))
	if c := d.Control; c != nil {
		fmt.Fprintf(&b, "Control:       %s %s, observed %s, RTT %s\n", c.ServerAddr, c.State, dash(c.Observed), rttText(c.RTTMicro))
	}
	fmt.Fprintf(&b, "Clock skew:    %s\n", d.ClockSkew)
	if len(d.Relays) > 0 {
		rows := [][]string{}
		for _, r := range d.Relays {
			state := "unreachable"
			if r.Connected {
				state = "connected"
			}
			rows = append(rows, []string{shortID(r.ID), r.Addr, state, rttText(r.RTTMicro)})
		}
		b.WriteString("\n" + table("RELAY\tADDRESS\tSTATE\tRTT", rows))
	}
	if len(d.Peers) > 0 {
		rows := [][]string{}
		for _, p := range d.Peers {
			rows = append(rows, []string{p.Kind, p.Endpoint, shortID(p.Peer), p.Path, p.OurNAT + "/" + p.PeerNAT,
				p.OurRoute + "/" + p.PeerRoute, strconv.Itoa(p.PunchAttempts), rttText(p.RTTMicro), dash(p.Reason)})
		}
		b.WriteString("\n" + table("KIND\tENDPOINT\tPEER\tPATH\tNAT (US/PEER)\tROUTE (US/PEER)\tPUNCHES\tRTT\tWHY NOT DIRECT", rows))
	}
	b.WriteString("\n")
	if d.Healthy {
		b.WriteString("No problems found.\n")
		return b.String()
	}
	b.WriteString("Problems, most fundamental first:\n")
	for i, p := range d.Problems {
		fmt.Fprintf(&b, "%d. %s\n   -> %s\n", i+1, p.Detail, p.Advice)
	}
	return b.String()
}

func bufferText(h hostReport) string {
	if len(h.Buffers) == 0 {
		if h.RmemMax == 0 && h.WmemMax == 0 {
			return "unknown"
		}
		return fmt.Sprintf("no socket reported; rmem_max %s, wmem_max %s (want %s)", kib(h.RmemMax), kib(h.WmemMax), kib(wantSysctlMax))
	}
	names := make([]string, 0, len(h.Buffers))
	for n := range h.Buffers {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := []string{}
	for _, n := range names {
		s := h.Buffers[n]
		parts = append(parts, fmt.Sprintf("%s receive %s send %s", n, kib(s.Receive), kib(s.Send)))
	}
	return strings.Join(parts, "; ") + fmt.Sprintf(" (want %s)", kib(h.WantBuffers))
}
