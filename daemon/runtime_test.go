package daemon

import (
	"reflect"
	"testing"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/restrict"
	"github.com/connetd/connetd/store"
)

func TestOverlayAddsHidesAndReplacesFileEndpoints(t *testing.T) {
	f := &config.File{Client: &config.Client{
		Sources:      map[string]config.Source{"a": {Addr: ":1"}, "b": {Addr: ":2"}},
		Destinations: map[string]config.Destination{"x": {Addr: ":3"}},
	}}
	o := &overlay{
		Sources:      map[string]*config.Source{"b": nil, "c": {Addr: ":4"}, "a": {Addr: ":9", Route: "relay"}},
		Destinations: map[string]*config.Destination{},
	}
	e := effective(f, o)
	want := map[string]config.Source{"a": {Addr: ":9", Route: "relay"}, "c": {Addr: ":4"}}
	if !reflect.DeepEqual(e.Client.Sources, want) {
		t.Fatalf("sources %v, want %v", e.Client.Sources, want)
	}
	if len(f.Client.Sources) != 2 || f.Client.Sources["a"].Addr != ":1" {
		t.Fatal("effective modified the file's configuration")
	}
	if !reflect.DeepEqual(e.Client.Destinations, f.Client.Destinations) {
		t.Fatalf("destinations %v changed without an overlay entry", e.Client.Destinations)
	}
}

func TestOverlayTokensKeepRestrictionsAligned(t *testing.T) {
	r0, _ := restrict.ParseToken(nil, nil, "^a", "")
	r1, _ := restrict.ParseToken(nil, nil, "^b", "")
	o := &overlay{Tokens: []string{"new"}, Revoked: []string{"t0"}}
	toks, rs := overlayTokens([]string{"t0", "t1"}, []restrict.Token{r0, r1}, o)
	if !reflect.DeepEqual(toks, []string{"t1", "new"}) {
		t.Fatalf("tokens %v", toks)
	}
	if len(rs) != 2 || rs[0].Names.String() != "^b" || rs[1].Names != nil {
		t.Fatalf("restrictions not aligned with tokens: %+v", rs)
	}
	if toks, rs := overlayTokens([]string{"t0"}, nil, o); !reflect.DeepEqual(toks, []string{"new"}) || rs != nil {
		t.Fatalf("without restrictions: %v %v", toks, rs)
	}
}

func TestOverlaySurvivesReopeningTheStore(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	o, err := loadOverlay(st)
	if err != nil || len(o.Sources) != 0 {
		t.Fatalf("fresh overlay: %+v, %v", o, err)
	}
	o.Sources["web"] = &config.Source{Addr: ":8080", Route: "direct"}
	o.Sources["gone"] = nil
	o.Revoked = []string{"old"}
	if err := o.save(st); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st, err = store.Open(dir); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	back, err := loadOverlay(st)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, o) {
		t.Fatalf("reloaded %+v, want %+v", back, o)
	}
	if s, ok := back.Sources["gone"]; !ok || s != nil {
		t.Fatal("a hidden file endpoint did not survive as hidden")
	}
}
