package traversal

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/portmap"
)

// runPortMapping keeps a mapping of the direct port on the default
// gateway, renewing it at half its lifetime and after network changes, and
// deletes it when ctx ends. The mapped address becomes the first candidate.
func (t *Traversal) runPortMapping(ctx context.Context) {
	port := uint16(t.cfg.Conn.LocalAddr().(*net.UDPAddr).Port)
	bo := backoff.New(5*time.Second, 5*time.Minute)
	var cur *portmap.Mapping
	var mapper *portmap.Mapper
	defer func() {
		if cur == nil {
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := mapper.Delete(dctx, cur); err != nil {
			t.log.Warn("could not delete port mapping", "mapping", cur.String(), "err", err)
		} else {
			t.log.Info("port mapping deleted", "mapping", cur.String())
		}
	}()
	wait := time.NewTimer(0)
	defer wait.Stop()
	for ctx.Err() == nil {
		t.mu.Lock()
		gw := t.gateway
		t.mu.Unlock()
		if mapper == nil || mapper.Gateway != gw {
			cur, mapper = nil, &portmap.Mapper{Gateway: gw, Port: port}
		}
		next := time.Minute
		if gw.IsValid() {
			mctx, cancel := context.WithTimeout(ctx, 8*time.Second)
			mp, err := mapper.Map(mctx, cur)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if cur != nil {
					t.log.Warn("port mapping lost", msgid.PortMappingLost.Attr(), "mapping", cur.String(), "err", err)
				} else {
					t.log.Debug("no port mapping", "gateway", gw, "err", err)
				}
				cur, next = nil, bo.Next()
			} else {
				bo.Reset()
				if cur == nil || cur.External != mp.External {
					t.log.Info("port mapped", msgid.PortMapped.Attr(), "mapping", mp.String())
				}
				cur, next = mp, max(mp.Lifetime/2, 30*time.Second)
			}
		}
		if t.setMapping(cur) {
			t.cfg.Changed()
			poke(t.recheck) // report the new candidate
		}
		wait.Reset(next)
		select {
		case <-ctx.Done():
		case <-t.gwChanged:
		case <-wait.C:
		}
	}
}

// setMapping records the mapping in force (nil: none) and reports whether
// it changed.
func (t *Traversal) setMapping(m *portmap.Mapping) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m == nil {
		changed := t.mapped.IsValid()
		t.mapped, t.mapProto = netip.AddrPort{}, ""
		return changed
	}
	changed := t.mapped != m.External
	t.mapped, t.mapProto = m.External, m.Proto
	return changed
}
