package daemon

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/wire"
)

// Errors of run-time operations, for the management API to map.
var (
	ErrWrongRole = errors.New("operation not available for this role")
	ErrExists    = errors.New("already exists")
	ErrNotFound  = errors.New("not found")
	ErrInvalid   = errors.New("invalid argument")
)

// Endpoint describes one source or destination and where it comes from.
type Endpoint struct {
	Kind       string // "source" or "destination"
	Name       string
	Addr       string
	Route      string
	Proto      string // tcp or udp
	ProxyProto string
	Origin     string // OriginConfig or OriginRuntime
}

// Role is server, control, relay or client.
func (d *Daemon) Role() string { return d.role.name() }

// Instance is the daemon's instance name.
func (d *Daemon) Instance() string { return d.file.Instance }

// Version is the build's version.
func (d *Daemon) Version() string { return d.opts.Version }

// change applies a modified overlay the way a reload applies a modified
// file: role.apply(effective(...)). Only when that succeeds is the overlay
// stored; otherwise the running state is put back.
func (d *Daemon) change(edit func(o *overlay) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Endpoints and tokens are not all in the role's status (a source that
	// is refused, a token): tell watchers ourselves, also after a failure,
	// which may have changed things for a moment.
	defer d.changed.Notify()
	next := d.overlay.clone()
	if err := edit(next); err != nil {
		return err
	}
	if _, err := d.role.apply(effective(d.file, next)); err != nil {
		_, _ = d.role.apply(effective(d.file, d.overlay))
		return err
	}
	if err := next.save(d.store); err != nil {
		_, _ = d.role.apply(effective(d.file, d.overlay))
		return err
	}
	d.overlay = next
	return nil
}

func (d *Daemon) needClient() error {
	if d.file.Client == nil {
		return fmt.Errorf("%w: %s has no sources or destinations", ErrWrongRole, d.role.name())
	}
	return nil
}

// AddSource adds a source at run time; it survives restarts.
func (d *Daemon) AddSource(name string, s config.Source) error {
	if err := d.needClient(); err != nil {
		return err
	}
	if err := config.CheckSource(name, &s); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return d.change(func(o *overlay) error {
		if _, ok := effective(d.file, o).Client.Sources[name]; ok {
			return fmt.Errorf("source %q: %w", name, ErrExists)
		}
		o.Sources[name] = &s
		return nil
	})
}

// RemoveSource removes a source, whether from the file or added at run time.
func (d *Daemon) RemoveSource(name string) error {
	if err := d.needClient(); err != nil {
		return err
	}
	return d.change(func(o *overlay) error {
		if _, ok := effective(d.file, o).Client.Sources[name]; !ok {
			return fmt.Errorf("source %q: %w", name, ErrNotFound)
		}
		if _, inFile := d.file.Client.Sources[name]; inFile {
			o.Sources[name] = nil // hide the file's source
		} else {
			delete(o.Sources, name)
		}
		return nil
	})
}

// AddDestination adds a destination at run time; it survives restarts.
func (d *Daemon) AddDestination(name string, dst config.Destination) error {
	if err := d.needClient(); err != nil {
		return err
	}
	if err := config.CheckDestination(name, &dst); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return d.change(func(o *overlay) error {
		if _, ok := effective(d.file, o).Client.Destinations[name]; ok {
			return fmt.Errorf("destination %q: %w", name, ErrExists)
		}
		o.Destinations[name] = &dst
		return nil
	})
}

// RemoveDestination removes a destination.
func (d *Daemon) RemoveDestination(name string) error {
	if err := d.needClient(); err != nil {
		return err
	}
	return d.change(func(o *overlay) error {
		if _, ok := effective(d.file, o).Client.Destinations[name]; !ok {
			return fmt.Errorf("destination %q: %w", name, ErrNotFound)
		}
		if _, inFile := d.file.Client.Destinations[name]; inFile {
			o.Destinations[name] = nil
		} else {
			delete(o.Destinations, name)
		}
		return nil
	})
}

// Endpoints lists the client's sources and destinations, sorted.
func (d *Daemon) Endpoints() []Endpoint {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.file.Client == nil {
		return nil
	}
	e := effective(d.file, d.overlay).Client
	origin := func(runtime bool) string {
		if runtime {
			return OriginRuntime
		}
		return OriginConfig
	}
	var out []Endpoint
	for name, s := range e.Sources {
		_, rt := d.overlay.Sources[name]
		out = append(out, Endpoint{Kind: "source", Name: name, Addr: showAddr(s.Proto, config.EndpointURL(s.Addr, s.EndpointKind)), Route: s.Route,
			Proto: wire.ProtoOf(s.Proto), Origin: origin(rt)})
	}
	for name, dst := range e.Destinations {
		_, rt := d.overlay.Destinations[name]
		out = append(out, Endpoint{Kind: "destination", Name: name, Addr: showAddr(dst.Proto, config.EndpointURL(dst.Addr, dst.EndpointKind)), Route: dst.Route,
			Proto: wire.ProtoOf(dst.Proto), ProxyProto: dst.ProxyProtoVersion, Origin: origin(rt)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind > out[j].Kind // sources first
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func (d *Daemon) needTokens() error {
	if d.file.Server == nil && d.file.Control == nil {
		return fmt.Errorf("%w: %s has no client tokens", ErrWrongRole, d.role.name())
	}
	return nil
}

func (d *Daemon) clientTokens(f *config.File) []string {
	if f.Server != nil {
		return f.Server.TokenValues
	}
	return f.Control.ClientsTokenValues
}

// AddToken accepts a new client token; it survives restarts (and, in a
// cluster, applies on every node).
func (d *Daemon) AddToken(token string) error {
	if err := d.needTokens(); err != nil {
		return err
	}
	if token == "" {
		return fmt.Errorf("%w: empty token", ErrInvalid)
	}
	return d.editTokens(func(file []string, added, revoked *[]string) error {
		if slices.Contains(inForce(file, *added, *revoked), token) {
			return fmt.Errorf("token: %w", ErrExists)
		}
		if i := slices.Index(*revoked, token); i >= 0 {
			*revoked = slices.Delete(*revoked, i, i+1) // a file token comes back
		} else {
			*added = append(*added, token)
		}
		return nil
	})
}

// RevokeToken stops accepting a client token and disconnects the clients
// that use it, at once (in a cluster: on every node).
func (d *Daemon) RevokeToken(token string) error {
	if err := d.needTokens(); err != nil {
		return err
	}
	return d.editTokens(func(file []string, added, revoked *[]string) error {
		if !slices.Contains(inForce(file, *added, *revoked), token) {
			return fmt.Errorf("token: %w", ErrNotFound)
		}
		if i := slices.Index(*added, token); i >= 0 {
			*added = slices.Delete(*added, i, i+1)
		} else {
			*revoked = append(*revoked, token)
		}
		return nil
	})
}

// inForce is the client tokens accepted: the file's, less those revoked,
// plus those added.
func inForce(file, added, revoked []string) []string {
	toks, _ := overlayTokens(file, nil, &overlay{Tokens: added, Revoked: revoked})
	return toks
}

// TokenCounts tells how many client tokens are in force, by origin. The
// tokens themselves are secrets and are never listed.
func (d *Daemon) TokenCounts() (fromConfig, fromRuntime, revoked int, err error) {
	if err := d.needTokens(); err != nil {
		return 0, 0, 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.clientTokens(d.file)) - len(d.overlay.Revoked), len(d.overlay.Tokens), len(d.overlay.Revoked), nil
}

// showAddr is an endpoint's address as connetctl and D-Bus show it: a
// udp endpoint as its URL, so the protocol is never lost in a listing.
func showAddr(proto, addr string) string {
	if proto == wire.ProtoUDP {
		return "udp://" + addr
	}
	return addr
}
