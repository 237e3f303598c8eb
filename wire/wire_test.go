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

// sampleMessages has one fully populated message of every type.
func sampleMessages() map[string]*Message {
	cert := []byte{0x30, 0x82, 0x01, 0x00, 0xff, 0x00, 0x7f}
	return map[string]*Message{
		"hello":      {Hello: &Hello{Token: "tok", Version: "v1.2.3", Direct: []string{"192.0.2.1:19192", "[2001:db8::1]:19192"}, NAT: NATEasy, Punch: true}},
		"welcome":    {Welcome: &Welcome{Observed: "198.51.100.7:40000"}},
		"error":      {Error: &Error{Code: CodeForbidden, Message: "no", Endpoint: "web", Role: "source"}},
		"announce":   {Announce: &Announce{Endpoint: "web", Role: "destination", Route: RouteRelay}},
		"withdraw":   {Withdraw: &Withdraw{Endpoint: "web", Role: "source"}},
		"candidates": {Candidates: &Candidates{Direct: []string{"192.0.2.1:1", "192.0.2.2:2"}, NAT: NATHard}},
		"peers": {Peers: &Peers{Endpoint: "web", Role: "source", Peers: []Peer{
			{ID: testID(1), Cert: cert, Direct: []string{"192.0.2.9:9"}, Route: RouteAny, NAT: NATNone},
			{ID: testID(2), Cert: []byte{}, Direct: []string{}, Route: RouteDirect},
		}}},
		"relays":      {Relays: &Relays{Relays: []Relay{{ID: testID(3), Addr: "relay.example:19191", Cert: cert}}}},
		"relay_hello": {RelayHello: &RelayHello{Token: "relay-tok", Addr: "relay.example:19191"}},
		"relay_auth": {RelayAuth: &RelayAuth{Endpoints: []RelayEndpoint{
			{Endpoint: "web", Sources: []identity.ID{testID(4)}, Destinations: []identity.ID{testID(5), testID(6)}},
		}}},
		"connect":       {Connect: &Connect{Endpoint: "web", From: "127.0.0.1:5555"}},
		"punch_request": {PunchRequest: &PunchRequest{Peer: testID(7), Spray: PunchSprayDestination}},
		"punch":         {Punch: &Punch{Nonce: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Peer: testID(8), Direct: []string{"198.51.100.7:4000"}, NAT: NATHard, Dial: true, Mode: PunchModeRandom}},
		"punch_ready":   {PunchReady: &PunchReady{Nonce: []byte{8, 7, 6, 5, 4, 3, 2, 1}}},
		"punch_go":      {PunchGo: &PunchGo{Nonce: []byte{8, 7, 6, 5, 4, 3, 2, 1}}},
	}
}

func TestRoundTripEveryMessage(t *testing.T) {
	msgs := sampleMessages()
	if len(msgs) != reflect.TypeOf(Message{}).NumField() {
		t.Fatalf("sampleMessages covers %d message types, Message has %d members", len(msgs), reflect.TypeOf(Message{}).NumField())
	}
	for name, m := range msgs {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, m); err != nil {
				t.Fatal(err)
			}
			raw := buf.Bytes()
			if n := binary.BigEndian.Uint32(raw); int(n) != len(raw)-4 {
				t.Fatalf("length prefix %d, body has %d bytes", n, len(raw)-4)
			}
			// The envelope key is the member's JSON name.
			var env map[string]json.RawMessage
			if err := json.Unmarshal(raw[4:], &env); err != nil {
				t.Fatalf("body is not a JSON object: %v", err)
			}
			if _, ok := env[name]; !ok || len(env) != 1 {
				t.Fatalf("envelope keys %v, want exactly %q", keys(env), name)
			}
			got, err := Read(&buf)
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

// The exact bytes of two messages, as another implementation must produce
// and accept them.
func TestExactEncoding(t *testing.T) {
	cases := []struct {
		m    *Message
		body string
	}{
		{&Message{Hello: &Hello{Token: "t", Version: "1", Direct: []string{"192.0.2.1:5"}}},
			`{"hello":{"token":"t","version":"1","direct":["192.0.2.1:5"]}}`},
		{&Message{Connect: &Connect{Endpoint: "web", From: "127.0.0.1:1"}},
			`{"connect":{"endpoint":"web","from":"127.0.0.1:1"}}`},
		{&Message{Punch: &Punch{Nonce: []byte{0, 1, 2, 3, 4, 5, 6, 7}, Peer: testID(0), Direct: []string{"192.0.2.1:5"}, NAT: NATEasy}},
			`{"punch":{"nonce":"AAECAwQFBgc=","peer":"000102030405060708090a0b0c0d0e0f","direct":["192.0.2.1:5"],"nat":"easy"}}`},
		{&Message{PunchGo: &PunchGo{Nonce: []byte{0, 1, 2, 3, 4, 5, 6, 7}}},
			`{"punch_go":{"nonce":"AAECAwQFBgc="}}`},
		{&Message{Error: &Error{Code: CodeUnauthorized, Message: "invalid token"}},
			`{"error":{"code":"unauthorized","message":"invalid token"}}`},
		{&Message{Relays: &Relays{Relays: []Relay{{ID: testID(0), Addr: "r:1", Cert: []byte{1, 2, 3}}}}},
			`{"relays":{"relays":[{"id":"000102030405060708090a0b0c0d0e0f","addr":"r:1","cert":"AQID"}]}}`},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		if err := Write(&buf, c.m); err != nil {
			t.Fatal(err)
		}
		if want := frame(c.body); !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("Write:\n got %q\nwant %q", buf.Bytes(), want)
		}
		got, err := Read(bytes.NewReader(frame(c.body)))
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
	order := []string{"hello", "welcome", "announce", "peers", "connect"}
	msgs := sampleMessages()
	for _, k := range order {
		if err := Write(&buf, msgs[k]); err != nil {
			t.Fatal(err)
		}
	}
	buf.WriteString("raw bytes after the last message")
	for _, k := range order[:len(order)-1] {
		m, err := Read(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m, msgs[k]) {
			t.Fatalf("got %+v, want %s", m, k)
		}
	}
	// A connect message is followed by raw stream bytes: Read must not
	// consume any of them.
	if m, err := Read(&buf); err != nil || m.Connect == nil {
		t.Fatalf("Read = %+v, %v; want connect", m, err)
	}
	if rest := buf.String(); rest != "raw bytes after the last message" {
		t.Fatalf("bytes after connect = %q", rest)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	m, err := Read(bytes.NewReader(frame(`{"hello":{"token":"t","future":{"x":1}},"future_member":{"y":2}}`)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Hello == nil || m.Hello.Token != "t" {
		t.Fatalf("got %+v", m)
	}
}

func TestEmptyMessageRefused(t *testing.T) {
	for _, body := range []string{`{}`, `null`, `{"hello":null}`, `{"only_unknown":{}}`} {
		_, err := Read(bytes.NewReader(frame(body)))
		if !errors.Is(err, ErrEmptyMessage) {
			t.Errorf("%s: err = %v, want ErrEmptyMessage", body, err)
		}
	}
}

func TestMultiMemberMessageRefused(t *testing.T) {
	for _, body := range []string{
		`{"hello":{},"welcome":{}}`,
		`{"connect":{},"relay_auth":{}}`,
		`{"hello":{},"welcome":{},"error":{},"announce":{},"withdraw":{},"candidates":{},"peers":{},"relays":{},"relay_hello":{},"relay_auth":{},"connect":{}}`,
	} {
		m, err := Read(bytes.NewReader(frame(body)))
		if err == nil || errors.Is(err, ErrEmptyMessage) {
			t.Errorf("%s: Read = %+v, %v; want a multi-member error", body, m, err)
		}
	}
}

func TestGarbageRefused(t *testing.T) {
	for _, body := range []string{``, `{`, `[]`, `"hello"`, `{"hello":[]}`, `{"hello":{"token":5}}`,
		`{"peers":{"peers":[{"id":"zz"}]}}`, `{"relay_auth":{"endpoints":[{"sources":["0011"]}]}}`, `{"hello":{}} x`} {
		if m, err := Read(bytes.NewReader(frame(body))); err == nil {
			t.Errorf("%q decoded to %+v", body, m)
		}
	}
}

func TestOversizedFrameRefusedWithoutAllocating(t *testing.T) {
	for _, n := range []uint32{MaxFrame + 1, 1 << 31, 0xffffffff} {
		hdr := binary.BigEndian.AppendUint32(nil, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range 8 {
			_, err := Read(bytes.NewReader(hdr))
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
	m, err := Read(bytes.NewReader(frame(body)))
	if err != nil || m.Welcome == nil || m.Welcome.Observed != "x" {
		t.Fatalf("frame of exactly MaxFrame bytes: %+v, %v", m, err)
	}
}

func TestWriteRefusesOversized(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, &Message{Hello: &Hello{Token: strings.Repeat("a", MaxFrame)}})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("Write wrote %d bytes of a refused message", buf.Len())
	}
}

func TestTruncated(t *testing.T) {
	if _, err := Read(bytes.NewReader(nil)); err != io.EOF {
		t.Errorf("empty stream: err = %v, want io.EOF (a clean end between messages)", err)
	}
	if _, err := Read(bytes.NewReader([]byte{0, 0})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("half a length prefix: err = %v, want io.ErrUnexpectedEOF", err)
	}
	full := frame(`{"welcome":{"observed":"192.0.2.1:1"}}`)
	for _, cut := range []int{4, 5, len(full) - 1} {
		if _, err := Read(bytes.NewReader(full[:cut])); !errors.Is(err, io.ErrUnexpectedEOF) {
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
		ConnNormal, ConnUnauthorized, ConnShutdown, ConnProtocol, ConnReplaced}
	want := []uint64{0x10, 0x11, 0x12, 0x13, 0, 1, 2, 3, 4}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("codes %v, want %v", got, want)
	}
	alpns := []string{ALPNClientControl, ALPNRelayControl, ALPNClientRelay, ALPNPeer}
	wantALPN := []string{"connetd-client-control/1", "connetd-relay-control/1", "connetd-client-relay/1", "connetd-peer/1"}
	if !reflect.DeepEqual(alpns, wantALPN) {
		t.Errorf("ALPNs %v, want %v", alpns, wantALPN)
	}
	if MaxFrame != 4<<20 {
		t.Errorf("MaxFrame = %d", MaxFrame)
	}
}

// FuzzRead feeds arbitrary bytes to Read: it must never panic, must refuse
// anything that is not a well-formed frame, and whatever it accepts must
// survive Write and Read unchanged.
func FuzzRead(f *testing.F) {
	for _, m := range sampleMessages() {
		var buf bytes.Buffer
		if err := Write(&buf, m); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0})
	f.Add(binary.BigEndian.AppendUint32(nil, MaxFrame+1))
	f.Add(frame(`{}`))
	f.Add(frame(`{"hello":{},"welcome":{}}`))
	f.Add(frame(`{"HELLO":{"Token":"x"},"unknown":[1,2]}`))
	f.Add(frame(`{"peers":{"peers":[{"id":"000102030405060708090A0B0C0D0E0F","cert":"","direct":null}]}}`))
	f.Add(frame("{\"welcome\":{\"observed\":\"\xff\\ud800<>&\"}}"))
	f.Add(frame(`{"relay_auth":{"endpoints":[{"endpoint":"e","sources":null,"destinations":[]}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Read(bytes.NewReader(data))
		if len(data) < 4 {
			if err == nil {
				t.Fatalf("accepted %d bytes, shorter than a length prefix", len(data))
			}
			return
		}
		n := binary.BigEndian.Uint32(data)
		switch {
		case n > MaxFrame:
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("length %d: err = %v, want ErrFrameTooLarge", n, err)
			}
			return
		case uint64(n) > uint64(len(data)-4):
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("length %d with %d body bytes: err = %v", n, len(data)-4, err)
			}
			return
		}
		body := data[4 : 4+n]
		if dm, derr := Decode(body); (derr == nil) != (err == nil) || !reflect.DeepEqual(dm, m) {
			t.Fatalf("Read and Decode disagree: %+v, %v vs %+v, %v", m, err, dm, derr)
		}
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a message %+v", err, m)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if m.members() != 1 {
			t.Fatalf("accepted a message with %d members", m.members())
		}
		var buf bytes.Buffer
		if err := Write(&buf, m); err != nil {
			// JSON escaping (<, >, & and invalid UTF-8) can make the
			// re-encoding longer than the input; only that may fail.
			if enc, _ := json.Marshal(m); errors.Is(err, ErrFrameTooLarge) && len(enc) > MaxFrame {
				return
			}
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		again, err := Read(&buf)
		if err != nil {
			t.Fatalf("re-read %q: %v", buf.Bytes(), err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", again, m)
		}
	})
}
