package client

import (
	"context"
	"fmt"
	"testing"

	"github.com/quic-go/quic-go"
)

func TestOnlyAPathThePeerEndedIsReDialedWithoutAPunch(t *testing.T) {
	for _, c := range []struct {
		cause error
		want  bool
	}{
		{&quic.StatelessResetError{}, true},
		{fmt.Errorf("wrapped: %w", &quic.StatelessResetError{}), true},
		{&quic.ApplicationError{Remote: true, ErrorMessage: "client stopping"}, true},
		{&quic.ApplicationError{Remote: false, ErrorMessage: "network changed"}, false},
		{&quic.IdleTimeoutError{}, false},
		{&quic.TransportError{Remote: true, ErrorCode: 0x12a}, false},
		{context.Canceled, false},
	} {
		if got := endedByPeer(c.cause); got != c.want {
			t.Errorf("endedByPeer(%v) = %v, want %v", c.cause, got, c.want)
		}
	}
}
