package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/internal/testbus"
)

// fakeManager answers org.freedesktop.systemd1.Manager's StartUnit and
// StopUnit as systemd does: a job path at once, and the job's JobRemoved
// signal, which it sends before the reply to check that an early signal is
// not missed. ok.service's jobs end "done", bad.service's "failed", and
// slow.service's never.
type fakeManager struct {
	conn *dbus.Conn
	mu   sync.Mutex
	n    uint32
	jobs []string
}

func (m *fakeManager) job(method, name, mode string) (dbus.ObjectPath, *dbus.Error) {
	m.mu.Lock()
	m.n++
	id := m.n
	m.jobs = append(m.jobs, method+" "+name+" "+mode)
	m.mu.Unlock()
	path := dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	// Another job's end first: it must not be taken for ours.
	_ = m.conn.Emit(systemdPath, jobRemovedSig, id+1000, dbus.ObjectPath("/org/freedesktop/systemd1/job/999"), name, "failed")
	switch name {
	case "ok.service":
		_ = m.conn.Emit(systemdPath, jobRemovedSig, id, path, name, "done")
	case "bad.service":
		_ = m.conn.Emit(systemdPath, jobRemovedSig, id, path, name, "failed")
	}
	return path, nil
}

func (m *fakeManager) StartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.job("StartUnit", name, mode)
}

func (m *fakeManager) StopUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return m.job("StopUnit", name, mode)
}

func (m *fakeManager) Subscribe() *dbus.Error { return nil }

func TestSystemdUnitsWaitsForTheJob(t *testing.T) {
	addr := testbus.Start(t, "..", testbus.Permissive)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m := &fakeManager{conn: conn}
	if err := conn.Export(m, systemdPath, systemdMgr); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName(systemdDest, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", reply, err)
	}

	s := &systemdUnits{}
	t.Cleanup(func() {
		if s.conn != nil {
			s.conn.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.StartUnit(ctx, "ok.service"); err != nil {
		t.Fatalf("StartUnit ok.service: %v", err)
	}
	if err := s.StopUnit(ctx, "ok.service"); err != nil {
		t.Fatalf("StopUnit ok.service: %v", err)
	}
	if err := s.StartUnit(ctx, "bad.service"); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("StartUnit bad.service: %v, want the job's failure", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := s.StartUnit(short, "slow.service"); err == nil || !strings.Contains(err.Error(), "not finished") {
		t.Fatalf("StartUnit slow.service: %v, want a timeout", err)
	}
	// Concurrent jobs on the one connection each see their own end.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := s.StartUnit(ctx, "ok.service"); err != nil {
				t.Errorf("concurrent StartUnit: %v", err)
			}
		})
	}
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.jobs[0] != "StartUnit ok.service replace" || m.jobs[1] != "StopUnit ok.service replace" {
		t.Fatalf("jobs %q", m.jobs)
	}
}
