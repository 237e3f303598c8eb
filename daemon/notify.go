package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks sd_notify; without NOTIFY_SOCKET every call is a no-op.
type notifier struct {
	log *slog.Logger
	mu  sync.Mutex
}

func (n *notifier) send(lines ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := sddaemon.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		n.log.Debug("sd_notify failed", "err", err)
	}
}

func (n *notifier) status(s string) { n.send("STATUS=" + s) }

func (n *notifier) ready(status string) { n.send("READY=1", "STATUS="+status) }

// reloading must carry the monotonic time: systemd ≥ 253 uses it to match
// the READY=1 that ends the reload.
func (n *notifier) reloading() {
	n.send("RELOADING=1", sddaemon.SdNotifyMonotonicUsec(), "STATUS=reloading configuration")
}

func (n *notifier) stopping() { n.send("STOPPING=1", "STATUS=stopping") }

// statusLoop keeps STATUS= current: at every change it sends the summary
// if it differs from the last one sent.
func (n *notifier) statusLoop(ctx context.Context, changed func() <-chan struct{}, summary func() string) {
	last := ""
	for {
		ch := changed() // before reading, so a change meanwhile wakes us again
		if s := summary(); s != last {
			n.status(s)
			last = s
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// watchdogLoop pings the watchdog on systemd's interval while the role is
// alive. systemd needs the pings even when nothing changes, so this stays a
// ticker; what it checks is cheap (the role's main lock can be taken), not a
// rebuilt status. A deadlocked role stops the pings and systemd restarts it.
func (n *notifier) watchdogLoop(ctx context.Context, alive func()) {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	every := interval / 3
	n.log.Info("watchdog enabled", "interval", interval.String())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The check runs apart so a deadlock is noticed, and is waited for
		// before the next one so that no more than one is ever stuck.
		done := make(chan struct{})
		go func() { alive(); close(done) }()
		select {
		case <-done:
			n.send("WATCHDOG=1")
		case <-time.After(every):
			n.log.Error("role did not answer the liveness check; not pinging the watchdog", "waited", every.String())
			<-done
		case <-ctx.Done():
			<-done
			return
		}
	}
}
