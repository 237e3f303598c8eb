package control_test

import (
	"reflect"
	"testing"

	"github.com/connetd/connetd/control"
)

// The status tells each client's token by its index in the current
// configuration, so metrics can count clients per token without it.
func TestStatusTellsEachClientsTokenIndex(t *testing.T) {
	s := start(t, control.Config{Auth: control.Auth{ClientTokens: []string{"a", "b"}}})
	s.join(t, "b")
	s.join(t, "b")
	s.join(t, "a")
	byIndex := func() map[int]int {
		m := map[int]int{}
		for _, c := range s.srv.Status().Clients {
			m[c.TokenIndex]++
		}
		return m
	}
	if got, want := byIndex(), map[int]int{0: 1, 1: 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("clients by token index %v, want %v", got, want)
	}
	if n := s.srv.Status().ClientTokens; n != 2 {
		t.Fatalf("client_tokens %d, want 2", n)
	}
	// A reload that moves the tokens moves the indices with them.
	s.srv.SetAuth(control.Auth{ClientTokens: []string{"x", "b", "a"}})
	if got, want := byIndex(), map[int]int{2: 1, 1: 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the reload, clients by token index %v, want %v", got, want)
	}
}
