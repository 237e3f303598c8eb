package main

import (
	"fmt"
	"time"
)

// maxSkew is how far this host's clock may be from control's before
// diagnose calls it a problem: certificates become valid a little in the
// past, so small skews pass TLS, but minutes make both TLS failures and
// logs that cannot be lined up across hosts.
const maxSkew = 30 * time.Second

func skewText(st diagStatus) string {
	if st.ClockSkewMs == nil {
		if st.Role == "client" {
			return "not measured yet (no welcome from control with its time)"
		}
		return "not measured: only a client compares its clock with control's"
	}
	d := time.Duration(*st.ClockSkewMs) * time.Millisecond
	switch {
	case d > 0:
		return fmt.Sprintf("control is %s ahead", d)
	case d < 0:
		return fmt.Sprintf("control is %s behind", -d)
	}
	return "none"
}

// skewProblem flags a clock more than maxSkew from control's.
func skewProblem(st diagStatus) (problem, bool) {
	if st.ClockSkewMs == nil {
		return problem{}, false
	}
	d := time.Duration(*st.ClockSkewMs) * time.Millisecond
	if d.Abs() <= maxSkew {
		return problem{}, false
	}
	return problem{Check: "clock",
		Detail: fmt.Sprintf("clock skew: %s (more than %s)", skewText(st), maxSkew),
		Advice: "synchronize the clocks of this host and control (systemd-timesyncd, chrony): TLS certificate validity and lining up logs across hosts depend on it"}, true
}
