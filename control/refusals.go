package control

import "sync/atomic"

// Refusal reasons, as counted in Status.Refusals: a fixed set, so metrics
// labelled by reason stay few.
const (
	RefusedInvalidToken    = "invalid_token"
	RefusedAddress         = "address_not_allowed"
	RefusedBadRequest      = "bad_request"
	RefusedConnectionLimit = "connection_limit"
	RefusedEndpointLimit   = "endpoint_limit"
	RefusedPunchRate       = "punch_rate"
)

var refusalReasons = []string{RefusedInvalidToken, RefusedAddress, RefusedBadRequest,
	RefusedConnectionLimit, RefusedEndpointLimit, RefusedPunchRate}

// refusals counts what control refused since it started, by reason.
type refusals struct {
	n [6]atomic.Int64 // in the order of refusalReasons
}

func (r *refusals) add(reason string) {
	for i, name := range refusalReasons {
		if name == reason {
			r.n[i].Add(1)
			return
		}
	}
}

func (r *refusals) snapshot() map[string]int64 {
	out := make(map[string]int64, len(refusalReasons))
	for i, name := range refusalReasons {
		out[name] = r.n[i].Load()
	}
	return out
}
