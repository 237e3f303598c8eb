package daemon

import (
	"context"
	"fmt"
	"sync"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/config"
)

// systemdUnits starts and stops units through systemd's D-Bus API on the
// system bus (org.freedesktop.systemd1.Manager). connetd runs as user
// connetd, so systemd asks polkit (action
// org.freedesktop.systemd1.manage-units); the rule the packages ship
// (packaging/polkit/50-connetd.rules) grants start and stop of units named
// connetd-ondemand-*.service. The connection is made on first use and made
// again after it broke.
type systemdUnits struct {
	mu   sync.Mutex
	conn *dbus.Conn
}

// units is the one systemd connection of the process, for every client.
var units = &systemdUnits{}

var _ client.Units = units

const (
	systemdDest   = "org.freedesktop.systemd1"
	systemdPath   = dbus.ObjectPath("/org/freedesktop/systemd1")
	systemdMgr    = "org.freedesktop.systemd1.Manager"
	jobRemovedSig = systemdMgr + ".JobRemoved"
)

// bus returns the connection, with JobRemoved signals subscribed to.
func (s *systemdUnits) bus(ctx context.Context) (*dbus.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.Connected() {
		return s.conn, nil
	}
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(context.Background()))
	if err != nil {
		return nil, fmt.Errorf("system bus: %w", err)
	}
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchObjectPath(systemdPath),
		dbus.WithMatchInterface(systemdMgr), dbus.WithMatchMember("JobRemoved")); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("system bus: %w", err)
	}
	// systemd sends job signals to subscribed clients (and to the one
	// that queued the job); Subscribe makes sure of it.
	_ = conn.Object(systemdDest, systemdPath).CallWithContext(ctx, systemdMgr+".Subscribe", 0).Err
	s.conn = conn
	return conn, nil
}

// StartUnit starts name (mode "replace") and waits for the job's end.
func (s *systemdUnits) StartUnit(ctx context.Context, name string) error {
	return s.job(ctx, "StartUnit", name)
}

// StopUnit stops name (mode "replace") and waits for the job's end.
func (s *systemdUnits) StopUnit(ctx context.Context, name string) error {
	return s.job(ctx, "StopUnit", name)
}

func (s *systemdUnits) job(ctx context.Context, method, name string) error {
	conn, err := s.bus(ctx)
	if err != nil {
		return err
	}
	// Signals from before the call are in ch too: a job that ends before
	// the call's reply is read is still seen.
	ch := make(chan *dbus.Signal, 16)
	conn.Signal(ch)
	defer conn.RemoveSignal(ch)
	var job dbus.ObjectPath
	if err := conn.Object(systemdDest, systemdPath).CallWithContext(ctx, systemdMgr+"."+method, 0, name, "replace").Store(&job); err != nil {
		return err
	}
	for {
		select {
		case sig, ok := <-ch:
			if !ok {
				return fmt.Errorf("system bus closed while waiting for job %s", job)
			}
			// JobRemoved(u id, o job, s unit, s result)
			if sig.Name != jobRemovedSig || len(sig.Body) != 4 {
				continue
			}
			if p, _ := sig.Body[1].(dbus.ObjectPath); p != job {
				continue
			}
			if result, _ := sig.Body[3].(string); result != "done" {
				return fmt.Errorf("%s job %s", method, result)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s %s: job %s not finished: %w", method, name, job, context.Cause(ctx))
		}
	}
}

// onDemand fills in a destination's start-unit and stop-idle.
func onDemand(d config.Destination, cfg *client.DestinationConfig) {
	if d.StartUnit == "" {
		return
	}
	cfg.StartUnit, cfg.StopIdle, cfg.Units = d.StartUnit, d.StopIdleAfter, units
}
