// Package natlab is the NAT lab: a test (TestNATMatrix) that builds an
// internet of network namespaces — a core router, a server, NAT routers
// of every kind (MASQUERADE, MASQUERADE --random-fully, a stateful
// firewall, routers granting PCP, NAT-PMP or UPnP mappings) and clients
// behind them — runs the real connetd binary through every pairing, and
// judges from the routers' packet counters whether the data went direct or
// through the relay. It needs root, ip(8) and iptables(8), and skips
// otherwise. TestUDPNAT carries UDP flows through the same lab and judges
// them the same way. docs/nat-traversal.md describes it and its results;
// cmd/natpmpd is the lab routers' port mapping responder.
package natlab
