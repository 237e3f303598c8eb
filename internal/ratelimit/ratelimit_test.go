package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestEachSourceGetsItsBurstThenItsRate(t *testing.T) {
	l := New(10, 5, 100)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	now := time.Unix(1000, 0)
	allowed := 0
	for range 50 {
		if l.Allow(a, now) {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("a burst of 50 at once: %d allowed, want 5", allowed)
	}
	if !l.Allow(b, now) {
		t.Fatal("another source was refused because of the first")
	}
	// 10 per second: after 0.5 s, 5 more.
	now = now.Add(500 * time.Millisecond)
	allowed = 0
	for range 50 {
		if l.Allow(a, now) {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("after 0.5 s: %d allowed, want 5", allowed)
	}
}

func TestTableStaysBoundedUnderManySources(t *testing.T) {
	l := New(10, 5, 8)
	now := time.Unix(1000, 0)
	for i := range 1000 {
		l.Allow(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), now)
	}
	if n := len(l.buckets); n > 8 {
		t.Fatalf("%d sources tracked, want at most 8", n)
	}
	// Once their buckets have refilled, old sources make room again.
	now = now.Add(time.Second)
	if !l.Allow(netip.MustParseAddr("203.0.113.9"), now) {
		t.Fatal("a new source was refused after the table's sources went quiet")
	}
}

func TestKeysOfAnyTypeHaveTheirOwnBuckets(t *testing.T) {
	l := NewKeyed[string](1, 2, 10)
	now := time.Unix(1000, 0)
	for _, k := range []string{"a", "a", "b"} {
		if !l.Allow(k, now) {
			t.Fatalf("%s refused within its burst", k)
		}
	}
	if l.Allow("a", now) {
		t.Fatal("a allowed beyond its burst")
	}
	if !l.Allow("a", now.Add(time.Second)) {
		t.Fatal("a refused after a second at 1/s")
	}
}

func TestMappedAddressesShareTheirIPv4Bucket(t *testing.T) {
	l := New(1, 1, 10)
	now := time.Unix(1000, 0)
	if !l.Allow(netip.MustParseAddr("192.0.2.1"), now) {
		t.Fatal("first event refused")
	}
	if l.Allow(netip.MustParseAddr("::ffff:192.0.2.1"), now) {
		t.Fatal("the IPv4-mapped form of an address got a bucket of its own")
	}
}
