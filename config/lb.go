package config

// LB are a tcp source's load-balancing keys, as connet v0.15 names them.
type LB struct {
	// LBPolicy orders the destinations of the source's name: "" (the
	// default order: direct before relayed, then lower RTT),
	// "least-latency", "least-conns", "round-robin" or "random".
	LBPolicy string `toml:"lb-policy"`
	// LBRetry says which further destinations a connection tries when one
	// refuses it: "" (none), "count", "timed" or "all".
	LBRetry string `toml:"lb-retry"`
	// LBRetryMax is the tries of "count", the milliseconds of "timed".
	LBRetryMax int `toml:"lb-retry-max"`
}

// lb checks the lb-* keys of a source: a plain tcp source's (kind is ""
// or "tcp"). A UDP flow keeps its destination; the tls, http and ws
// kinds open their streams their own way and do not balance yet.
func (v *validator) lb(ep keyPath, proto, kind string, l *LB) {
	why := ""
	switch {
	case proto == "udp":
		why = "applies only to tcp sources: a UDP flow keeps its destination"
	case kind != "" && kind != "tcp":
		why = "applies only to tcp:// sources: a " + kind + " source does not balance its connections"
	}
	if why != "" {
		for k, set := range map[string]bool{"lb-policy": l.LBPolicy != "", "lb-retry": l.LBRetry != "", "lb-retry-max": l.LBRetryMax != 0} {
			if set {
				v.fail(ep.key(k), nil, "%s", why)
			}
		}
		return
	}
	l.LBPolicy = v.oneOf(ep.key("lb-policy"), l.LBPolicy, "", "least-latency", "least-conns", "round-robin", "random")
	l.LBRetry = v.oneOf(ep.key("lb-retry"), l.LBRetry, "", "count", "timed", "all")
	switch {
	case l.LBRetryMax < 0:
		v.fail(ep.key("lb-retry-max"), nil, "%d is negative", l.LBRetryMax)
	case l.LBRetryMax == 0 && (l.LBRetry == "count" || l.LBRetry == "timed"):
		what := "tries"
		if l.LBRetry == "timed" {
			what = "milliseconds"
		}
		v.fail(ep.key("lb-retry"), nil, "%q needs lb-retry-max, the %s", l.LBRetry, what)
	case l.LBRetryMax > 0 && l.LBRetry != "count" && l.LBRetry != "timed":
		v.warn(ep.key("lb-retry-max"), "ignored: it applies to lb-retry \"count\" or \"timed\"")
	}
}
