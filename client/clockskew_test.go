package client

import (
	"testing"
	"time"
)

func TestClockSkewIsMeasuredFromTheRoundTripMidpoint(t *testing.T) {
	sent := time.UnixMilli(1_700_000_000_000)
	recv := sent.Add(200 * time.Millisecond)
	for _, tc := range []struct {
		server int64
		want   time.Duration
	}{
		{sent.UnixMilli() + 100, 0},                         // stamped at our midpoint: in sync
		{sent.UnixMilli() + 100 + 45_000, 45 * time.Second}, // control ahead
		{sent.UnixMilli() + 100 - 1_500, -1500 * time.Millisecond},
	} {
		got, ok := clockSkew(tc.server, sent, recv)
		if !ok || got != tc.want {
			t.Errorf("server %d: skew %v, %v; want %v", tc.server, got, ok, tc.want)
		}
	}
	if _, ok := clockSkew(0, sent, recv); ok {
		t.Errorf("a welcome without time gave a skew")
	}
}
