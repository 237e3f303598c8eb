// Package changes is a broadcast of "something changed": the data plane
// signals it, and everyone who shows state (STATUS=, the watchdog, D-Bus
// properties) waits on it instead of polling.
package changes

import "sync"

// Signal wakes every waiter once per Notify. The zero value is ready to use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns a channel that is closed at the next Notify. Waiters take a
// fresh channel after each wake-up and then read the state, so a change
// between the wake-up and the read is never lost.
func (s *Signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes the current waiters.
func (s *Signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
