package control_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/connetd/connetd/control"
	"github.com/connetd/connetd/etcdkv"
	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/internal/etcdtest"
	"github.com/connetd/connetd/internal/syncbuf"
	"github.com/connetd/connetd/quicconf"
	"github.com/connetd/connetd/wire"
)

// node is one control server of a test cluster.
type node struct {
	*server
	name   string
	stop   context.CancelFunc
	done   chan struct{}
	tokens chan control.TokenOverlay
}

// startCluster runs n control servers sharing one real etcd cluster of
// three members; node i talks to member i first, so that the nodes do not
// all lean on one member.
func startCluster(t *testing.T, etcd *etcdtest.Cluster, n int, tokens []string) []*node {
	t.Helper()
	eps := etcd.Endpoints()
	var nodes []*node
	for i := range n {
		name := string(rune('a' + i))
		logs := &syncbuf.Buffer{}
		nd := &node{name: name, tokens: make(chan control.TokenOverlay, 16), done: make(chan struct{})}
		srv := start(t, control.Config{Auth: control.Auth{ClientTokens: tokens}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		srv.logs = logs
		nd.server = srv
		order := append(append([]string{}, eps[i%len(eps):]...), eps[:i%len(eps)]...)
		kv, err := etcdkv.New(etcdkv.Config{Endpoints: order})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		nd.stop = cancel
		go func() {
			defer close(nd.done)
			_ = srv.srv.RunCluster(ctx, control.ClusterConfig{KV: kv, Prefix: "/test/", Node: name, LeaseTTL: 3 * time.Second,
				Tokens: func(o control.TokenOverlay) { nd.tokens <- o }})
		}()
		t.Cleanup(func() {
			cancel()
			<-nd.done
			kv.Close()
			if t.Failed() {
				t.Logf("--- node %s ---\n%s", name, logs.String())
			}
		})
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		waitUntil(t, 10*time.Second, "node "+nd.name+" sees all nodes", func() bool {
			st := nd.srv.Status().Cluster
			return st != nil && st.State == control.ClusterOK && len(st.Nodes) == n-1
		})
	}
	return nodes
}

func waitUntil(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestClusterPeersAcrossNodesAndPunchBetweenThem(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	nodes := startCluster(t, etcd, 3, []string{"a", "b"})
	src, dst := nodes[0].join(t, "a"), nodes[1].join(t, "b")
	dst.send(t, &wire.Candidates{Direct: []string{"10.0.0.2:19192"}, NAT: wire.NATEasy})
	dst.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	start := time.Now()
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"})
	p := next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 1 })
	t.Logf("source on node a learned its destination on node b %v after announcing", time.Since(start))
	if p.Peers[0].ID != dst.id.ID || !bytes.Equal(p.Peers[0].Cert, dst.id.DER) || p.Peers[0].NAT != wire.NATEasy {
		t.Fatalf("peer across nodes: %+v", p.Peers[0])
	}
	next(t, dst, func(m *wire.Peers) bool { return len(m.Peers) == 1 && m.Peers[0].ID == src.id.ID })

	// A punch asked of node a reaches the destination through node b, and
	// the barrier spans both nodes.
	src.send(t, &wire.PunchRequest{Peer: dst.id.ID})
	ps := next(t, src, func(m *wire.Punch) bool { return true })
	pd := next(t, dst, func(m *wire.Punch) bool { return true })
	if !bytes.Equal(ps.Nonce, pd.Nonce) || pd.Peer != src.id.ID || ps.Peer != dst.id.ID {
		t.Fatalf("punch across nodes: %+v / %+v", ps, pd)
	}
	srcIn, dstIn := inbox(src), inbox(dst)
	src.send(t, &wire.PunchReady{Nonce: ps.Nonce})
	readyAt := time.Now()
	dst.send(t, &wire.PunchReady{Nonce: pd.Nonce})
	if waitFor(srcIn, 5*time.Second, isGo) == nil || waitFor(dstIn, 5*time.Second, isGo) == nil {
		t.Fatal("no punch_go on both sides")
	}
	// Before the 2 s fallback: the destination's ready crossed back to node a.
	if d := time.Since(readyAt); d > 1500*time.Millisecond {
		t.Fatalf("punch_go came %v after both were ready: the barrier did not cross nodes", d)
	}
	if st := nodes[2].srv.Status(); len(st.Endpoints) != 1 || st.Endpoints[0].Sources != 1 || st.Endpoints[0].Destinations != 1 {
		t.Fatalf("node c's view of the endpoints: %+v", st.Endpoints)
	}
}

func TestClusterClientMovesToAnotherNodeWithoutItsPeerSeeingItLeave(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	nodes := startCluster(t, etcd, 3, []string{"a", "b"})
	src := nodes[0].join(t, "a")
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"})
	did, err := identity.New("dst")
	if err != nil {
		t.Fatal(err)
	}
	dst, _, err := nodes[1].dialAs(t, did, net.IPv4(127, 0, 0, 1), "b", quicconf.Control())
	if err != nil {
		t.Fatal(err)
	}
	dst.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 1 })
	srcIn := inbox(src)

	// The destination reconnects to node c while node b still holds its
	// old session (no close: as when node b's host vanished).
	moved, _, err := nodes[2].dialAs(t, did, net.IPv4(127, 0, 0, 1), "b", quicconf.Control())
	if err != nil {
		t.Fatal(err)
	}
	moved.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	waitUntil(t, 5*time.Second, "node b closes the session its client left", func() bool { return len(nodes[1].srv.Status().Clients) == 0 })
	if m := waitFor(srcIn, time.Second, func(m wire.Message) bool {
		p, ok := m.(*wire.Peers)
		return ok && len(p.Peers) == 0
	}); m != nil {
		t.Fatal("the source was told its destination left while it moved between nodes")
	}
	if st := nodes[0].srv.Status().Cluster; st.RemoteClients != 1 {
		t.Fatalf("node a counts %d remote clients, want 1 (the destination, now on c)", st.RemoteClients)
	}
}

func TestClusterStoppedNodeWithdrawsItsClients(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	nodes := startCluster(t, etcd, 2, []string{"a", "b"})
	src, dst := nodes[0].join(t, "a"), nodes[1].join(t, "b")
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"})
	dst.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 1 })
	nodes[1].stop()
	<-nodes[1].done
	start := time.Now()
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 0 })
	t.Logf("a node's clients left the others' views %v after it stopped", time.Since(start))
}

func TestClusterTokenChangesReachEveryNode(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	nodes := startCluster(t, etcd, 3, []string{"a"})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := nodes[2].srv.UpdateTokens(ctx, func(o *control.TokenOverlay) error {
		o.Revoked = append(o.Revoked, "a")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		select {
		case o := <-nd.tokens:
			if len(o.Revoked) != 1 || o.Revoked[0] != "a" {
				t.Fatalf("node %s got overlay %+v", nd.name, o)
			}
		case <-time.After(time.Second):
			t.Fatalf("node %s did not get the token change within 1 s", nd.name)
		}
	}
	t.Logf("a token revoked on node c reached all nodes in %v", time.Since(start))
	// Concurrent changes on two nodes both land (compare-and-swap).
	errs := make(chan error, 2)
	for i, tok := range []string{"x", "y"} {
		go func() {
			errs <- nodes[i].srv.UpdateTokens(ctx, func(o *control.TokenOverlay) error { o.Tokens = append(o.Tokens, tok); return nil })
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	o, err := nodes[1].srv.ClusterTokens(ctx)
	if err != nil || len(o.Tokens) != 2 || len(o.Revoked) != 1 {
		t.Fatalf("after two concurrent additions: %+v, %v", o, err)
	}
}

func TestClusterWithoutQuorumIsReadOnlyAndCatchesUp(t *testing.T) {
	etcd := etcdtest.Start(t, 3)
	nodes := startCluster(t, etcd, 2, []string{"a", "b"})
	src := nodes[0].join(t, "a")
	src.send(t, &wire.Announce{Endpoint: "svc", Role: "source", Route: "any"})
	dst := nodes[1].join(t, "b")
	dst.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 1 })

	// One member down changes nothing visible.
	etcd.Members[2].Stop(t)
	late := nodes[1].join(t, "b")
	late.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 2 })
	for _, nd := range nodes {
		if st := nd.srv.Status().Cluster; st.State != control.ClusterOK {
			t.Fatalf("node %s with one etcd member of three down: %+v", nd.name, st)
		}
	}

	// Two down: no quorum. Both nodes say so and keep what they know.
	etcd.Members[1].Stop(t)
	d := waitUntil(t, 15*time.Second, "both nodes report read-only", func() bool {
		for _, nd := range nodes {
			if st := nd.srv.Status().Cluster; st.State != control.ClusterReadOnly {
				// A quiet node notices at its next lease renewal.
				return false
			}
		}
		return true
	})
	t.Logf("read-only reported %v after quorum was lost", d)
	if st := nodes[0].srv.Status(); len(st.Endpoints) != 1 || st.Endpoints[0].Destinations != 2 {
		t.Fatalf("node a forgot what it knew without quorum: %+v", st.Endpoints)
	}
	// A registration meanwhile is held, and published when etcd is back.
	held := nodes[1].join(t, "b")
	held.send(t, &wire.Announce{Endpoint: "svc", Role: "destination", Route: "any"})
	etcd.Members[1].Start(t)
	etcd.Members[2].Start(t)
	waitUntil(t, 20*time.Second, "both nodes ok again", func() bool {
		for _, nd := range nodes {
			if st := nd.srv.Status().Cluster; st.State != control.ClusterOK {
				return false
			}
		}
		return true
	})
	next(t, src, func(m *wire.Peers) bool { return len(m.Peers) == 3 })
}
