package changes

import (
	"testing"
	"time"
)

func TestNotifyWakesEveryWaiterOnce(t *testing.T) {
	var s Signal
	a, b := s.C(), s.C()
	select {
	case <-a:
		t.Fatal("woken before any change")
	default:
	}
	s.Notify()
	for _, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatal("waiter not woken")
		}
	}
	c := s.C()
	select {
	case <-c:
		t.Fatal("a new wait was woken by an old change")
	default:
	}
	s.Notify()
	<-c
}
