package wire

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// answer runs the far side of a hello on a pipe: it reads the hello and
// writes reply (nothing if reply is nil).
func answer(t *testing.T, reply Message) (net.Conn, <-chan Message) {
	t.Helper()
	near, far := net.Pipe()
	got := make(chan Message, 1)
	var wg sync.WaitGroup
	t.Cleanup(func() { near.Close(); far.Close(); wg.Wait() })
	wg.Go(func() {
		m, err := Read(far, ClientToControl)
		if err != nil {
			close(got)
			return
		}
		got <- m
		if reply != nil {
			_ = Write(far, reply)
		}
	})
	return near, got
}

func TestHandshakeWelcome(t *testing.T) {
	st, got := answer(t, &Welcome{Observed: "192.0.2.1:5"})
	w, err := Handshake(context.Background(), st, &Hello{Token: "t"}, ControlToClient)
	if err != nil || w.Observed != "192.0.2.1:5" {
		t.Fatalf("Handshake = %+v, %v", w, err)
	}
	if h, ok := (<-got).(*Hello); !ok || h.Token != "t" {
		t.Fatalf("the far side read %+v", h)
	}
	// The deadline is gone: a later read waits.
	done := make(chan error, 1)
	go func() { _, err := Read(st, ControlToClient); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("read after the hello ended at once: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	st.Close()
	<-done
}

func TestHandshakeRefused(t *testing.T) {
	st, _ := answer(t, &Error{Code: CodeUnauthorized, Message: "invalid token"})
	_, err := Handshake(context.Background(), st, &Hello{Token: "t"}, ControlToClient)
	var werr *Error
	if !errors.As(err, &werr) || werr.Code != CodeUnauthorized {
		t.Fatalf("err = %v, want the *Error", err)
	}
}

func TestHandshakeOtherAnswer(t *testing.T) {
	st, _ := answer(t, &Relays{})
	_, err := Handshake(context.Background(), st, &Hello{}, ControlToClient)
	var werr *Error
	if err == nil || errors.As(err, &werr) {
		t.Fatalf("err = %v, want a refusal of relays", err)
	}
	st, _ = answer(t, &RelayAuthDelta{}) // not even in the set
	if _, err := Handshake(context.Background(), st, &Hello{}, ControlToClient); !errors.Is(err, ErrUnexpectedKind) {
		t.Fatalf("err = %v, want ErrUnexpectedKind", err)
	}
}

func TestHandshakeDeadline(t *testing.T) {
	st, _ := answer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Handshake(ctx, st, &Hello{}, ControlToClient)
	if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestHandshakeCanceled(t *testing.T) {
	st, _ := answer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := Handshake(ctx, st, &Hello{}, ControlToClient); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}
