package client

import "sync"

// pathKey is one endpoint of ours and the path its connections to a peer
// took; weAreSource tells a source from a destination of the same name.
type pathKey struct {
	endpoint    string
	weAreSource bool
	path        path
}

// pathTraffic counts a peer's bytes by endpoint and path, so metrics can
// tell relayed bytes from direct ones. A counter is looked up once per
// proxied connection, not per write, and is never removed while the peer
// lives: counters must not go backwards within a scrape series.
type pathTraffic struct {
	mu sync.Mutex
	m  map[pathKey]*traffic
}

func (t *pathTraffic) get(k pathKey) *traffic {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[pathKey]*traffic{}
	}
	c := t.m[k]
	if c == nil {
		c = new(traffic)
		t.m[k] = c
	}
	return c
}

// PathBytes is the bytes a peer exchanged for one endpoint over one path.
type PathBytes struct {
	Path     string `json:"path"` // direct or relay
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
}

// status lists the counters of one endpoint, direct before relay.
func (t *pathTraffic) status(endpoint string, weAreSource bool) []PathBytes {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []PathBytes
	for _, pa := range []path{pathDirect, pathRelay} {
		if c := t.m[pathKey{endpoint, weAreSource, pa}]; c != nil {
			out = append(out, PathBytes{Path: pa.String(), BytesIn: c.in.Load(), BytesOut: c.out.Load()})
		}
	}
	return out
}
