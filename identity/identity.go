// Package identity holds the keys and self-signed certificates that clients
// and relays present, the IDs derived from them, and the TLS configurations
// that pin a peer to the certificate the control server vouched for.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ID identifies a peer: the SHA-256 of its certificate, shortened. Two
// certificates with the same ID are treated as the same peer.
type ID [16]byte

// IDOf derives the ID of a DER certificate.
func IDOf(certDER []byte) ID {
	sum := sha256.Sum256(certDER)
	var id ID
	copy(id[:], sum[:])
	return id
}

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is a prefix for log lines.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is unset.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses the hex form produced by String.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return ID{}, fmt.Errorf("peer id %q: want %d hex bytes", s, len(id))
	}
	copy(id[:], b)
	return id, nil
}

// MarshalText lets IDs travel in JSON as hex strings.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText is the reverse of MarshalText.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Identity is a key with its self-signed certificate.
type Identity struct {
	Cert tls.Certificate
	DER  []byte
	ID   ID
}

// New makes a fresh ed25519 identity. The certificate is long-lived: trust
// comes from the control server vouching for it, not from its dates.
func New(commonName string) (*Identity, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return FromKey(commonName, key)
}

// FromKey makes an identity around an existing key (a stored one).
func FromKey(commonName string, key ed25519.PrivateKey) (*Identity, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(20 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{commonName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign certificate: %w", err)
	}
	return FromDER(der, key)
}

// FromDER rebuilds an identity from a stored certificate and key.
func FromDER(der []byte, key ed25519.PrivateKey) (*Identity, error) {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return &Identity{
		Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		DER:  der,
		ID:   IDOf(der),
	}, nil
}

// ErrNotPinned is returned when a peer shows a certificate nobody vouched for.
var ErrNotPinned = errors.New("peer certificate is not one the control server vouched for")

// PinnedVerifier checks that the peer's leaf certificate belongs to an ID
// accepted by allowed. It replaces chain verification entirely: peers are
// self-signed and trusted only because control told us their certificate.
func PinnedVerifier(allowed func(ID) bool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return ErrNotPinned
		}
		if !allowed(IDOf(raw[0])) {
			return fmt.Errorf("%w (id %s)", ErrNotPinned, IDOf(raw[0]).Short())
		}
		return nil
	}
}

// PeerIDOf returns the ID of the certificate the other side presented.
func PeerIDOf(cs tls.ConnectionState) (ID, bool) {
	if len(cs.PeerCertificates) == 0 {
		return ID{}, false
	}
	return IDOf(cs.PeerCertificates[0].Raw), true
}

// ServerTLS is the configuration for accepting pinned peers.
func (i *Identity) ServerTLS(alpn string, allowed func(ID) bool) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{i.Cert},
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: PinnedVerifier(allowed),
		NextProtos:            []string{alpn},
	}
}

// ClientTLS is the configuration for dialing a pinned peer.
func (i *Identity) ClientTLS(alpn string, allowed func(ID) bool) *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{i.Cert},
		InsecureSkipVerify:    true, // replaced by VerifyPeerCertificate pinning
		VerifyPeerCertificate: PinnedVerifier(allowed),
		NextProtos:            []string{alpn},
		ServerName:            "connetd-peer",
	}
}
