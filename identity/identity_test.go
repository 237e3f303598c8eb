package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestIDOf(t *testing.T) {
	der := []byte("not really a certificate, but IDOf only hashes")
	sum := sha256.Sum256(der)
	id := IDOf(der)
	if string(id[:]) != string(sum[:16]) {
		t.Fatalf("IDOf = %x, want the first 16 bytes of SHA-256 %x", id, sum[:16])
	}
	if IDOf(append([]byte(nil), der...)) != id {
		t.Fatal("IDOf is not stable")
	}
	if IDOf(der[:len(der)-1]) == id {
		t.Fatal("different certificates have the same ID")
	}
	if id.String() != hex.EncodeToString(sum[:16]) || len(id.String()) != 32 {
		t.Fatalf("String = %q", id.String())
	}
	if id.Short() != hex.EncodeToString(sum[:4]) {
		t.Fatalf("Short = %q", id.Short())
	}
	if id.IsZero() || !(ID{}).IsZero() {
		t.Fatal("IsZero")
	}
}

func TestNewIdentity(t *testing.T) {
	a, err := New("connetd-test")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != IDOf(a.DER) {
		t.Fatal("ID is not IDOf(DER)")
	}
	leaf, err := x509.ParseCertificate(a.DER)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := leaf.PublicKey.(ed25519.PublicKey); !ok {
		t.Fatalf("public key is %T, want ed25519", leaf.PublicKey)
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Fatalf("not self-signed: %v", err)
	}
	if leaf.Subject.CommonName != "connetd-test" {
		t.Fatalf("CN %q", leaf.Subject.CommonName)
	}
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		t.Fatalf("certificate not valid now: %v..%v", leaf.NotBefore, leaf.NotAfter)
	}
	again, err := FromDER(a.DER, a.Cert.PrivateKey.(ed25519.PrivateKey))
	if err != nil || again.ID != a.ID {
		t.Fatalf("FromDER: %v, id %s want %s", err, again.ID, a.ID)
	}
	b, err := New("connetd-test")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == a.ID {
		t.Fatal("two fresh identities share an ID")
	}
	if _, err := FromDER([]byte("garbage"), nil); err == nil {
		t.Fatal("FromDER accepted garbage")
	}
}

func TestParseID(t *testing.T) {
	id := IDOf([]byte("x"))
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(String) = %s, %v", got, err)
	}
	if got, err := ParseID(strings.ToUpper(id.String())); err != nil || got != id {
		t.Fatalf("upper case: %s, %v", got, err)
	}
	for _, s := range []string{"", "00", id.String()[:30], id.String() + "00", id.String()[:31], "zz" + id.String()[2:], " " + id.String()[1:]} {
		if v, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) = %s", s, v)
		}
	}
}

func TestIDJSON(t *testing.T) {
	id := IDOf([]byte("y"))
	b, err := json.Marshal(struct{ ID ID }{id})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"ID":"` + id.String() + `"}`; string(b) != want {
		t.Fatalf("JSON %s, want %s", b, want)
	}
	var back struct{ ID ID }
	if err := json.Unmarshal(b, &back); err != nil || back.ID != id {
		t.Fatalf("unmarshal: %s, %v", back.ID, err)
	}
	if err := json.Unmarshal([]byte(`{"ID":"abc"}`), &back); err == nil {
		t.Fatal("unmarshal accepted a short ID")
	}
	if back.ID != id {
		t.Fatal("a failed UnmarshalText changed the ID")
	}
}

// bufConn is one end of a net.Pipe whose writes never block: a TLS side
// that gives up sends an alert while the other side may itself be writing,
// which on a bare net.Pipe would deadlock until the deadline.
type bufConn struct {
	net.Conn
	mu     sync.Mutex
	closed bool
	out    chan []byte
	done   chan struct{}
}

func newBufConn(c net.Conn) *bufConn {
	b := &bufConn{Conn: c, out: make(chan []byte, 1024), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for p := range b.out {
			if _, err := c.Write(p); err != nil {
				for range b.out {
				}
				return
			}
		}
	}()
	return b
}

func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, net.ErrClosed
	}
	b.out <- append([]byte(nil), p...)
	return len(p), nil
}

func (b *bufConn) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.out)
	}
	b.mu.Unlock()
	err := b.Conn.Close()
	<-b.done
	return err
}

// handshake runs a TLS handshake over net.Pipe and returns both results.
// After a successful handshake the server sends one byte, so that the
// client, whose TLS 1.3 handshake ends before the server has checked its
// certificate, learns the server's verdict.
func handshake(t *testing.T, client, server *tls.Config) (cs, ss tls.ConnectionState, cerr, serr error) {
	t.Helper()
	c, s := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	_ = c.SetDeadline(deadline)
	_ = s.SetDeadline(deadline)
	bc, bs := newBufConn(c), newBufConn(s)
	defer bc.Close()
	defer bs.Close()
	tc, ts := tls.Client(bc, client), tls.Server(bs, server)
	done := make(chan struct{})
	go func() {
		defer close(done)
		serr = ts.Handshake()
		if serr == nil {
			_, serr = ts.Write([]byte{1})
		}
		ss = ts.ConnectionState()
	}()
	cerr = tc.Handshake()
	if cerr == nil {
		var b [1]byte
		_, cerr = tc.Read(b[:])
	}
	cs = tc.ConnectionState()
	<-done
	return cs, ss, cerr, serr
}

func pinTo(id ID) func(ID) bool { return func(x ID) bool { return x == id } }

func TestPinnedHandshake(t *testing.T) {
	a, err := New("connetd-client")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New("connetd-peer")
	if err != nil {
		t.Fatal(err)
	}
	const alpn = "connetd-test/1"

	t.Run("both pinned", func(t *testing.T) {
		cs, ss, cerr, serr := handshake(t, a.ClientTLS(alpn, pinTo(b.ID)), b.ServerTLS(alpn, pinTo(a.ID)))
		if cerr != nil || serr != nil {
			t.Fatalf("client %v, server %v", cerr, serr)
		}
		if cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != alpn {
			t.Fatalf("version %x, alpn %q", cs.Version, cs.NegotiatedProtocol)
		}
		if id, ok := PeerIDOf(cs); !ok || id != b.ID {
			t.Fatalf("client sees %s, want %s", id, b.ID)
		}
		if id, ok := PeerIDOf(ss); !ok || id != a.ID {
			t.Fatalf("server sees %s, want %s", id, a.ID)
		}
	})
	t.Run("server does not pin the client", func(t *testing.T) {
		_, _, cerr, serr := handshake(t, a.ClientTLS(alpn, pinTo(b.ID)), b.ServerTLS(alpn, pinTo(b.ID)))
		if !errors.Is(serr, ErrNotPinned) {
			t.Fatalf("server err = %v, want ErrNotPinned", serr)
		}
		if cerr == nil {
			t.Fatal("client did not learn that it was refused")
		}
	})
	t.Run("client does not pin the server", func(t *testing.T) {
		_, _, cerr, serr := handshake(t, a.ClientTLS(alpn, pinTo(a.ID)), b.ServerTLS(alpn, pinTo(a.ID)))
		if !errors.Is(cerr, ErrNotPinned) {
			t.Fatalf("client err = %v, want ErrNotPinned", cerr)
		}
		if serr == nil {
			t.Fatal("server handshake succeeded against a client that refused it")
		}
	})
	t.Run("client without certificate", func(t *testing.T) {
		conf := a.ClientTLS(alpn, pinTo(b.ID))
		conf.Certificates = nil
		_, _, cerr, serr := handshake(t, conf, b.ServerTLS(alpn, func(ID) bool { return true }))
		if serr == nil || cerr == nil {
			t.Fatalf("anonymous client accepted: client %v, server %v", cerr, serr)
		}
	})
	t.Run("TLS 1.2 refused", func(t *testing.T) {
		conf := a.ClientTLS(alpn, pinTo(b.ID))
		conf.MinVersion, conf.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		_, _, cerr, serr := handshake(t, conf, b.ServerTLS(alpn, pinTo(a.ID)))
		if serr == nil || cerr == nil {
			t.Fatalf("TLS 1.2 accepted: client %v, server %v", cerr, serr)
		}
	})
}

func TestPinnedVerifierNoCertificate(t *testing.T) {
	v := PinnedVerifier(func(ID) bool { return true })
	if err := v(nil, nil); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("no certificate: %v", err)
	}
	if err := v([][]byte{[]byte("c")}, nil); err != nil {
		t.Fatalf("allowed: %v", err)
	}
	var asked ID
	v = PinnedVerifier(func(id ID) bool { asked = id; return false })
	if err := v([][]byte{[]byte("leaf"), []byte("other")}, nil); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("refused: %v", err)
	}
	if asked != IDOf([]byte("leaf")) {
		t.Fatal("the verifier did not check the leaf's ID")
	}
}

// FuzzParseID checks ParseID and UnmarshalText against hex.DecodeString.
func FuzzParseID(f *testing.F) {
	f.Add(IDOf([]byte("seed")).String())
	f.Add(strings.ToUpper(IDOf([]byte("seed")).String()))
	f.Add("")
	f.Add("00")
	f.Add(strings.Repeat("0", 31))
	f.Add(strings.Repeat("g", 32))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		raw, herr := hex.DecodeString(s)
		valid := herr == nil && len(raw) == 16
		if (err == nil) != valid {
			t.Fatalf("ParseID(%q) err = %v, want valid=%v", s, err, valid)
		}
		var u ID
		uerr := u.UnmarshalText([]byte(s))
		if (uerr == nil) != valid || u != id {
			t.Fatalf("UnmarshalText(%q) = %s, %v; ParseID = %s, %v", s, u, uerr, id, err)
		}
		if !valid {
			if !id.IsZero() {
				t.Fatalf("failed ParseID returned %s", id)
			}
			return
		}
		if string(id[:]) != string(raw) || id.String() != strings.ToLower(s) {
			t.Fatalf("ParseID(%q) = %s", s, id)
		}
		txt, _ := id.MarshalText()
		if back, err := ParseID(string(txt)); err != nil || back != id {
			t.Fatalf("MarshalText round trip: %s, %v", back, err)
		}
	})
}
