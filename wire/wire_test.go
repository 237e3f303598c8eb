package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/connetd/connetd/identity"
)

func testID(b byte) identity.ID {
	var id identity.ID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

// frame builds a length-prefixed frame around body by hand, independently
// of Write.
func frame(body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(b, body...)
}

// everything reads every kind, for tests about framing rather than links.
var everything = func() Set {
	var all []Message
	for _, c := range constructors {
		all = append(all, c())
	}
	return newSet("any link", MaxFrame, all...)
}()

// sampleMessages has one fully populated message of every kind.
func sampleMessages() []Message {
	cert := []byte{0x30, 0x82, 0x01, 0x00, 0xff, 0x00, 0x7f}
	return []Message{
		&Hello{Token: "tok", Version: "v1.2.3", Direct: []string{"192.0.2.1:19192", "[2001:db8::1]:19192"}, NAT: NATEasy, Punch: true},
		&Welcome{Observed: "198.51.100.7:40000"},
		&Error{Code: CodeForbidden, Message: "no", Endpoint: "web", Role: "source"},
		&Announce{Endpoint: "web", Role: "destination", Route: RouteRelay, Proto: ProtoUDP},
		&Withdraw{Endpoint: "web", Role: "source"},
		&Candidates{Direct: []string{"192.0.2.1:1", "192.0.2.2:2"}, NAT: NATHard},
		&Peers{Endpoint: "web", Role: "source", Peers: []Peer{
			{ID: testID(1), Cert: cert, Direct: []string{"192.0.2.9:9"}, Route: RouteAny, NAT: NATNone, Proto: ProtoTCP},
			{ID: testID(2), Cert: []byte{}, Direct: []string{}, Route: RouteDirect},
		}},
		&Relays{Relays: []Relay{{ID: testID(3), Addr: "relay.example:19191", Cert: cert}}},
		&RelayHello{Token: "relay-tok", Addr: "relay.example:19191"},
		&RelayAuthDelta{Reset: true, Remove: []string{"old"},
			Set:    []RelayEndpoint{{Endpoint: "web", Sources: []identity.ID{testID(4)}, Destinations: []identity.ID{testID(5), testID(6)}}},
			Extend: []RelayEndpoint{{Endpoint: "web", Sources: []identity.ID{testID(9)}, Destinations: []identity.ID{}}},
			More:   true},
		&Connect{Endpoint: "web", From: "127.0.0.1:5555", Proto: ProtoUDP, Ack: true, Flow: 42},
		&FlowReady{},
		&Resume{Flow: 0xfedcba9876543210, Received: 1 << 40},
		&Resumed{Received: 12345},
		&PunchRequest{Peer: testID(7), Spray: PunchSprayDestination},
		&Punch{Nonce: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Peer: testID(8), Direct: []string{"198.51.100.7:4000"}, NAT: NATHard, Dial: true, Mode: PunchModeRandom},
		&PunchReady{Nonce: []byte{8, 7, 6, 5, 4, 3, 2, 1}},
		&PunchGo{Nonce: []byte{8, 7, 6, 5, 4, 3, 2, 1}},
	}
}

func TestRoundTripEveryMessage(t *testing.T) {
	msgs := sampleMessages()
	if len(msgs) != len(constructors) {
		t.Fatalf("sampleMessages covers %d kinds, the package has %d", len(msgs), len(constructors))
	}
	for _, m := range msgs {
		t.Run(Kind(m), func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, m); err != nil {
				t.Fatal(err)
			}
			raw := buf.Bytes()
			if n := binary.BigEndian.Uint32(raw); int(n) != len(raw)-4 {
				t.Fatalf("length prefix %d, body has %d bytes", n, len(raw)-4)
			}
			var env map[string]json.RawMessage
			if err := json.Unmarshal(raw[4:], &env); err != nil {
				t.Fatalf("body is not a JSON object: %v", err)
			}
			if _, ok := env[Kind(m)]; !ok || len(env) != 1 {
				t.Fatalf("envelope keys %v, want exactly %q", keys(env), Kind(m))
			}
			got, err := Read(&buf, everything)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
			}
			if buf.Len() != 0 {
				t.Fatalf("Read left %d bytes of the frame unread", buf.Len())
			}
		})
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The exact bytes of some messages, as another implementation must produce
// and accept them (and as the envelope struct of earlier versions wrote
// them: the ALPN versions rely on it).
func TestExactEncoding(t *testing.T) {
	cases := []struct {
		m    Message
		body string
	}{
		{&Hello{Token: "t", Version: "1", Direct: []string{"192.0.2.1:5"}},
			`{"hello":{"token":"t","version":"1","direct":["192.0.2.1:5"]}}`},
		{&Connect{Endpoint: "web", From: "127.0.0.1:1"},
			`{"connect":{"endpoint":"web","from":"127.0.0.1:1"}}`},
		{&Punch{Nonce: []byte{0, 1, 2, 3, 4, 5, 6, 7}, Peer: testID(0), Direct: []string{"192.0.2.1:5"}, NAT: NATEasy},
			`{"punch":{"nonce":"AAECAwQFBgc=","peer":"000102030405060708090a0b0c0d0e0f","direct":["192.0.2.1:5"],"nat":"easy"}}`},
		{&PunchGo{Nonce: []byte{0, 1, 2, 3, 4, 5, 6, 7}},
			`{"punch_go":{"nonce":"AAECAwQFBgc="}}`},
		{&Error{Code: CodeUnauthorized, Message: "invalid token"},
			`{"error":{"code":"unauthorized","message":"invalid token"}}`},
		{&Relays{Relays: []Relay{{ID: testID(0), Addr: "r:1", Cert: []byte{1, 2, 3}}}},
			`{"relays":{"relays":[{"id":"000102030405060708090a0b0c0d0e0f","addr":"r:1","cert":"AQID"}]}}`},
		{&RelayAuthDelta{}, `{"relay_auth_delta":{"remove":null,"set":null,"extend":null}}`},
		{&RelayAuthDelta{Reset: true, Remove: []string{"a"}, Set: []RelayEndpoint{{Endpoint: "e", Sources: []identity.ID{testID(0)}}}, More: true},
			`{"relay_auth_delta":{"reset":true,"remove":["a"],"set":[{"endpoint":"e","sources":["000102030405060708090a0b0c0d0e0f"],"destinations":null}],"extend":null,"more":true}}`},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if err := Write(&buf, c.m); err != nil {
			t.Fatal(err)
		}
		if want := frame(c.body); !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("Write:\n got %q\nwant %q", buf.Bytes(), want)
		}
		got, err := Read(bytes.NewReader(frame(c.body)), everything)
		if err != nil {
			t.Fatalf("Read %s: %v", c.body, err)
		}
		if !reflect.DeepEqual(got, c.m) {
			t.Errorf("Read %s = %+v, want %+v", c.body, got, c.m)
		}
	}
}

func TestSeveralMessagesOnOneStream(t *testing.T) {
	var buf bytes.Buffer
	msgs := sampleMessages()
	for _, m := range msgs {
		if err := Write(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	buf.WriteString("raw bytes after the last message")
	for _, want := range msgs {
		m, err := Read(&buf, everything)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("got %+v, want %+v", m, want)
		}
	}
	// A connect header is followed by raw stream bytes: Read must not
	// consume any of them.
	if rest := buf.String(); rest != "raw bytes after the last message" {
		t.Fatalf("bytes after the messages = %q", rest)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	m, err := Read(bytes.NewReader(frame(`{"hello":{"token":"t","future":{"x":1}}}`)), ClientToControl)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := m.(*Hello); !ok || h.Token != "t" {
		t.Fatalf("got %#v", m)
	}
}

// Every set accepts exactly its kinds; any other is refused by name.
func TestSets(t *testing.T) {
	sets := []Set{ClientToControl, ControlToClient, RelayToControl, ControlToRelay, RelayToClient, PeerStream, FlowStream, ResumeStream}
	covered := map[string]bool{}
	for _, set := range sets {
		for _, m := range sampleMessages() {
			var buf bytes.Buffer
			if err := Write(&buf, m); err != nil {
				t.Fatal(err)
			}
			got, err := Read(&buf, set)
			if set.Has(m) {
				covered[Kind(m)] = true
				if err != nil || !reflect.DeepEqual(got, m) {
					t.Errorf("%s refused %s: %v", set, Kind(m), err)
				}
				continue
			}
			if !errors.Is(err, ErrUnexpectedKind) || !strings.Contains(err.Error(), `"`+Kind(m)+`"`) || got != nil {
				t.Errorf("%s read %s: %v, %v; want an error naming the kind", set, Kind(m), got, err)
			}
		}
	}
	if len(covered) != len(constructors) {
		t.Errorf("the links carry %d kinds of %d: %v", len(covered), len(constructors), covered)
	}
	var zero Set
	// It refuses even the frame's length: it allows no body at all.
	if _, err := Read(bytes.NewReader(frame(`{"welcome":{}}`)), zero); !errors.Is(err, ErrUnexpectedKind) && !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("the zero Set accepted a message: %v", err)
	}
}

// The whole table of relay protocol /1 is no message any more: a relay
// that got one would refuse it by name rather than misread it.
func TestOldRelayAuthRefused(t *testing.T) {
	_, err := Read(bytes.NewReader(frame(`{"relay_auth":{"endpoints":[]}}`)), ControlToRelay)
	if !errors.Is(err, ErrUnexpectedKind) || !strings.Contains(err.Error(), `"relay_auth"`) {
		t.Fatalf("err = %v, want ErrUnexpectedKind naming relay_auth", err)
	}
}

// The envelope has exactly one member, whose exact key is the kind and
// whose value is an object.
func TestEnvelopeRefused(t *testing.T) {
	for _, body := range []string{
		`{}`, `null`, `[]`, `"hello"`, `5`, `{"hello":null}`, `{"hello":[]}`, `{"hello":"x"}`,
		`{"hello":{},"welcome":{}}`, `{"hello":{},"hello":{}}`, `{"hello":{},"future":{}}`,
		`{"hello":{}} x`, `{"hello":{}}{}`, `{"hello":{}`,
	} {
		if m, err := Read(bytes.NewReader(frame(body)), everything); err == nil {
			t.Errorf("%s decoded to %#v", body, m)
		}
	}
	for _, body := range []string{`{"HELLO":{}}`, `{"future_kind":{}}`} {
		if _, err := Read(bytes.NewReader(frame(body)), everything); !errors.Is(err, ErrUnexpectedKind) {
			t.Errorf("%s: err = %v, want ErrUnexpectedKind", body, err)
		}
	}
	long := `{"` + strings.Repeat("k", 1000) + `":{}}`
	if _, err := Read(bytes.NewReader(frame(long)), everything); err == nil || len(err.Error()) > 200 {
		t.Errorf("a long unknown kind: %v", err)
	}
}

func TestGarbageRefused(t *testing.T) {
	for _, body := range []string{``, `{`, `{"hello":{"token":5}}`,
		`{"peers":{"peers":[{"id":"zz"}]}}`, `{"relay_auth_delta":{"set":[{"sources":["0011"]}]}}`} {
		if m, err := Read(bytes.NewReader(frame(body)), everything); err == nil {
			t.Errorf("%q decoded to %+v", body, m)
		}
	}
}

func TestWriteRefusesNil(t *testing.T) {
	var buf bytes.Buffer
	for _, m := range []Message{nil, (*Hello)(nil)} {
		if err := Write(&buf, m); err == nil {
			t.Errorf("Write(%#v) succeeded", m)
		}
	}
	if buf.Len() != 0 {
		t.Fatalf("wrote %d bytes", buf.Len())
	}
}

func TestOversizedFrameRefusedWithoutAllocating(t *testing.T) {
	for _, n := range []uint32{MaxFrame + 1, 1 << 31, 0xffffffff} {
		hdr := binary.BigEndian.AppendUint32(nil, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range 8 {
			_, err := Read(bytes.NewReader(hdr), everything)
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("length %d: err = %v, want ErrFrameTooLarge", n, err)
			}
		}
		runtime.ReadMemStats(&after)
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Fatalf("length %d: refusing 8 frames allocated %d bytes", n, d)
		}
	}
}

func TestMaxFrameAccepted(t *testing.T) {
	body := `{"welcome":{"observed":"x"}}`
	body += strings.Repeat(" ", MaxFrame-len(body)) // JSON allows trailing space
	m, err := Read(bytes.NewReader(frame(body)), ControlToClient)
	if w, ok := m.(*Welcome); err != nil || !ok || w.Observed != "x" {
		t.Fatalf("frame of exactly MaxFrame bytes: %+v, %v", m, err)
	}
}

// What unauthenticated senders send (a hello first) is bounded far below
// MaxFrame: a hello of 100 KiB is refused before its body is read.
func TestSmallLinksRefuseLargeFrames(t *testing.T) {
	body := `{"hello":{"token":"t","version":"v","direct":[]}}`
	exact := body + strings.Repeat(" ", MaxSmallFrame-len(body))
	if _, err := Read(bytes.NewReader(frame(exact)), ClientToControl); err != nil {
		t.Fatalf("a hello of exactly MaxSmallFrame bytes: %v", err)
	}
	for _, set := range []Set{ClientToControl, RelayToControl, RelayToClient, PeerStream, FlowStream, ResumeStream} {
		big := body + strings.Repeat(" ", 100<<10)
		if _, err := Read(bytes.NewReader(frame(big)), set); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("%s: a 100 KiB frame gave %v, want ErrFrameTooLarge", set, err)
		}
	}
}

func TestWriteRefusesOversized(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, &Hello{Token: strings.Repeat("a", MaxFrame)})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("Write wrote %d bytes of a refused message", buf.Len())
	}
}

func TestTruncated(t *testing.T) {
	if _, err := Read(bytes.NewReader(nil), everything); err != io.EOF {
		t.Errorf("empty stream: err = %v, want io.EOF (a clean end between messages)", err)
	}
	if _, err := Read(bytes.NewReader([]byte{0, 0}), everything); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("half a length prefix: err = %v, want io.ErrUnexpectedEOF", err)
	}
	full := frame(`{"welcome":{"observed":"192.0.2.1:1"}}`)
	for _, cut := range []int{4, 5, len(full) - 1} {
		if _, err := Read(bytes.NewReader(full[:cut]), everything); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("frame cut at %d of %d: err = %v, want io.ErrUnexpectedEOF", cut, len(full), err)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Code: CodeUnauthorized, Message: "invalid token"}
	if got := e.Error(); got != "control refused: unauthorized: invalid token" {
		t.Errorf("hello refusal: %q", got)
	}
	e = &Error{Code: CodeForbidden, Message: "no", Endpoint: "web", Role: "source"}
	if got := e.Error(); got != `control refused source "web": forbidden: no` {
		t.Errorf("endpoint refusal: %q", got)
	}
}

// The numeric codes are part of the protocol: another implementation
// must use the same values.
func TestCodesAreStable(t *testing.T) {
	got := []uint64{StreamUnknownEndpoint, StreamDialFailed, StreamBadRequest, StreamAborted,
		StreamWrongProtocol, StreamFlowLimit, StreamFlowIdle, StreamMoved, StreamUnknownFlow,
		ConnNormal, ConnUnauthorized, ConnShutdown, ConnProtocol, ConnReplaced}
	want := []uint64{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0, 1, 2, 3, 4}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("codes %v, want %v", got, want)
	}
	alpns := []string{ALPNClientControl, ALPNRelayControl, ALPNClientRelay, ALPNPeer, ALPNPeerResumable}
	wantALPN := []string{"connetd-client-control/1", "connetd-relay-control/2", "connetd-client-relay/1", "connetd-peer/1", "connetd-peer/2"}
	if !reflect.DeepEqual(alpns, wantALPN) {
		t.Errorf("ALPNs %v, want %v", alpns, wantALPN)
	}
	if ALPNRelayControlV1 != "connetd-relay-control/1" {
		t.Errorf("ALPNRelayControlV1 = %q", ALPNRelayControlV1)
	}
	if MaxFrame != 4<<20 {
		t.Errorf("MaxFrame = %d", MaxFrame)
	}
}
