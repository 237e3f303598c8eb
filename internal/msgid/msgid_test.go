package msgid

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strings"
	"testing"
)

// An id is 128 bits in the journal's form: 32 lowercase hex digits, no
// dashes (journalctl MESSAGE_ID= matches the text exactly).
var idForm = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestIDsAreDistinct128BitHex(t *testing.T) {
	seen := map[ID]string{}
	for name, id := range All {
		if !idForm.MatchString(string(id)) {
			t.Errorf("%s = %q: not 32 lowercase hex digits", name, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share the id %s", name, other, id)
		}
		seen[id] = name
	}
}

// TestAllListsEveryConstant reads msgid.go itself, so that an id added as a
// constant but forgotten in All (and so in the catalog test) is caught.
func TestAllListsEveryConstant(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "msgid.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]bool{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "ID" {
				continue
			}
			for _, n := range v.Names {
				consts[n.Name] = true
				if _, ok := All[n.Name]; !ok {
					t.Errorf("constant %s is missing from All", n.Name)
				}
			}
		}
	}
	for name := range All {
		if !consts[name] {
			t.Errorf("All[%q] names no constant of type ID", name)
		}
	}
}

func TestAttrKeyIsMessageID(t *testing.T) {
	a := PeerPathUp.Attr()
	if a.Key != Key || a.Value.String() != string(PeerPathUp) {
		t.Errorf("Attr() = %v", a)
	}
}

// TestDocsTableListsEveryID keeps docs/journal.md in step with the constants.
func TestDocsTableListsEveryID(t *testing.T) {
	b, err := os.ReadFile("../../docs/journal.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		id := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if idForm.MatchString(id) {
			rows[id] = strings.Trim(strings.TrimSpace(cells[2]), "`")
		}
	}
	for name, id := range All {
		if rows[string(id)] != name {
			t.Errorf("docs/journal.md: %s (%s) has no row, or a row naming %q", name, id, rows[string(id)])
		}
	}
	if len(rows) != len(All) {
		t.Errorf("docs/journal.md has %d id rows, want %d", len(rows), len(All))
	}
}

// TestApplianceUsesKnownIDs: appliance/run.sh queries the journal by id; a
// changed id there or here would make it look for an event never logged.
func TestApplianceUsesKnownIDs(t *testing.T) {
	b, err := os.ReadFile("../../appliance/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	known := map[ID]bool{}
	for _, id := range All {
		known[id] = true
	}
	found := regexp.MustCompile(`\b[0-9a-f]{32}\b`).FindAllString(string(b), -1)
	if len(found) == 0 {
		t.Error("appliance/run.sh queries no MESSAGE_ID")
	}
	for _, id := range found {
		if !known[ID(id)] {
			t.Errorf("appliance/run.sh uses %s, which is not in msgid.All", id)
		}
	}
}
