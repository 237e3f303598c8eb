package store

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := open(t, dir)
	defer s.Close()
	fi, err := os.Stat(filepath.Join(dir, "connetd.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("database mode %v is readable by others", fi.Mode().Perm())
	}
}

func TestSecretPersists(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	a, err := s.Secret("stateless-reset-key", 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || bytes.Equal(a, make([]byte, 32)) {
		t.Fatalf("secret % x", a)
	}
	again, err := s.Secret("stateless-reset-key", 32)
	if err != nil || !bytes.Equal(again, a) {
		t.Fatalf("second Secret = % x, %v", again, err)
	}
	other, err := s.Secret("other", 32)
	if err != nil || bytes.Equal(other, a) {
		t.Fatalf("another name gave % x, %v", other, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	reopened, err := s.Secret("stateless-reset-key", 32)
	if err != nil || !bytes.Equal(reopened, a) {
		t.Fatalf("after reopen: % x, %v; want % x", reopened, err, a)
	}
	if _, err := s.Secret("stateless-reset-key", 16); err == nil {
		t.Fatal("Secret with a different size returned the stored secret")
	}
}

func TestKeyDeterministic(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	k, err := s.Key("relay-key")
	if err != nil {
		t.Fatal(err)
	}
	if len(k) != ed25519.PrivateKeySize {
		t.Fatalf("key has %d bytes", len(k))
	}
	msg := []byte("m")
	if !ed25519.Verify(k.Public().(ed25519.PublicKey), msg, ed25519.Sign(k, msg)) {
		t.Fatal("key does not sign")
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	k2, err := s.Key("relay-key")
	if err != nil || !k.Equal(k2) {
		t.Fatalf("key changed across reopen: %v", err)
	}
	k3, err := s.Key("another-key")
	if err != nil || k.Equal(k3) {
		t.Fatalf("two names share a key: %v", err)
	}
}

func TestPutGetDeleteKeys(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if v, err := s.Get("b", "k"); err != nil || v != nil {
		t.Fatalf("Get from a missing bucket = %q, %v", v, err)
	}
	if ks, err := s.Keys("b"); err != nil || len(ks) != 0 {
		t.Fatalf("Keys of a missing bucket = %q, %v", ks, err)
	}
	if err := s.Delete("b", "k"); err != nil {
		t.Fatalf("Delete from a missing bucket: %v", err)
	}
	for k, v := range map[string]string{"k2": "two", "k1": "one", "k3": ""} {
		if err := s.Put("b", k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put("other", "k1", []byte("elsewhere")); err != nil {
		t.Fatal(err)
	}
	v, err := s.Get("b", "k1")
	if err != nil || string(v) != "one" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	v[0] = 'X' // a copy: changing it changes nothing stored
	if v, _ := s.Get("b", "k1"); string(v) != "one" {
		t.Fatalf("stored value changed to %q", v)
	}
	if v, err := s.Get("b", "missing"); err != nil || v != nil {
		t.Fatalf("Get missing key = %q, %v", v, err)
	}
	if err := s.Put("b", "k2", []byte("TWO")); err != nil {
		t.Fatal(err)
	}
	ks, err := s.Keys("b")
	if err != nil || !slices.Equal(ks, []string{"k1", "k2", "k3"}) {
		t.Fatalf("Keys = %q, %v", ks, err)
	}
	if err := s.Delete("b", "k1"); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get("b", "k1"); v != nil {
		t.Fatalf("deleted key still has %q", v)
	}
	kept, err := s.Get("b", "k2")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A copy outlives the database; a slice of bolt's memory map would not.
	if string(kept) != "TWO" {
		t.Fatalf("value read before Close is now %q", kept)
	}
	s = open(t, dir)
	defer s.Close()
	ks, err = s.Keys("b")
	if err != nil || !slices.Equal(ks, []string{"k2", "k3"}) {
		t.Fatalf("Keys after reopen = %q, %v", ks, err)
	}
	if v, _ := s.Get("b", "k2"); string(v) != "TWO" {
		t.Fatalf("overwritten value after reopen = %q", v)
	}
	if v, _ := s.Get("other", "k1"); string(v) != "elsewhere" {
		t.Fatalf("other bucket = %q", v)
	}
}

func TestDir(t *testing.T) {
	if d, err := Dir("/some/where", "relay"); err != nil || d != "/some/where" {
		t.Fatalf("configured dir: %q, %v", d, err)
	}
	t.Setenv("TMPDIR", t.TempDir())
	d, err := Dir("", "relay")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() || !strings.HasPrefix(filepath.Base(d), "connetd-relay-") {
		t.Fatalf("temp dir %q: %v", d, err)
	}
	d2, _ := Dir("", "relay")
	if d2 == d {
		t.Fatal("two calls share a temp dir")
	}
}
