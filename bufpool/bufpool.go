// Package bufpool holds the byte buffers that carry a flow's data, in two
// sizes: Small, so that thousands of idle connections cost little, and
// Large for connections that move bulk data. 256 KiB costs a bulk flow a
// quarter of the syscalls and stream writes 64 KiB did (bench: direct
// from ~0.8× to ~0.9× a bare quic-go stream). Proxies and replay buffers
// share the pools, so a buffer one lets go serves the other.
package bufpool

import "sync"

// The two sizes.
const (
	Small = 4 << 10
	Large = 256 << 10
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, Small); return &b }}
	bigPool   = sync.Pool{New: func() any { b := make([]byte, Large); return &b }}
)

// Get returns a buffer of Large bytes if large, else of Small.
func Get(large bool) *[]byte {
	if large {
		return bigPool.Get().(*[]byte)
	}
	return smallPool.Get().(*[]byte)
}

// Put gives back a buffer from Get.
func Put(b *[]byte) {
	if len(*b) == Large {
		bigPool.Put(b)
	} else {
		smallPool.Put(b)
	}
}

// Reader is a read buffer that starts Small and becomes Large after a
// read that filled it: a connection shows it carries bulk data.
type Reader struct{ b *[]byte }

// NewReader returns a Reader holding a Small buffer; Release gives it back.
func NewReader() *Reader { return &Reader{b: Get(false)} }

// Buf is the buffer to read into.
func (r *Reader) Buf() []byte { return *r.b }

// Read notes that a read into Buf returned n bytes.
func (r *Reader) Read(n int) {
	if n == len(*r.b) && n == Small {
		Put(r.b)
		r.b = Get(true)
	}
}

// Release gives the buffer back.
func (r *Reader) Release() { Put(r.b) }
