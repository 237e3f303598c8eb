package wire

import (
	"bytes"
	"testing"
)

func TestFlowAckRoundTrip(t *testing.T) {
	for _, a := range []FlowAck{
		{Flow: 1, Received: 0},
		{Flow: ^uint64(0), Received: 1 << 62, FIN: true},
		{Flow: 77, Received: 12345, Opener: true, FIN: true},
	} {
		b := a.Append(nil)
		if len(b) != FlowAckSize {
			t.Fatalf("%+v encodes to %d bytes", a, len(b))
		}
		got, err := ParseFlowAck(b)
		if err != nil || got != a {
			t.Fatalf("%+v decoded as %+v, %v", a, got, err)
		}
	}
}

func TestFlowAckRefusesUnknownFlagsAndSizes(t *testing.T) {
	b := FlowAck{Flow: 1}.Append(nil)
	b[16] = 0x80
	if _, err := ParseFlowAck(b); err == nil {
		t.Fatal("unknown flag accepted")
	}
	if _, err := ParseFlowAck(b[:16]); err == nil {
		t.Fatal("short record accepted")
	}
	if err := ReadAckStreamType(bytes.NewReader([]byte{'X'})); err == nil {
		t.Fatal("stream of another type accepted")
	}
	if err := ReadAckStreamType(bytes.NewReader(nil)); err == nil {
		t.Fatal("empty stream accepted")
	}
}

func FuzzParseFlowAck(f *testing.F) {
	f.Add(FlowAck{Flow: 9, Received: 99, FIN: true}.Append(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseFlowAck(b)
		if err != nil {
			return
		}
		if !bytes.Equal(a.Append(nil), b) {
			t.Fatalf("%x decoded as %+v, which encodes differently", b, a)
		}
	})
}
