package daemon

import "testing"

func TestJournalFieldsAreConnetPrefixedAndJournalSafe(t *testing.T) {
	for in, want := range map[string]string{
		"endpoint":    "CONNET_ENDPOINT",
		"peer":        "CONNET_PEER",
		"role":        "CONNET_ROLE",
		"route":       "CONNET_ROUTE",
		"path":        "CONNET_ROUTE", // the path a connection took is its route
		"fd_name":     "CONNET_FD_NAME",
		"status-addr": "CONNET_STATUS_ADDR",
		"message_id":  "MESSAGE_ID", // the journal's own field, for journalctl -x
	} {
		if got := journalField(in); got != want {
			t.Errorf("journalField(%q) = %q, want %q", in, got, want)
		}
	}
}
