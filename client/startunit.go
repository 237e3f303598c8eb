package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/connetd/connetd/backoff"
	"github.com/connetd/connetd/internal/msgid"
	"github.com/connetd/connetd/wire"
)

// Units starts and stops systemd units: the daemon's implementation calls
// org.freedesktop.systemd1.Manager on the system bus. StartUnit and
// StopUnit return once systemd finished the job (or ctx ended).
type Units interface {
	StartUnit(ctx context.Context, name string) error
	StopUnit(ctx context.Context, name string) error
}

// unitStartWait bounds a start: the unit's job and then the polling of the
// service's address until it accepts.
const unitStartWait = 15 * time.Second

// unitStopWait bounds the stop of an idle unit.
const unitStopWait = 30 * time.Second

// onDemand is a destination whose service is a systemd unit that connetd
// starts when a connection finds the service's address refusing (and not
// before: a dial that succeeds costs nothing, where asking systemd about
// the unit on every connection would), and stops after idle without open
// connections, once a connection has reached the service.
type onDemand struct {
	unit  string
	idle  time.Duration // 0: never stopped
	units Units
	log   *slog.Logger
	wait  time.Duration // unitStartWait; tests shorten it
	ctx   context.Context
	stop  context.CancelFunc
	// stopped runs after an idle stop: an http(s) destination drops its
	// pooled connections to the service that went away.
	stopped func()

	mu       sync.Mutex
	active   int  // streams being served
	up       bool // a connection reached the service since the last stop
	gen      int  // invalidates an idle timer that fired meanwhile
	timer    *time.Timer
	starting *unitStart    // the start that concurrent connections share
	started  time.Time     // when the last start that succeeded ended
	stopping chan struct{} // closed when an idle stop is done
}

// unitStart is one start of the unit; done is closed when it is over.
type unitStart struct {
	done chan struct{}
	err  error
}

func newOnDemand(unit string, idle time.Duration, units Units, log *slog.Logger) *onDemand {
	ctx, cancel := context.WithCancel(context.Background())
	return &onDemand{unit: unit, idle: idle, units: units, log: log.With("unit", unit),
		wait: unitStartWait, ctx: ctx, stop: cancel}
}

// close ends the idle timer and any start in progress; the unit is left as
// it is.
func (o *onDemand) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gen++
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	o.stop()
}

// acquire counts a stream as open: the idle timer stops, and a stop in
// progress is waited for, so that the stream dials a unit that stays up
// (or, refused, starts it again).
func (o *onDemand) acquire() {
	o.mu.Lock()
	o.active++
	o.gen++
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	st := o.stopping
	o.mu.Unlock()
	if st != nil {
		<-st
	}
}

// release ends a stream; the last one arms the idle timer.
func (o *onDemand) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.active--
	if o.active > 0 || o.idle <= 0 || !o.up || o.ctx.Err() != nil {
		return
	}
	gen := o.gen
	o.timer = time.AfterFunc(o.idle, func() { o.idleStop(gen) })
}

// idleStop stops the unit unless a stream came since the timer was armed.
func (o *onDemand) idleStop(gen int) {
	o.mu.Lock()
	if o.gen != gen || o.active > 0 || o.ctx.Err() != nil {
		o.mu.Unlock()
		return
	}
	o.timer = nil
	done := make(chan struct{})
	o.stopping = done
	o.mu.Unlock()

	ctx, cancel := context.WithTimeout(o.ctx, unitStopWait)
	err := o.units.StopUnit(ctx, o.unit)
	cancel()
	if err != nil {
		o.log.Warn("could not stop the idle destination's unit", msgid.UnitStopped.Attr(), "idle", o.idle.String(), "err", err)
	} else {
		o.log.Info("stopped the idle destination's unit", msgid.UnitStopped.Attr(), "idle", o.idle.String())
	}
	if err == nil && o.stopped != nil {
		o.stopped()
	}
	o.mu.Lock()
	o.up = err != nil // a unit that did not stop is still up
	o.stopping = nil
	o.mu.Unlock()
	close(done)
}

// reached notes that a connection reached the service.
func (o *onDemand) reached() {
	o.mu.Lock()
	o.up = true
	o.mu.Unlock()
}

// dial dials the service; when it refuses, it starts the unit (or waits for
// the start another connection began) and dials again.
func (o *onDemand) dial(ctx context.Context, addr string, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	t0 := time.Now()
	conn, err := dial(ctx)
	if err == nil {
		o.reached()
		return conn, nil
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil, err
	}
	o.mu.Lock()
	op := o.starting
	// A start that ended after our dial began is the one to wait for:
	// the refusal came before the service was up.
	finished := op == nil && o.started.After(t0)
	first := op == nil && !finished
	if first {
		op = &unitStart{done: make(chan struct{})}
		o.starting = op
	}
	o.mu.Unlock()
	if first {
		conn, err = o.start(addr, dial)
		op.err = err
		o.mu.Lock()
		o.starting = nil
		if err == nil {
			o.up, o.started = true, time.Now()
		}
		o.mu.Unlock()
		close(op.done)
		return conn, err
	}
	if !finished {
		select {
		case <-op.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if op.err != nil {
			return nil, op.err
		}
	}
	conn, err = dial(ctx)
	if err == nil {
		o.reached()
	}
	return conn, err
}

// start starts the unit and polls the service's address, with backoff,
// until it accepts; the connection that accepted is the caller's.
func (o *onDemand) start(addr string, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(o.ctx, o.wait)
	defer cancel()
	t0 := time.Now()
	o.log.Debug("destination service refused; starting its unit", "addr", addr)
	if err := o.units.StartUnit(ctx, o.unit); err != nil {
		err = fmt.Errorf("start %s: %w", o.unit, err)
		o.log.Warn("could not start the destination's unit", msgid.UnitStartFailed.Attr(), "addr", addr, "err", err)
		return nil, err
	}
	b := backoff.New(20*time.Millisecond, 500*time.Millisecond)
	for {
		conn, err := dial(ctx)
		if err == nil {
			o.log.Info("started the destination's unit for a connection", msgid.UnitStarted.Attr(), "addr", addr,
				"took", time.Since(t0).Round(time.Millisecond).String())
			return conn, nil
		}
		if !b.Sleep(ctx) {
			err = fmt.Errorf("%s started but %s does not accept after %s: %w", o.unit, addr, o.wait, err)
			o.log.Warn("could not start the destination's unit", msgid.UnitStartFailed.Attr(), "addr", addr, "err", err)
			return nil, err
		}
	}
}

// initOnDemand makes an on-demand destination of one with a start-unit.
func (d *destination) initOnDemand(cfg DestinationConfig, log *slog.Logger) error {
	if cfg.StartUnit == "" {
		if cfg.StopIdle != 0 {
			return errors.New("stop-idle needs a start-unit")
		}
		return nil
	}
	if cfg.Units == nil {
		return errors.New("start-unit needs systemd (no Units given)")
	}
	if d.proto != wire.ProtoTCP || cfg.FileServerRoot != "" || cfg.Kind.Scheme == "file" {
		return errors.New("start-unit applies only to destinations that dial their service (tcp, tls, http, https)")
	}
	d.od = newOnDemand(cfg.StartUnit, cfg.StopIdle, cfg.Units, log.With("endpoint", d.name))
	d.od.stopped = func() {
		if d.transport != nil { // set by initKind, before d is served
			d.transport.CloseIdleConnections()
		}
	}
	return nil
}

// dialService dials the destination's service at addr (d.addr, or the
// http transport's), starting its unit when it refuses.
func (d *destination) dialService(ctx context.Context, addr string) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: d.dialTimeout()}
	dial := func(ctx context.Context) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) }
	if d.od == nil {
		return dial(ctx)
	}
	return d.od.dial(ctx, addr, dial)
}

// openStream counts a stream to an on-demand destination as open until
// the returned function is called.
func (d *destination) openStream() func() {
	if d.od == nil {
		return func() {}
	}
	d.od.acquire()
	return d.od.release
}
