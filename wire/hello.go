package wire

import (
	"context"
	"fmt"
	"io"
	"time"
)

// HelloTimeout bounds how long either side of a hello waits for the other:
// a few seconds, since an unauthenticated connection holds memory until
// its hello has been checked.
const HelloTimeout = 5 * time.Second

// Stream is what a hello runs on; a QUIC stream is one. Its deadline is
// what bounds the exchange.
type Stream interface {
	io.ReadWriter
	SetDeadline(time.Time) error
}

// Handshake sends hello on st and waits for the answer, read from set: a
// Welcome is returned, an Error is returned as the error (errors.As finds
// it), anything else is refused. It gives up after HelloTimeout or when ctx
// ends, whichever is first; the stream's deadline is cleared on success.
func Handshake(ctx context.Context, st Stream, hello Message, set Set) (*Welcome, error) {
	deadline := time.Now().Add(HelloTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = st.SetDeadline(deadline)
	// Ending ctx must unblock a Read in progress: an expired deadline does.
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	m, err := exchange(st, hello, set)
	if !stop() {
		return nil, fmt.Errorf("%s: %w", hello.kind(), context.Cause(ctx))
	}
	_ = st.SetDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *Welcome:
		return m, nil
	case *Error:
		return nil, m
	}
	return nil, fmt.Errorf("%s answered with %s instead of welcome", hello.kind(), m.kind())
}

func exchange(st Stream, hello Message, set Set) (Message, error) {
	if err := Write(st, hello); err != nil {
		return nil, err
	}
	m, err := Read(st, set)
	if err != nil {
		return nil, fmt.Errorf("read answer to %s: %w", hello.kind(), err)
	}
	return m, nil
}
