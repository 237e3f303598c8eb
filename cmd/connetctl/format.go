package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/connetd/connetd/dbusapi"
)

func table(header string, rows [][]string) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
	return b.String()
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func rttText(us int64) string {
	if us <= 0 {
		return "-"
	}
	return (time.Duration(us) * time.Microsecond).Round(10 * time.Microsecond).String()
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatStatus(v statusView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connetd@%s (%s): %s — %s\n", v.Instance, v.Role, v.State, v.Summary)
	if v.NAT != "" {
		fmt.Fprintf(&b, "NAT: %s\n", v.NAT)
	}
	if v.ControlAddr != "" {
		fmt.Fprintf(&b, "Control: %s (node %s)\n", v.ControlAddr, dash(v.ControlNode))
	}
	if len(v.FlowMoves) > 0 {
		var moves []string
		for _, k := range slices.Sorted(maps.Keys(v.FlowMoves)) {
			moves = append(moves, fmt.Sprintf("%s %d", k, v.FlowMoves[k]))
		}
		fmt.Fprintf(&b, "Connections moved: %s (longest stall %d ms)\n", strings.Join(moves, ", "), v.FlowMoveStallMaxMS)
	}
	if v.Role == "client" {
		b.WriteString("\n")
		var rows [][]string
		for _, e := range v.Endpoints {
			if len(e.Peers) == 0 {
				rows = append(rows, []string{e.Kind, e.Name, e.Address, e.Route, e.Origin, "-", "-", "-", bytesText(e.BytesIn), bytesText(e.BytesOut)})
			}
			for i, p := range e.Peers {
				kind, name, a, route, origin := e.Kind, e.Name, e.Address, e.Route, e.Origin
				if i > 0 {
					kind, name, a, route, origin = "", "", "", "", ""
				}
				rows = append(rows, []string{kind, name, a, route, origin, shortID(p.ID), p.Path, rttText(p.RTTMicros), bytesText(p.BytesIn), bytesText(p.BytesOut)})
			}
		}
		b.WriteString(table("KIND\tNAME\tADDRESS\tROUTE\tORIGIN\tPEER\tPATH\tRTT\tIN\tOUT", rows))
	}
	if v.Role == "server" || v.Role == "control" {
		b.WriteString("\n")
		b.WriteString(formatClients(v.Clients))
		b.WriteString("\n")
		var rows [][]string
		for _, e := range v.ControlEndpoints {
			rows = append(rows, []string{e.Name, fmt.Sprint(e.Sources), fmt.Sprint(e.Destinations)})
		}
		b.WriteString(table("ENDPOINT\tSOURCES\tDESTINATIONS", rows))
		b.WriteString("\n")
		b.WriteString(formatRelays(v.Relays))
	}
	if v.Role == "server" || v.Role == "relay" {
		b.WriteString("\n")
		var rows [][]string
		for _, e := range v.RelayEndpoints {
			rows = append(rows, []string{e.Name, fmt.Sprint(e.Sources), fmt.Sprint(e.Destinations), bytesText(e.Bytes)})
		}
		b.WriteString(table("RELAYED ENDPOINT\tSOURCES\tDESTINATIONS\tBYTES", rows))
	}
	return b.String()
}

func formatList(rows []endpointRow) string {
	var out [][]string
	for _, e := range rows {
		out = append(out, []string{e.Kind, e.Name, e.Address, e.Route, e.Origin, e.State})
	}
	return table("KIND\tNAME\tADDRESS\tROUTE\tORIGIN\tSTATE", out)
}

func formatPeers(rows []endpointRow) string {
	var out [][]string
	for _, e := range rows {
		for _, p := range e.Peers {
			out = append(out, []string{e.Name, e.Kind, shortID(p.ID), p.Path, dash(p.Remote), rttText(p.RTTMicros),
				dash(p.NAT), fmt.Sprintf("%d/%d", p.PunchAttempts, p.PairsTried), bytesText(p.BytesIn), bytesText(p.BytesOut)})
		}
	}
	return table("ENDPOINT\tKIND\tPEER\tPATH\tREMOTE\tRTT\tNAT\tPUNCH/PAIRS\tIN\tOUT", out)
}

func formatClients(clients []dbusapi.ClientInfo) string {
	var rows [][]string
	for _, c := range clients {
		rows = append(rows, []string{shortID(c.ID), c.Address, dash(strings.Join(c.Endpoints, ","))})
	}
	return table("CLIENT\tADDRESS\tENDPOINTS", rows)
}

func formatRelays(relays []dbusapi.RelayInfo) string {
	var rows [][]string
	for _, r := range relays {
		rows = append(rows, []string{shortID(r.ID), r.Address})
	}
	return table("RELAY\tADDRESS", rows)
}

func formatTokens(c tokenCounts) string {
	return fmt.Sprintf("%d tokens from the configuration, %d added at run time, %d revoked\n", c.Config, c.Runtime, c.Revoked)
}
