package relay

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/internal/ctladdr"
	"github.com/connetd/connetd/wire"
)

// ControlLink is a link to control and where it goes, for the status.
type ControlLink struct {
	io.ReadWriteCloser
	Addr string // the control address dialed
	Node string // the control node's name, from its welcome
}

// TargetDialer opens a link to one control address of a list; several
// says that there are others to fail over to.
type TargetDialer func(ctx context.Context, t ctladdr.Target, several bool) (ControlLink, error)

// RunControlList is RunControl over a list of control addresses (see
// ctladdr.Rotation): it stays with the address that worked last, goes on
// to the next at once when a dial fails or a link ends, and backs off only
// after a whole round failed. While it moves, the last authorization table
// stays in force, so relayed flows go on. It returns nil when ctx ends.
func (s *Server) RunControlList(ctx context.Context, addrs []string, resolve ctladdr.Resolver, dial TargetDialer) error {
	rot := ctladdr.New(addrs, resolve)
	bo := backoff.New(100*time.Millisecond, time.Second)
	for ctx.Err() == nil {
		t, err := rot.Next(ctx)
		up := false
		if err == nil {
			var l ControlLink
			if l, err = dial(ctx, t, rot.Several()); err == nil {
				up = true
				rot.Succeeded()
				bo.Reset()
				s.setControl(l.Addr, l.Node)
				s.log.Info("relay connected to control", "server", t.Entry, "addr", l.Addr, "node", l.Node)
				err = s.serveControl(ctx, l)
				s.setControl("", "")
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if !rot.Failed() {
			next, _ := rot.Peek()
			s.log.Warn("relay failing over to the next control", "server", t.Entry, "next", next.Entry+" ("+next.Addr.String()+")", "err", err)
			continue
		}
		var werr *wire.Error
		switch {
		case errors.As(err, &werr):
			s.log.Error("control refused relay", "err", err)
		case up:
			s.log.Warn("relay lost control", "err", err)
			continue // as RunControl: a link that was up is redialed at once
		default:
			s.log.Warn("relay cannot reach control", "err", err)
		}
		if !bo.Sleep(ctx) {
			return nil
		}
	}
	return nil
}

// setControl records the control the relay is linked to ("" while none).
func (s *Server) setControl(addr, node string) {
	s.ctlMu.Lock()
	s.ctlAddr, s.ctlNode = addr, node
	s.ctlMu.Unlock()
	s.changed.Notify()
}

func (s *Server) control() (addr, node string) {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	return s.ctlAddr, s.ctlNode
}
