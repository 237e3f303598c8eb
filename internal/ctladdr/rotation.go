package ctladdr

import "context"

// Rotation walks the control addresses in order. It stays on the address
// that worked last; after a failure (a dial that failed or a session that
// ended) it moves to the next one at once, and it tells the caller to back
// off only when a whole round has failed, so that a dead node costs one
// attempt and not a backoff.
//
// It is not safe for concurrent use: the one control loop owns it.
type Rotation struct {
	entries []string
	resolve Resolver

	last     string   // the target tried last (Target.Addr as text)
	advance  bool     // last failed: the next attempt goes to the one after it
	failures int      // consecutive failures since the last success
	targets  []Target // the last expansion
}

// New returns a rotation over entries (host:port each); resolve nil means
// DefaultResolver.
func New(entries []string, resolve Resolver) *Rotation {
	if resolve == nil {
		resolve = DefaultResolver
	}
	return &Rotation{entries: entries, resolve: resolve}
}

// Several reports whether there is more than one address to fail over to,
// as configured or as resolved last.
func (r *Rotation) Several() bool { return len(r.entries) > 1 || len(r.targets) > 1 }

// Next resolves the entries again (DNS may have changed) and returns the
// target to dial.
func (r *Rotation) Next(ctx context.Context) (Target, error) {
	ts, err := Expand(ctx, r.entries, r.resolve)
	r.targets = ts
	if err != nil {
		return Target{}, err
	}
	i := Pick(keys(ts), r.last, r.advance)
	r.last, r.advance = ts[i].Addr.String(), false
	return ts[i], nil
}

// Peek is the target Next would return if DNS has not changed, for a log
// line that names where the link goes next.
func (r *Rotation) Peek() (Target, bool) {
	if len(r.targets) == 0 {
		return Target{}, false
	}
	return r.targets[Pick(keys(r.targets), r.last, r.advance)], true
}

func keys(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Addr.String()
	}
	return out
}

// Failed records that the target Next returned did not work; it reports
// whether a whole round of targets failed since the last success (the
// caller then backs off).
func (r *Rotation) Failed() (roundDone bool) {
	r.advance = true
	r.failures++
	if r.failures >= max(len(r.targets), 1) {
		r.failures = 0
		return true
	}
	return false
}

// Succeeded records that the target Next returned worked: the round of
// failures starts again from it.
func (r *Rotation) Succeeded() { r.failures = 0 }

// Pick returns the index in targets to dial: last again if it is still
// listed and did not fail, the one after it if it failed, and the first
// when last is unknown (first attempt, or DNS no longer lists it).
func Pick(targets []string, last string, advance bool) int {
	for i, t := range targets {
		if t == last {
			if advance {
				return (i + 1) % len(targets)
			}
			return i
		}
	}
	return 0
}
