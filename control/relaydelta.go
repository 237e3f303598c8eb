package control

import (
	"encoding/json"
	"slices"
	"sort"

	"github.com/connetd/connetd/identity"
	"github.com/connetd/connetd/wire"
)

// maxDeltaBody is the most one relay_auth_delta message carries, envelope
// included: far below wire.MaxFrame, so that however big the table grows
// (thousands of long endpoint names, thousands of clients on one endpoint)
// no message of it can break the relay's link.
const maxDeltaBody = 256 << 10

// relayTable is the table as control last sent it on one relay link:
// entry by endpoint name. The link's writer owns it.
type relayTable map[string]wire.RelayEndpoint

// relayDelta is the batch of messages that takes a relay from sent to cur
// (sorted by name, as relayView makes it), and sent updated to match cur.
// A nil sent means nothing was sent on this link yet: the batch then
// starts with a reset and carries all of cur, even when cur is empty, so
// that the relay drops what it kept from an earlier link. An unchanged
// table makes no message at all. Each message's body stays within limit.
func relayDelta(sent relayTable, cur []wire.RelayEndpoint, limit int) ([]*wire.RelayAuthDelta, relayTable) {
	b := newDeltaBatch(limit)
	if sent == nil {
		sent = relayTable{}
		b.cur.Reset = true
		b.changed = true
	}
	inCur := make(map[string]bool, len(cur))
	for _, ep := range cur {
		inCur[ep.Endpoint] = true
	}
	var gone []string
	for name := range sent {
		if !inCur[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		b.remove(name)
		delete(sent, name)
	}
	for _, ep := range cur {
		if old, ok := sent[ep.Endpoint]; ok && slices.Equal(old.Sources, ep.Sources) && slices.Equal(old.Destinations, ep.Destinations) {
			continue
		}
		b.set(ep)
		sent[ep.Endpoint] = ep
	}
	return b.done(), sent
}

// Upper bounds of the encoded sizes, so that a message is cut before it
// would outgrow the limit, never after: an empty list may be written as
// null, each ID in a list takes its quoted hex and a comma.
var (
	deltaOverhead = len(`{"relay_auth_delta":{"reset":true,"remove":null,"set":null,"extend":null,"more":true}}`)
	entryOverhead = len(`{"endpoint":,"sources":null,"destinations":null},`)
	idSize        = len(`"",`) + 2*len(identity.ID{})
)

// deltaBatch cuts a batch into messages of at most limit bytes.
type deltaBatch struct {
	limit   int
	msgs    []*wire.RelayAuthDelta
	cur     *wire.RelayAuthDelta
	size    int  // upper bound of cur's encoded size
	changed bool // cur says something (a reset counts)
}

func newDeltaBatch(limit int) *deltaBatch {
	return &deltaBatch{limit: limit, cur: &wire.RelayAuthDelta{}, size: deltaOverhead}
}

func (b *deltaBatch) next() {
	b.msgs = append(b.msgs, b.cur)
	b.cur, b.size, b.changed = &wire.RelayAuthDelta{}, deltaOverhead, false
}

func (b *deltaBatch) add(n int) { b.size += n; b.changed = true }

func (b *deltaBatch) remove(name string) {
	n := quotedLen(name) + 1
	if b.changed && b.size+n > b.limit {
		b.next()
	}
	b.cur.Remove = append(b.cur.Remove, name)
	b.add(n)
}

// set replaces ep's entry. An entry too big for any message goes out in
// pieces from the current message on: the first replaces the entry, the
// others extend it, each in the next message of the batch (the relay
// applies the batch as a whole).
func (b *deltaBatch) set(ep wire.RelayEndpoint) {
	fixed := entryOverhead + quotedLen(ep.Endpoint)
	whole := fixed + idSize*(len(ep.Sources)+len(ep.Destinations))
	if b.size+whole > b.limit && deltaOverhead+whole <= b.limit {
		b.next() // it fits in a message of its own
	}
	if b.size+whole <= b.limit {
		b.cur.Set = append(b.cur.Set, ep)
		b.add(whole)
		return
	}
	srcs, dsts := ep.Sources, ep.Destinations
	for first := true; ; first = false {
		n := (b.limit - b.size - fixed) / idSize
		if n < 1 && b.changed {
			b.next()
			n = (b.limit - b.size - fixed) / idSize
		}
		n = max(n, 1) // whatever the limit, each piece moves on
		piece := wire.RelayEndpoint{Endpoint: ep.Endpoint}
		piece.Sources, srcs = cut(srcs, n)
		piece.Destinations, dsts = cut(dsts, n-len(piece.Sources))
		if first {
			b.cur.Set = append(b.cur.Set, piece)
		} else {
			b.cur.Extend = append(b.cur.Extend, piece)
		}
		b.add(fixed + idSize*(len(piece.Sources)+len(piece.Destinations)))
		if len(srcs)+len(dsts) == 0 {
			return
		}
		b.next()
	}
}

// cut splits off the first n IDs (none when n <= 0).
func cut(ids []identity.ID, n int) (head, rest []identity.ID) {
	n = min(max(n, 0), len(ids))
	return ids[:n:n], ids[n:]
}

// done ends the batch: every message but the last says more follow.
func (b *deltaBatch) done() []*wire.RelayAuthDelta {
	if b.changed {
		b.next()
	}
	for _, m := range b.msgs[:max(len(b.msgs)-1, 0)] {
		m.More = true
	}
	return b.msgs
}

// quotedLen bounds the length of s as a JSON string (json.Marshal escapes
// at least as much as the wire encoder).
func quotedLen(s string) int {
	q, _ := json.Marshal(s)
	return len(q)
}
