package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestProbeTypesAreNotQUIC(t *testing.T) {
	for _, k := range []byte{ProbePing, ProbePong, ReflectRequest, ReflectReply} {
		if k&0x40 != 0 || k&0x80 != 0 {
			t.Errorf("type %#x has a QUIC header bit set: quic-go would take it", k)
		}
		if k == RelayFrameData {
			t.Errorf("type %#x collides with relay data frames", k)
		}
	}
}

// The exact bytes of a ping, a pong and a reflect reply, as another
// implementation must produce them.
func TestProbeLayout(t *testing.T) {
	p := Probe{Nonce: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, From: testID(0x10), To: testID(0x20)}
	ping := AppendProbe(nil, p)
	want := append([]byte{0x02, 'c', 'n', 'd', 1, 2, 3, 4, 5, 6, 7, 8}, append(p.From[:], p.To[:]...)...)
	want = append(want, make([]byte, AddrLen)...) // padded to a pong's length
	if !bytes.Equal(ping, want) || len(ping) != PingLen || PingLen != PongLen {
		t.Fatalf("ping\n% x\nwant\n% x", ping, want)
	}
	p.Pong, p.Observed = true, netip.MustParseAddrPort("198.51.100.7:4660")
	pong := AppendProbe(nil, p)
	wantAddr := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7, 0x12, 0x34}
	if pong[0] != 0x03 || !bytes.Equal(pong[PongLen-AddrLen:], wantAddr) || len(pong) != PongLen {
		t.Fatalf("pong % x", pong)
	}
	got, err := ParseProbe(pong)
	if err != nil || got != p {
		t.Fatalf("ParseProbe = %+v, %v; want %+v", got, err, p)
	}
	r := Reflect{TxID: [12]byte{9, 9, 9}}
	req := AppendReflect(nil, r)
	if !bytes.Equal(req[:4], []byte{0x04, 'c', 'n', 'd'}) || len(req) != ReflectReqLen {
		t.Fatalf("reflect request % x", req)
	}
	from := netip.MustParseAddrPort("[2001:db8::5]:19192")
	reply := AnswerReflect(req, from)
	rr, err := ParseReflect(reply)
	if err != nil || !rr.Reply || rr.TxID != r.TxID || rr.Observed != from {
		t.Fatalf("reflect reply %+v, %v", rr, err)
	}
}

func TestAnswerReflectUnmapsAndIgnoresOthers(t *testing.T) {
	req := AppendReflect(nil, Reflect{})
	mapped := netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr("192.0.2.1").As16()), 7)
	rr, err := ParseReflect(AnswerReflect(req, mapped))
	if err != nil || rr.Observed != netip.MustParseAddrPort("192.0.2.1:7") {
		t.Fatalf("observed %v, %v", rr.Observed, err)
	}
	for _, b := range [][]byte{nil, AnswerReflect(req, mapped), AppendProbe(nil, Probe{}), {0x04, 'c', 'n', 'd'}} {
		if AnswerReflect(b, mapped) != nil {
			t.Errorf("answered % x", b)
		}
	}
}

func TestParseProbeRefuses(t *testing.T) {
	ping := AppendProbe(nil, Probe{})
	for name, b := range map[string][]byte{
		"nil":        nil,
		"short":      ping[:PingLen-1],
		"long":       append(append([]byte(nil), ping...), 0),
		"bad magic":  append([]byte{0x02, 'x', 'n', 'd'}, ping[4:]...),
		"reflect":    AppendReflect(nil, Reflect{}),
		"relay":      append([]byte{0x01, 'c', 'n', 'd'}, ping[4:]...),
		"quic":       append([]byte{0xc0}, ping[1:]...),
		"pong short": append([]byte{0x03}, ping[1:PingLen-AddrLen]...),
		"unpadded":   ping[:PingLen-AddrLen],
		"padding":    append(append([]byte(nil), ping[:PingLen-1]...), 1),
	} {
		if _, err := ParseProbe(b); !errors.Is(err, ErrNotProbe) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// FuzzProbe feeds arbitrary datagrams to the probe and reflect decoders:
// they never panic, accept only the exact layouts, and whatever they accept
// encodes back to the same bytes.
func FuzzProbe(f *testing.F) {
	f.Add(AppendProbe(nil, Probe{From: testID(1), To: testID(2)}))
	f.Add(AppendProbe(nil, Probe{Pong: true, Observed: netip.MustParseAddrPort("192.0.2.1:1")}))
	f.Add(AppendReflect(nil, Reflect{TxID: [12]byte{1}}))
	f.Add(AppendReflect(nil, Reflect{Reply: true, Observed: netip.MustParseAddrPort("[2001:db8::1]:2")}))
	f.Add([]byte{0x02, 'c', 'n', 'd'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParseProbe(b); err == nil {
			if !bytes.Equal(AppendProbe(nil, p), canonicalAddr(b, PongLen-AddrLen)) {
				t.Fatalf("probe % x re-encodes differently", b)
			}
		}
		if r, err := ParseReflect(b); err == nil {
			if !bytes.Equal(AppendReflect(nil, r), canonicalAddr(b, ReflectReqLen)) {
				t.Fatalf("reflect % x re-encodes differently", b)
			}
		}
		if reply := AnswerReflect(b, netip.MustParseAddrPort("192.0.2.1:9")); reply != nil {
			if _, err := ParseReflect(reply); err != nil {
				t.Fatalf("AnswerReflect produced an unparsable reply: %v", err)
			}
		}
	})
}

// canonicalAddr rewrites the address field after off (if present) the way
// PutAddr writes it: an IPv4-mapped address stays mapped, so the bytes are
// unchanged; this only guards against a future encoding that is not.
func canonicalAddr(b []byte, off int) []byte {
	if len(b) < off+AddrLen {
		return b
	}
	out := append([]byte(nil), b...)
	PutAddr(out[off:], ParseAddr(b[off:]))
	return out
}

// A reflect request is as long as its answer: a shorter one, or one whose
// padding is not zeros, gets no answer.
func TestReflectRequestIsPaddedToItsAnswer(t *testing.T) {
	req := AppendReflect(nil, Reflect{TxID: [ReflectTxIDLen]byte{9}})
	from := netip.MustParseAddrPort("[2001:db8::7]:4")
	reply := AnswerReflect(req, from)
	if len(req) != ReflectReplyLen || len(reply) != len(req) {
		t.Fatalf("request %d bytes, reply %d bytes: want both %d", len(req), len(reply), ReflectReplyLen)
	}
	if AnswerReflect(req[:16], from) != nil {
		t.Fatal("a 16-byte request was answered with a longer reply")
	}
	bad := append([]byte(nil), req...)
	bad[len(bad)-1] = 1
	if AnswerReflect(bad, from) != nil {
		t.Fatal("a request with non-zero padding was answered")
	}
}
