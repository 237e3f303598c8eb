package client

import (
	"reflect"
	"testing"
)

func TestPathChangesReportEveryReason(t *testing.T) {
	var pc pathChanges
	pc.add(directUp)
	pc.add(directUp)
	pc.add(networkChange)
	pc.add(relayLost)
	want := map[string]int64{"direct_up": 2, "direct_lost": 0, "network_change": 1, "relay_up": 0, "relay_lost": 1}
	if got := pc.status(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
