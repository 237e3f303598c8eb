package daemon

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/store"
)

// Where an endpoint or token comes from.
const (
	OriginConfig  = "config"  // the admin's file (connetd never rewrites it)
	OriginRuntime = "runtime" // added over D-Bus, kept in the state directory
)

// overlay is what was changed at run time, laid over the configuration
// file. It is kept in the instance's state store so it survives restarts;
// the file itself is never rewritten.
type overlay struct {
	// A nil entry removes the file's endpoint of that name.
	Sources      map[string]*config.Source      `json:"sources,omitempty"`
	Destinations map[string]*config.Destination `json:"destinations,omitempty"`
	Tokens       []string                       `json:"tokens,omitempty"`  // added client tokens
	Revoked      []string                       `json:"revoked,omitempty"` // file tokens revoked
}

const (
	overlayBucket = "runtime"
	overlayKey    = "overlay"
)

func loadOverlay(st *store.Store) (*overlay, error) {
	o := &overlay{Sources: map[string]*config.Source{}, Destinations: map[string]*config.Destination{}}
	b, err := st.Get(overlayBucket, overlayKey)
	if err != nil {
		return nil, fmt.Errorf("load run-time changes: %w", err)
	}
	if b != nil {
		if err := json.Unmarshal(b, o); err != nil {
			return nil, fmt.Errorf("load run-time changes: %w", err)
		}
	}
	if o.Sources == nil {
		o.Sources = map[string]*config.Source{}
	}
	if o.Destinations == nil {
		o.Destinations = map[string]*config.Destination{}
	}
	return o, nil
}

func (o *overlay) save(st *store.Store) error {
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := st.Put(overlayBucket, overlayKey, b); err != nil {
		return fmt.Errorf("save run-time changes: %w", err)
	}
	return nil
}

func (o *overlay) clone() *overlay {
	b, _ := json.Marshal(o)
	c := &overlay{}
	_ = json.Unmarshal(b, c)
	if c.Sources == nil {
		c.Sources = map[string]*config.Source{}
	}
	if c.Destinations == nil {
		c.Destinations = map[string]*config.Destination{}
	}
	return c
}

// effective is the configuration the role runs: the file with the overlay
// laid over it. A reload and a D-Bus call both end in role.apply(effective).
func effective(f *config.File, o *overlay) *config.File {
	e := *f
	if f.Client != nil {
		c := *f.Client
		c.Sources = overlayMap(f.Client.Sources, o.Sources)
		c.Destinations = overlayMap(f.Client.Destinations, o.Destinations)
		e.Client = &c
	}
	if f.Server != nil {
		s := *f.Server
		s.TokenValues, s.TokenRestricts = overlayTokens(s.TokenValues, s.TokenRestricts, o)
		e.Server = &s
	}
	if f.Control != nil {
		c := *f.Control
		c.ClientsTokenValues, c.ClientsTokenRestricts = overlayTokens(c.ClientsTokenValues, c.ClientsTokenRestricts, o)
		e.Control = &c
	}
	return &e
}

func overlayMap[T any](file map[string]T, over map[string]*T) map[string]T {
	out := maps.Clone(file)
	if out == nil {
		out = map[string]T{}
	}
	for name, v := range over {
		if v == nil {
			delete(out, name)
		} else {
			out[name] = *v
		}
	}
	return out
}

// overlayTokens drops revoked tokens (with their restriction) and adds the
// run-time ones, unrestricted.
func overlayTokens(tokens []string, restricts []restrict.Token, o *overlay) ([]string, []restrict.Token) {
	var outT []string
	var outR []restrict.Token
	for i, t := range tokens {
		if slices.Contains(o.Revoked, t) {
			continue
		}
		outT = append(outT, t)
		if len(restricts) > 0 {
			outR = append(outR, restricts[i])
		}
	}
	for _, t := range o.Tokens {
		if slices.Contains(outT, t) {
			continue
		}
		outT = append(outT, t)
		if len(restricts) > 0 {
			outR = append(outR, restrict.Token{})
		}
	}
	return outT, outR
}

// stateDir is where a role keeps its store: store-dir for servers, the
// unit's StateDirectory= for a client (which has no store-dir key), else a
// temporary directory, so that changes then last until the next restart.
func stateDir(f *config.File) string {
	switch {
	case f.Server != nil:
		return f.Server.StoreDir
	case f.Control != nil:
		return f.Control.StoreDir
	case f.Relay != nil:
		return f.Relay.StoreDir
	}
	dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":")
	return dir
}
