package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/connetd/connetd/identity"
)

func TestRelayFrameLayout(t *testing.T) {
	if RelayFrameData != 0x01 || RelayFrameHeader != 17 {
		t.Fatalf("RelayFrameData = %#x, RelayFrameHeader = %d; want 0x01, 17", RelayFrameData, RelayFrameHeader)
	}
	if RelayFrameData&0x40 != 0 {
		t.Fatal("the frame type has the QUIC fixed bit set")
	}
}

func TestParseRelayFrame(t *testing.T) {
	id := testID(0xa0)
	b := append([]byte{0x01}, id[:]...)
	b = append(b, 0xc3, 'q', 'u', 'i', 'c')
	got, payload, err := ParseRelayFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != id || string(payload) != "\xc3quic" {
		t.Fatalf("ParseRelayFrame = %s, %q", got, payload)
	}
	if &payload[0] != &b[17] {
		t.Fatal("payload does not alias the frame")
	}
	if !IsRelayFrame(b) {
		t.Fatal("IsRelayFrame = false for a frame")
	}
}

func TestParseRelayFrameRefuses(t *testing.T) {
	id := testID(1)
	header := append([]byte{0x01}, id[:]...)
	for name, b := range map[string][]byte{
		"nil":               nil,
		"type only":         {0x01},
		"header, no packet": header,
		"short header":      header[:10],
		"type 0x00":         append([]byte{0x00}, append(id[:], 1)...),
		"type 0x02":         append([]byte{0x02}, append(id[:], 1)...),
		"QUIC long header":  append([]byte{0xc0}, append(id[:], 1)...),
		"QUIC short header": append([]byte{0x41}, append(id[:], 1)...),
	} {
		if _, _, err := ParseRelayFrame(b); !errors.Is(err, ErrNotRelayFrame) {
			t.Errorf("%s: err = %v, want ErrNotRelayFrame", name, err)
		}
		if IsRelayFrame(b) {
			t.Errorf("%s: IsRelayFrame = true", name)
		}
	}
}

func TestPutRelayHeader(t *testing.T) {
	id := testID(0x10)
	b := bytes.Repeat([]byte{0xee}, 20)
	PutRelayHeader(b, id)
	want := append(append([]byte{0x01}, id[:]...), 0xee, 0xee, 0xee)
	if !bytes.Equal(b, want) {
		t.Fatalf("got % x\nwant % x", b, want)
	}
	got, payload, err := ParseRelayFrame(b)
	if err != nil || got != id || !bytes.Equal(payload, []byte{0xee, 0xee, 0xee}) {
		t.Fatalf("ParseRelayFrame(PutRelayHeader) = %s, % x, %v", got, payload, err)
	}
}

// FuzzRelayFrame checks ParseRelayFrame and IsRelayFrame against the
// layout: a frame is 0x01, a 16-byte ID and at least one byte of packet.
func FuzzRelayFrame(f *testing.F) {
	id := testID(7)
	f.Add(append(append([]byte{0x01}, id[:]...), 0x40, 1, 2, 3))
	f.Add(append([]byte{0x01}, id[:]...))
	f.Add([]byte{})
	f.Add([]byte{0x01})
	f.Add([]byte{0xc0, 0, 0, 0, 1})
	f.Add(bytes.Repeat([]byte{0x01}, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := append([]byte(nil), b...)
		got, payload, err := ParseRelayFrame(b)
		want := len(b) > 17 && b[0] == 0x01
		if IsRelayFrame(b) != want {
			t.Fatalf("IsRelayFrame = %v, want %v", !want, want)
		}
		if !want {
			if !errors.Is(err, ErrNotRelayFrame) || payload != nil || !got.IsZero() {
				t.Fatalf("non-frame parsed: %s, %x, %v", got, payload, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[:], b[1:17]) || !bytes.Equal(payload, b[17:]) {
			t.Fatalf("id %s payload %x from % x", got, payload, b)
		}
		if !bytes.Equal(b, orig) {
			t.Fatal("ParseRelayFrame modified its input")
		}
		var rebuilt = make([]byte, RelayFrameHeader+len(payload))
		PutRelayHeader(rebuilt, identity.ID(got))
		copy(rebuilt[RelayFrameHeader:], payload)
		if !bytes.Equal(rebuilt, b) {
			t.Fatalf("rebuilt % x, want % x", rebuilt, b)
		}
	})
}
