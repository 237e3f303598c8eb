package client

import "time"

// clockSkew estimates control's clock minus ours from the hello round
// trip: control stamped its welcome (serverMs, Unix milliseconds) somewhere
// between our sending the hello and receiving the welcome, so the midpoint
// is the best guess of our time then, off by at most half the round trip
// (and control's token check). ok is false without a stamp (an older
// control).
func clockSkew(serverMs int64, sent, recv time.Time) (time.Duration, bool) {
	if serverMs == 0 {
		return 0, false
	}
	mid := sent.Add(recv.Sub(sent) / 2)
	return time.UnixMilli(serverMs).Sub(mid).Round(time.Millisecond), true
}

func (l *controlLink) setSkew(d time.Duration) {
	l.mu.Lock()
	l.skew, l.skewKnown = d, true
	l.mu.Unlock()
}

// clockSkew is control's clock minus ours, if a welcome told it.
func (l *controlLink) clockSkew() (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.skew, l.skewKnown
}
