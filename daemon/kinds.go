package daemon

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/connetd/connetd/client"
	"github.com/connetd/connetd/config"
)

// sourceKind is a source's endpoint kind with its server certificate and,
// with cas-file, the CAs its clients' certificates must chain to.
func sourceKind(s config.Source) (client.Kind, error) {
	k := client.Kind{Scheme: s.Kind, Path: s.Path, DialTimeout: time.Duration(s.DialTimeout) * time.Millisecond}
	if s.Kind != "tls" && s.Kind != "https" && s.Kind != "wss" {
		return k, nil
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return k, fmt.Errorf("cert-file: %w", err)
	}
	k.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if s.CASFile != "" {
		pool, err := config.LoadCAs(s.CASFile)
		if err != nil {
			return k, fmt.Errorf("cas-file: %w", err)
		}
		k.TLS.ClientCAs, k.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return k, nil
}

// destinationKind is a destination's endpoint kind with the TLS client
// configuration of a tls or https destination.
func destinationKind(d config.Destination) (client.Kind, error) {
	k := client.Kind{Scheme: d.Kind, Path: d.Path, DialTimeout: time.Duration(d.DialTimeout) * time.Millisecond}
	if d.Kind != "tls" && d.Kind != "https" {
		return k, nil
	}
	k.TLS = &tls.Config{ServerName: d.ServerName, MinVersion: tls.VersionTLS12}
	if k.TLS.ServerName == "" {
		k.TLS.ServerName, _, _ = net.SplitHostPort(d.Addr)
	}
	switch d.CASFile {
	case "":
	case config.InsecureSkipVerify:
		k.TLS.InsecureSkipVerify = true
	default:
		pool, err := config.LoadCAs(d.CASFile)
		if err != nil {
			return k, fmt.Errorf("cas-file: %w", err)
		}
		k.TLS.RootCAs = pool
	}
	if d.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
		if err != nil {
			return k, fmt.Errorf("cert-file: %w", err)
		}
		k.TLS.Certificates = []tls.Certificate{cert}
	}
	return k, nil
}
