package etcdkv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Event is one change to a watched key.
type Event struct {
	Type      string // "PUT" or "DELETE"
	KV        KV     // for a DELETE, only Key and ModRevision (the deletion's)
	PrevValue []byte // the value before this change, when etcd still had it
}

// WatchResponse is what a watch delivers. With Err nil, everything up to
// Revision has been delivered: Events, or none at all when this is a
// progress notification proving the watch is alive though quiet. With Err
// set, the watch lost its stream (and is reconnecting, from where it left
// off) or, when Err is ErrCompacted, has ended.
type WatchResponse struct {
	Events   []Event
	Revision int64
	Err      error
}

// Watch streams the changes to keys under prefix from revision fromRev
// (0: from now) until ctx ends, then closes the channel. It reconnects by
// itself, to the next endpoint and from the revision after the last it
// delivered, reporting each lost stream as a response with Err. When the
// history it needs is compacted away it sends an error that is
// ErrCompacted (a *CompactedError, with the compact revision) and ends.
//
// A member that loses its leader ends the watch (the hasleader metadata),
// so a watch on a member cut off from the quorum reports an error within a
// few election timeouts and moves on instead of waiting silently.
func (c *Client) Watch(ctx context.Context, prefix string, fromRev int64) <-chan WatchResponse {
	ch := make(chan WatchResponse, 16)
	go c.watchLoop(ctx, prefix, fromRev, ch)
	return ch
}

func (c *Client) watchLoop(ctx context.Context, prefix string, fromRev int64, ch chan<- WatchResponse) {
	defer close(ch)
	w := &watcher{c: c, ctx: ctx, prefix: prefix, next: fromRev, ch: ch}
	idx := c.current()
	var delay time.Duration
	for {
		ep := c.eps[idx]
		established, err := w.once(ep)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrCompacted) {
			w.send(WatchResponse{Err: fmt.Errorf("etcd watch %s: %w", prefix, err)})
			return
		}
		if !w.send(WatchResponse{Err: fmt.Errorf("etcd watch %s on %s: %w", prefix, ep, err)}) {
			return
		}
		idx = (idx + 1) % len(c.eps)
		switch {
		case established:
			delay = 0
		case delay == 0:
			delay = 50 * time.Millisecond
		default:
			delay = min(2*delay, 2*time.Second)
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

type watcher struct {
	c      *Client
	ctx    context.Context
	prefix string
	next   int64 // revision to resume from; 0 until the first stream says where "now" is
	ch     chan<- WatchResponse
}

func (w *watcher) send(r WatchResponse) bool {
	select {
	case w.ch <- r:
		return true
	case <-w.ctx.Done():
		return false
	}
}

// once runs one watch stream on ep until it fails; established says it
// got as far as etcd creating the watch.
func (w *watcher) once(ep string) (established bool, err error) {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	// A member that accepts the connection but never creates the watch
	// must not hold the watch forever.
	stall := time.AfterFunc(2*w.c.timeout, cancel)
	defer stall.Stop()

	r := rangeOf(w.prefix, true)
	create := map[string]any{
		"key":             r.Key,
		"range_end":       r.RangeEnd,
		"progress_notify": true,
		"prev_kv":         true,
	}
	if w.next > 0 {
		create["start_revision"] = i64(w.next)
	}
	body, err := json.Marshal(map[string]any{"create_request": create})
	if err != nil {
		return false, err
	}
	// The request body holds one request and ends; etcd keeps the watch
	// open after its receiving side sees the end, until we hang up.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+"/v3/watch", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	setHeaders(req)
	resp, err := w.c.hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, err := readBounded(resp.Body)
		if err != nil {
			return false, err
		}
		return false, decodeError(resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxBody)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		m, err := decodeWatch(line)
		if err != nil {
			return established, err
		}
		switch {
		case m.CompactRevision > 0:
			return established, &CompactedError{CompactRevision: m.CompactRevision}
		case m.Canceled:
			return established, fmt.Errorf("watch canceled by etcd: %q", m.CancelReason)
		case m.Created:
			established = true
			stall.Stop()
			if w.next == 0 {
				w.next = m.Revision + 1
			}
		case len(m.Events) > 0:
			w.next = m.Events[len(m.Events)-1].KV.ModRevision + 1
			if !w.send(WatchResponse{Events: m.Events, Revision: m.Revision}) {
				return established, w.ctx.Err()
			}
		default:
			// A progress notification: etcd sends it only when the
			// watch has caught up, so all up to Revision is delivered.
			if m.Revision >= w.next {
				w.next = m.Revision + 1
			}
			if !w.send(WatchResponse{Revision: m.Revision}) {
				return established, w.ctx.Err()
			}
		}
	}
	if err := sc.Err(); err != nil {
		return established, err
	}
	return established, errors.New("watch stream ended")
}
