package client

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/portmap"
)

// runPortMapping keeps a mapping of the direct port on the default
// gateway, renewing it at half its lifetime and after network changes, and
// deletes it when ctx ends. The mapped address becomes the first candidate.
func (c *Client) runPortMapping(ctx context.Context) {
	t := c.trav
	port := uint16(c.cfg.DirectConn.LocalAddr().(*net.UDPAddr).Port)
	bo := backoff.New(5*time.Second, 5*time.Minute)
	var cur *portmap.Mapping
	var mapper *portmap.Mapper
	defer func() {
		if cur != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := mapper.Delete(dctx, cur); err != nil {
				c.log.Warn("could not delete port mapping", "mapping", cur.String(), "err", err)
			} else {
				c.log.Info("port mapping deleted", "mapping", cur.String())
			}
		}
	}()
	for ctx.Err() == nil {
		t.mu.Lock()
		gw := t.gateway
		t.mu.Unlock()
		if mapper == nil || mapper.Gateway != gw {
			cur, mapper = nil, &portmap.Mapper{Gateway: gw, Port: port}
		}
		wait := time.Duration(0)
		if !gw.IsValid() {
			wait = time.Minute
		} else {
			mctx, cancel := context.WithTimeout(ctx, 8*time.Second)
			mp, err := mapper.Map(mctx, cur)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if cur != nil {
					c.log.Warn("port mapping lost", "mapping", cur.String(), "err", err)
				} else {
					c.log.Debug("no port mapping", "gateway", gw, "err", err)
				}
				cur, wait = nil, bo.Next()
			} else {
				bo.Reset()
				if cur == nil || cur.External != mp.External {
					c.log.Info("port mapped", "mapping", mp.String())
				}
				cur = mp
				wait = max(mp.Lifetime/2, 30*time.Second)
			}
		}
		t.mu.Lock()
		var ext = cur
		changed := t.mapped.IsValid() != (ext != nil) || (ext != nil && t.mapped != ext.External)
		t.mapped, t.mapProto = netipZero, ""
		if ext != nil {
			t.mapped, t.mapProto = ext.External, ext.Proto
		}
		t.mu.Unlock()
		if changed {
			poke(t.changed)
		}
		select {
		case <-ctx.Done():
		case <-t.gwChanged:
		case <-time.After(wait):
		}
	}
}

var netipZero netip.AddrPort
