package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestFlowDatagramRoundTrip(t *testing.T) {
	for _, id := range []uint64{0, 4, 63, 64, 16383, 16384, 1<<30 - 1, 1 << 30, 1<<62 - 1} {
		payload := []byte("payload")
		b := AppendFlowDatagram(nil, id, payload)
		if len(b) != FlowHeaderLen(id)+len(payload) {
			t.Fatalf("id %d: %d bytes, want header %d + %d", id, len(b), FlowHeaderLen(id), len(payload))
		}
		gotID, got, err := ParseFlowDatagram(b)
		if err != nil || gotID != id || !bytes.Equal(got, payload) {
			t.Fatalf("id %d: parsed (%d, %q, %v)", id, gotID, got, err)
		}
	}
	// An empty payload is a datagram too (UDP allows zero-length ones).
	if id, p, err := ParseFlowDatagram(AppendFlowDatagram(nil, 8, nil)); err != nil || id != 8 || len(p) != 0 {
		t.Fatalf("empty payload: (%d, %q, %v)", id, p, err)
	}
	for _, bad := range [][]byte{nil, {0x40}, {0x80, 0, 0}, {0xc0, 1, 2, 3, 4, 5, 6}} {
		if _, _, err := ParseFlowDatagram(bad); !errors.Is(err, ErrFlowDatagram) {
			t.Fatalf("% x: err = %v, want ErrFlowDatagram", bad, err)
		}
	}
}

// FuzzParseFlowDatagram feeds arbitrary datagrams, as a peer may send, to
// the flow header decoder: it must never panic, must refuse exactly what
// is too short for its varint, and what it accepts must re-encode to the
// same bytes when the varint was minimal.
func FuzzParseFlowDatagram(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x00, 'x'})
	f.Add([]byte{0x40, 0x40, 'y'})
	f.Add([]byte{0xc0, 0, 0, 0, 0, 0, 0, 4})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, payload, err := ParseFlowDatagram(b)
		if len(b) == 0 {
			if err == nil {
				t.Fatal("accepted an empty datagram")
			}
			return
		}
		want := 1 << (b[0] >> 6) // the varint's length, from its first two bits
		if len(b) < want {
			if err == nil {
				t.Fatalf("accepted %d bytes for a %d-byte varint", len(b), want)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused %d bytes with a %d-byte varint: %v", len(b), want, err)
		}
		if len(payload) != len(b)-want {
			t.Fatalf("payload %d bytes, want %d", len(payload), len(b)-want)
		}
		if FlowHeaderLen(id) == want && !bytes.Equal(AppendFlowDatagram(nil, id, payload), b) {
			t.Fatalf("re-encoding % x gave other bytes", b)
		}
	})
}
