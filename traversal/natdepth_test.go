package traversal

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A datagram to one of this host's own addresses is delivered at the
// first TTL, and the kernel answers "port unreachable" from that address:
// the depth of a "NAT" that is this host is 1. The routers of the NAT lab
// show the deeper cases (natlab: CGNAT rows).
func TestNATDepthOfOwnAddressIsOneHop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := natDepth(ctx, netip.MustParseAddr("127.0.0.1"))
	if err != nil || got != 1 {
		t.Fatalf("natDepth(127.0.0.1) = %d, %v; want 1", got, err)
	}
}

func TestParseRecvErr(t *testing.T) {
	msg := func(origin, typ, code uint8, from [4]byte) []byte {
		data := make([]byte, 16+16)
		data[4], data[5], data[6] = origin, typ, code
		binary.NativeEndian.PutUint16(data[16:], unix.AF_INET)
		copy(data[20:24], from[:])
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_RECVERR
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	ans, err := parseRecvErr(msg(unix.SO_EE_ORIGIN_ICMP, icmpTimeExceeded, 0, [4]byte{10, 1, 0, 1}))
	if err != nil || !ans.ok || ans.typ != icmpTimeExceeded || ans.from != netip.MustParseAddr("10.1.0.1") {
		t.Fatalf("time exceeded: %+v, %v", ans, err)
	}
	if _, err := parseRecvErr(msg(unix.SO_EE_ORIGIN_LOCAL, 0, 0, [4]byte{})); err == nil {
		t.Fatal("a local error taken for an ICMP answer")
	}
	for _, junk := range [][]byte{nil, {1, 2, 3}, make([]byte, 40)} {
		if ans, err := parseRecvErr(junk); err == nil && ans.ok {
			t.Fatalf("junk %x parsed as %+v", junk, ans)
		}
	}
}
