package ctladdr

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestSplit(t *testing.T) {
	for in, want := range map[string][]string{
		"":                        nil,
		"a:1":                     {"a:1"},
		"a:1, b:2 ,c:3":           {"a:1", "b:2", "c:3"},
		"a:1,,b:2":                {"a:1", "", "b:2"},
		"[::1]:19190,127.0.0.1:1": {"[::1]:19190", "127.0.0.1:1"},
	} {
		if got := Split(in); !slices.Equal(got, want) {
			t.Errorf("Split(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPick(t *testing.T) {
	ts := []string{"a", "b", "c"}
	for _, c := range []struct {
		last    string
		advance bool
		want    int
	}{
		{"", false, 0},  // first attempt
		{"b", false, 1}, // stays on the one that worked
		{"b", true, 2},  // moves on after a failure
		{"c", true, 0},  // wraps around
		{"x", true, 0},  // no longer listed: start over
	} {
		if got := Pick(ts, c.last, c.advance); got != c.want {
			t.Errorf("Pick(%q, %v) = %d, want %d", c.last, c.advance, got, c.want)
		}
	}
}

func fixed(m map[string][]string) Resolver {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		ips, ok := m[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		var out []netip.Addr
		for _, s := range ips {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
}

func TestRotationOrder(t *testing.T) {
	r := New([]string{"ctl-1:1", "ctl-2:2", "ctl-3:3"}, fixed(map[string][]string{
		"ctl-1": {"10.0.0.1"}, "ctl-2": {"10.0.0.2"}, "ctl-3": {"10.0.0.3"},
	}))
	next := func() string {
		tg, err := r.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return tg.Entry
	}
	if got := next(); got != "ctl-1:1" {
		t.Fatalf("first %s", got)
	}
	r.Succeeded()
	// The session on ctl-1 ends: ctl-2 at once, no backoff.
	if r.Failed() {
		t.Fatal("one failure ended a round")
	}
	if got := next(); got != "ctl-2:2" {
		t.Fatalf("after ctl-1 ended: %s", got)
	}
	if r.Failed() {
		t.Fatal("two failures ended a round of three")
	}
	if got := next(); got != "ctl-3:3" {
		t.Fatalf("after ctl-2 failed: %s", got)
	}
	if !r.Failed() {
		t.Fatal("three failures in a row are a round: back off")
	}
	if got := next(); got != "ctl-1:1" {
		t.Fatalf("after a round: %s", got)
	}
	r.Succeeded()
	// A working one is dialed again when its session is replaced without a
	// failure (Next without Failed).
	if got := next(); got != "ctl-1:1" {
		t.Fatalf("the one that worked: %s", got)
	}
	if !r.Several() {
		t.Fatal("three entries are several")
	}
}

func TestRotationSingleBacksOffEachTime(t *testing.T) {
	r := New([]string{"127.0.0.1:19190"}, nil)
	for range 3 {
		tg, err := r.Next(context.Background())
		if err != nil || tg.Addr.String() != "127.0.0.1:19190" {
			t.Fatalf("%v %v", tg, err)
		}
		if !r.Failed() {
			t.Fatal("a single address is a round by itself")
		}
	}
	if r.Several() {
		t.Fatal("one literal address is not several")
	}
}

func TestExpandSeveralRecords(t *testing.T) {
	ts, err := Expand(context.Background(), []string{"ctl:19190", "gone:1", "[::1]:5"}, fixed(map[string][]string{
		"ctl": {"192.0.2.1", "2001:db8::1"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range ts {
		got = append(got, tg.Entry+"="+tg.Addr.String())
	}
	want := []string{"ctl:19190=192.0.2.1:19190", "ctl:19190=[2001:db8::1]:19190", "[::1]:5=[::1]:5"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := Expand(context.Background(), []string{"gone:1"}, fixed(nil)); err == nil {
		t.Fatal("nothing resolved, no error")
	}
}

// TestExpandLocalhost uses the system resolver: localhost has at least
// 127.0.0.1, and a name with several records is several targets.
func TestExpandLocalhost(t *testing.T) {
	r := New([]string{"localhost:19190"}, nil)
	tg, err := r.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !tg.Addr.Addr().IsLoopback() || tg.Addr.Port() != 19190 || tg.Host() != "localhost" {
		t.Fatalf("localhost resolved to %v", tg)
	}
	ts, _ := Expand(context.Background(), []string{"localhost:1"}, nil)
	if len(ts) > 1 != r.Several() {
		t.Fatalf("%d targets, Several %v", len(ts), r.Several())
	}
	t.Logf("localhost: %d targets", len(ts))
}
