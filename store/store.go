// Package store keeps a server's identity and state across restarts in an
// embedded bbolt database under store-dir.
package store

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketIdentity = []byte("identity")

// Store is an open state database.
type Store struct {
	db *bolt.DB
}

// Open opens (creating) the database in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "connetd.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Get returns a copy of the value under key in bucket, or nil.
func (s *Store) Get(bucket, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// Put stores value under key in bucket.
func (s *Store) Put(bucket, key string, value []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), value)
	})
}

// Delete removes key from bucket.
func (s *Store) Delete(bucket, key string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
}

// Keys lists the keys of bucket.
func (s *Store) Keys(bucket string) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error { out = append(out, string(k)); return nil })
	})
	return out, err
}

// Secret returns the random secret stored under name, creating it with size
// bytes on first use. Used for the stateless reset key and identity seeds.
func (s *Store) Secret(name string, size int) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketIdentity)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(name)); v != nil {
			if len(v) != size {
				return fmt.Errorf("stored secret %q has %d bytes, want %d", name, len(v), size)
			}
			out = append([]byte(nil), v...)
			return nil
		}
		out = make([]byte, size)
		if _, err := rand.Read(out); err != nil {
			return err
		}
		return b.Put([]byte(name), out)
	})
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return out, nil
}

// Key returns the ed25519 key stored under name, creating it on first use.
func (s *Store) Key(name string) (ed25519.PrivateKey, error) {
	seed, err := s.Secret(name, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ErrNoDir is returned by Dir when no directory can be chosen.
var ErrNoDir = errors.New("no store directory")

// Dir returns configured, or a new directory under the system temp dir (as
// connet does: state is then lost on restart).
func Dir(configured, role string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	d, err := os.MkdirTemp("", "connetd-"+role+"-")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoDir, err)
	}
	return d, nil
}
