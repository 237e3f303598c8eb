package control

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

func deltaID(n int) identity.ID {
	var id identity.ID
	copy(id[:], fmt.Sprintf("%016d", n))
	return id
}

// applyBatch is what a relay does with a batch (docs/protocol.md §4.2),
// written from the documentation rather than from the relay's code. It
// checks the batch's shape and each message's size on the way.
func applyBatch(t *testing.T, table map[string]wire.RelayEndpoint, batch []*wire.RelayAuthDelta, limit int) {
	t.Helper()
	for i, m := range batch {
		var buf bytes.Buffer
		if err := wire.Write(&buf, m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if n := buf.Len() - 4; n > limit {
			t.Fatalf("message %d of %d has %d bytes, over the limit of %d", i, len(batch), n, limit)
		}
		if m.More != (i < len(batch)-1) {
			t.Fatalf("message %d of %d: more = %v", i, len(batch), m.More)
		}
		if m.Reset && i > 0 {
			t.Fatalf("message %d of %d resets", i, len(batch))
		}
		if !m.Reset && len(m.Remove)+len(m.Set)+len(m.Extend) == 0 {
			t.Fatalf("message %d of %d says nothing", i, len(batch))
		}
		if m.Reset {
			clear(table)
		}
		for _, name := range m.Remove {
			delete(table, name)
		}
		for _, ep := range m.Set {
			table[ep.Endpoint] = ep
		}
		for _, ep := range m.Extend {
			e := table[ep.Endpoint]
			e.Endpoint = ep.Endpoint
			e.Sources = append(slices.Clip(e.Sources), ep.Sources...)
			e.Destinations = append(slices.Clip(e.Destinations), ep.Destinations...)
			table[ep.Endpoint] = e
		}
	}
}

// sameTable compares a relay's table with control's view, as sets of IDs.
func sameTable(t *testing.T, got map[string]wire.RelayEndpoint, want []wire.RelayEndpoint) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("the relay has %d entries, control %d", len(got), len(want))
	}
	for _, w := range want {
		g := got[w.Endpoint]
		if !slices.Equal(g.Sources, w.Sources) || !slices.Equal(g.Destinations, w.Destinations) {
			t.Fatalf("entry %q: relay has %d sources, %d destinations; control %d, %d",
				w.Endpoint, len(g.Sources), len(g.Destinations), len(w.Sources), len(w.Destinations))
		}
	}
}

func TestRelayDeltaFirstBatchResetsEvenWhenEmpty(t *testing.T) {
	batch, sent := relayDelta(nil, nil, maxDeltaBody)
	if len(batch) != 1 || !batch[0].Reset || batch[0].More || len(batch[0].Set) != 0 {
		t.Fatalf("first batch of an empty table: %+v", batch)
	}
	if sent == nil {
		t.Fatal("no table kept after the first batch")
	}
	if batch, _ := relayDelta(sent, nil, maxDeltaBody); len(batch) != 0 {
		t.Fatalf("an unchanged table was sent again: %+v", batch)
	}
}

func TestRelayDeltaSendsOnlyWhatChanged(t *testing.T) {
	ep := func(name string, ids ...int) wire.RelayEndpoint {
		e := wire.RelayEndpoint{Endpoint: name, Destinations: []identity.ID{deltaID(0)}}
		for _, n := range ids {
			e.Sources = append(e.Sources, deltaID(n))
		}
		return e
	}
	_, sent := relayDelta(nil, []wire.RelayEndpoint{ep("a", 1), ep("b", 2), ep("c", 3)}, maxDeltaBody)
	batch, sent := relayDelta(sent, []wire.RelayEndpoint{ep("a", 1, 4), ep("c", 3), ep("d", 5)}, maxDeltaBody)
	if len(batch) != 1 {
		t.Fatalf("%d messages, want 1", len(batch))
	}
	m := batch[0]
	if m.Reset || m.More || !slices.Equal(m.Remove, []string{"b"}) || len(m.Extend) != 0 ||
		len(m.Set) != 2 || m.Set[0].Endpoint != "a" || m.Set[1].Endpoint != "d" || len(m.Set[0].Sources) != 2 {
		t.Fatalf("delta %+v, want b removed and a (whole) and d set", m)
	}
	if got := slices.Sorted(maps.Keys(sent)); !slices.Equal(got, []string{"a", "c", "d"}) {
		t.Fatalf("control remembers %v as sent", got)
	}
}

// randomTable is a table of up to n endpoints, a few of them with
// thousands of clients, sorted as relayView sorts it.
func randomTable(r *rand.Rand, n int) []wire.RelayEndpoint {
	var out []wire.RelayEndpoint
	for i := range n {
		if r.IntN(3) == 0 {
			continue
		}
		ns, nd := 1+r.IntN(3), 1+r.IntN(3)
		if r.IntN(20) == 0 {
			ns = 1 + r.IntN(1000)
		}
		ep := wire.RelayEndpoint{Endpoint: fmt.Sprintf("ep-%03d-%s", i, strings.Repeat("é", r.IntN(100)))}
		for range ns {
			ep.Sources = append(ep.Sources, deltaID(r.IntN(5000)))
		}
		for range nd {
			ep.Destinations = append(ep.Destinations, deltaID(5000+r.IntN(5000)))
		}
		out = append(out, ep)
	}
	return out
}

// Whatever the tables, a relay that applies every batch holds exactly
// control's view, and no message outgrows the limit: a small one here, so
// that most batches are cut and big entries split.
func TestRelayDeltaBatchesRebuildEveryTable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, limit := range []int{4 << 10, 64 << 10, maxDeltaBody} {
		var sent relayTable
		relay := map[string]wire.RelayEndpoint{}
		for range 15 {
			cur := randomTable(r, 150)
			var batch []*wire.RelayAuthDelta
			batch, sent = relayDelta(sent, cur, limit)
			applyBatch(t, relay, batch, limit)
			sameTable(t, relay, cur)
		}
	}
}

// One endpoint with more clients than a message holds goes out as a set
// and extends; it is the only way a single entry fits.
func TestRelayDeltaSplitsAnEntryTooBigForAMessage(t *testing.T) {
	ep := wire.RelayEndpoint{Endpoint: "crowded", Destinations: []identity.ID{deltaID(0), deltaID(1)}}
	for i := range 20000 {
		ep.Sources = append(ep.Sources, deltaID(10+i))
	}
	cur := []wire.RelayEndpoint{{Endpoint: "a", Sources: []identity.ID{deltaID(2)}, Destinations: []identity.ID{deltaID(3)}}, ep}
	batch, _ := relayDelta(nil, cur, maxDeltaBody)
	if len(batch) < 3 || len(batch[0].Set) != 2 || batch[0].Set[1].Endpoint != "crowded" {
		t.Fatalf("20,000 IDs went out in %d messages, the first setting %d entries", len(batch), len(batch[0].Set))
	}
	for _, m := range batch[1:] {
		if len(m.Set) != 0 || len(m.Extend) != 1 {
			t.Fatalf("a later piece is not one extend: %d sets, %d extends", len(m.Set), len(m.Extend))
		}
	}
	relay := map[string]wire.RelayEndpoint{}
	applyBatch(t, relay, batch, maxDeltaBody)
	sameTable(t, relay, cur)
}

// A table of 20,000 endpoints with the longest names goes out as a reset
// in messages of at most 256 KiB, in reasonable time.
func TestRelayDeltaOfABigTable(t *testing.T) {
	var cur []wire.RelayEndpoint
	for i := range 20000 {
		name := fmt.Sprintf("big-%06d-", i)
		cur = append(cur, wire.RelayEndpoint{Endpoint: name + strings.Repeat("x", 255-len(name)),
			Sources: []identity.ID{deltaID(2 * i)}, Destinations: []identity.ID{deltaID(2*i + 1)}})
	}
	start := time.Now()
	batch, sent := relayDelta(nil, cur, maxDeltaBody)
	t.Logf("20,000 endpoints: %d messages in %v", len(batch), time.Since(start).Round(time.Millisecond))
	relay := map[string]wire.RelayEndpoint{}
	applyBatch(t, relay, batch, maxDeltaBody)
	sameTable(t, relay, cur)

	cur[7000].Sources = []identity.ID{deltaID(-1)}
	cur = slices.Delete(cur, 100, 101)
	start = time.Now()
	batch, _ = relayDelta(sent, cur, maxDeltaBody)
	t.Logf("then one change and one removal: %d message in %v", len(batch), time.Since(start).Round(time.Millisecond))
	if len(batch) != 1 || len(batch[0].Set) != 1 || len(batch[0].Remove) != 1 {
		t.Fatalf("one change and one removal made %d messages: %+v", len(batch), batch)
	}
	applyBatch(t, relay, batch, maxDeltaBody)
	sameTable(t, relay, cur)
}
