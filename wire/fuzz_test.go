package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read: it must never panic, must refuse
// anything that is not a well-formed frame, must agree with every link's
// set, and whatever it accepts must survive Write and Read unchanged.
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
	f.Add(frame(`{"relay_auth_delta":{"reset":true,"set":[{"endpoint":"e","sources":null,"destinations":[]}],"more":true}}`))
	f.Add(frame(`{"relay_auth_delta":{"remove":["e",""],"extend":[{"endpoint":"e","sources":["000102030405060708090a0b0c0d0e0f"]}]}}`))
	f.Add(frame(`{"relay_auth_delta":{"remove":[],"set":[],"extend":[],"more":false}}`))
	f.Add(frame(`{"relay_auth":{"endpoints":[]}}`)) // the kind of relay protocol /1, unknown now
	f.Add(frame(` { "connect" : { "from" : "x" } } `))
	links := []Set{ClientToControl, ControlToClient, RelayToControl, ControlToRelay, RelayToClient, PeerStream, FlowStream, ResumeStream}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Read(bytes.NewReader(data), everything)
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
		for _, set := range links {
			lm, lerr := Read(bytes.NewReader(data), set)
			switch {
			case err != nil && lerr == nil:
				t.Fatalf("%s accepted what no link accepts: %v", set, err)
			case err == nil && set.Has(m) != (lerr == nil):
				t.Fatalf("%s and kind %s disagree: %v", set, Kind(m), lerr)
			case lerr == nil && !reflect.DeepEqual(lm, m):
				t.Fatalf("%s decoded differently: %+v vs %+v", set, lm, m)
			}
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
		var env map[string]json.RawMessage
		if json.Unmarshal(body, &env) != nil || len(env) != 1 || env[Kind(m)] == nil {
			t.Fatalf("accepted %q as %s", body, Kind(m))
		}
		var buf bytes.Buffer
		if err := Write(&buf, m); err != nil {
			// JSON escaping (invalid UTF-8 becomes \ufffd) can make the
			// re-encoding longer than the input; only that may fail.
			if enc, _ := json.Marshal(m); errors.Is(err, ErrFrameTooLarge) && len(enc) > MaxFrame-32 {
				return
			}
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		again, err := Read(&buf, everything)
		if err != nil {
			t.Fatalf("re-read %q: %v", buf.Bytes(), err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", again, m)
		}
	})
}
