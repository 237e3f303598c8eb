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

// statusLoop keeps STATUS= current: it sends the role's summary when it
// changes.
func (n *notifier) statusLoop(ctx context.Context, summary func() string) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s := summary(); s != last {
			n.status(s)
			last = s
		}
	}
}

// watchdogLoop pings the watchdog while the role answers a health check: a
// summary needs the role's locks, so a deadlocked main loop stops the pings
// and systemd restarts the service.
func (n *notifier) watchdogLoop(ctx context.Context, health func() string) {
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
		done := make(chan struct{})
		go func() { health(); close(done) }()
		select {
		case <-done:
			n.send("WATCHDOG=1")
		case <-time.After(every):
			n.log.Error("health check did not answer; not pinging the watchdog", "waited", every.String())
			<-done // the check owns no resources; wait so no goroutine outlives us
		case <-ctx.Done():
			<-done
			return
		}
	}
}
