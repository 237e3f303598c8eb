package daemon

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fdMessage is one sd_notify datagram with the descriptors it carried.
type fdMessage struct {
	text  string
	files []*os.File
}

// recvNotify reads one datagram and its SCM_RIGHTS from a notify socket.
func recvNotify(t *testing.T, c *net.UnixConn) fdMessage {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*16))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	m := fdMessage{text: string(buf[:n])}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, scm := range scms {
		fds, err := unix.ParseUnixRights(&scm)
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range fds {
			f := os.NewFile(uintptr(fd), "stored")
			t.Cleanup(func() { f.Close() })
			m.files = append(m.files, f)
		}
	}
	return m
}

func TestSocketsGoToTheFileDescriptorStoreByName(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	ns, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	t.Setenv("NOTIFY_SOCKET", path)

	log := slog.New(slog.DiscardHandler)
	l := &listeners{files: map[string][]*os.File{}, log: log}
	direct, err := l.udp(fdDirect, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	relay, err := l.udp(fdClientRelay, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	status, err := l.tcp(fdStatus, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer status.Close()
	src, err := l.tcp(fdSource("svc"), "127.0.0.1:0") // sources are not stored
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	l.storeAll(&notifier{log: log})

	want := map[string]string{
		fdDirect: direct.LocalAddr().String(), fdClientRelay: relay.LocalAddr().String(), fdStatus: status.Addr().String(),
	}
	got := map[string]*os.File{}
	for range want {
		m := recvNotify(t, ns)
		name, ok := strings.CutPrefix(m.text, "FDSTORE=1\nFDNAME=")
		if !ok || len(m.files) != 1 {
			t.Fatalf("message %q with %d fds: want FDSTORE=1, FDNAME= and one fd", m.text, len(m.files))
		}
		got[name] = m.files[0]
	}
	_ = ns.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := ns.Read(make([]byte, 100)); n > 0 {
		t.Errorf("a message more than the three sockets")
	}

	// The next process gets them as LISTEN_FDS under those names and
	// serves on the same ports.
	next := &listeners{files: map[string][]*os.File{}, log: log}
	for name, f := range got {
		next.files[name] = []*os.File{f}
	}
	// A socket unit's socket is passed too when it is also in the store.
	dup, err := direct.File()
	if err != nil {
		t.Fatal(err)
	}
	next.files[fdDirect] = append(next.files[fdDirect], dup)
	direct2, err := next.udp(fdDirect, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer direct2.Close()
	relay2, err := next.udp(fdClientRelay, ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer relay2.Close()
	status2, err := next.tcp(fdStatus, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer status2.Close()
	for name, a := range map[string]string{fdDirect: direct2.LocalAddr().String(), fdClientRelay: relay2.LocalAddr().String(), fdStatus: status2.Addr().String()} {
		if a != want[name] {
			t.Errorf("%s: restarted on %s, want the stored %s", name, a, want[name])
		}
	}
	if u := next.unused(); len(u) != 0 {
		t.Errorf("unused after taking every socket: %v (the duplicate direct socket must be dropped)", u)
	}
	// The taken socket works: a datagram to the old port arrives.
	if _, err := direct.WriteTo([]byte("x"), direct2.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = direct2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, _, err := direct2.ReadFrom(make([]byte, 10)); err != nil || n != 1 {
		t.Fatalf("read on the restored socket: %d, %v", n, err)
	}
}

func TestNoNotifySocketStoresNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := sdNotifyWithFDs("FDSTORE=1", 0); err != errNoNotifySocket {
		t.Fatalf("err %v, want errNoNotifySocket", err)
	}
}
