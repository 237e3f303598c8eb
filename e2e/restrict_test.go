package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connetd/connetd/wire"
)

// name-matches keeps connet's meaning (the pattern may match anywhere in
// the name) unless name-matches-anchored is set, and then it must match
// the whole name: the real server refuses "evil-web" for "web" only then,
// and warns at start about the unanchored pattern.
func TestNameMatchesAnchoredOnlyWhenAsked(t *testing.T) {
	for _, anchored := range []bool{false, true} {
		t.Run(map[bool]string{false: "connet's meaning", true: "anchored"}[anchored], func(t *testing.T) {
			tp := newTopology(t)
			conf := filepath.Join(tp.dir, "server.toml")
			base, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			extra := "\n[[server.token-restriction]]\nname-matches = \"web|api\"\n"
			if anchored {
				extra += "name-matches-anchored = true\n"
			}
			extra += "\n[[server.token-restriction]]\n"
			writeFile(t, tp.dir, "server.toml", string(base)+extra)
			tp.startServer(t)
			warned := strings.Contains(tp.server.out.String(), "is not anchored at the start")
			if warned == anchored {
				t.Fatalf("warning about the unanchored pattern: %v, want %v", warned, !anchored)
			}

			c := dialRaw(t, tp, "client-d-token")
			for _, name := range []string{"web", "api", "evil-web", "apiary"} {
				c.send(t, &wire.Announce{Endpoint: name, Role: "destination", Route: wire.RouteAny})
				var refused bool
				for {
					m := c.read(t)
					if p, ok := m.(*wire.Peers); ok && p.Endpoint == name {
						break
					}
					if e, ok := m.(*wire.Error); ok && e.Endpoint == name {
						if e.Code != wire.CodeForbidden {
							t.Fatalf("%s refused with %q (%s), want forbidden", name, e.Code, e.Message)
						}
						refused = true
						break
					}
				}
				whole := name == "web" || name == "api"
				if want := anchored && !whole; refused != want {
					t.Fatalf("%s: refused %v, want %v", name, refused, want)
				}
			}
		})
	}
}
