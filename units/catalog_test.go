package units

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/connetd/connetd/internal/msgid"
)

// catalogEntry is one "-- ID" section of connetd.catalog.
type catalogEntry struct {
	id      string
	headers map[string]string
	body    string
}

// readCatalog parses the catalog the way journalctl reads it: comments (#)
// outside entries, a "-- ID" line, header lines up to a blank line, text.
func readCatalog(t *testing.T, path string) []catalogEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []catalogEntry
	var cur *catalogEntry
	inHeaders := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "-- "):
			entries = append(entries, catalogEntry{id: strings.TrimPrefix(line, "-- "), headers: map[string]string{}})
			cur, inHeaders = &entries[len(entries)-1], true
		case cur == nil:
			if line != "" && !strings.HasPrefix(line, "#") {
				t.Errorf("%s:%d: text before the first entry: %q", path, n, line)
			}
		case inHeaders && line == "":
			inHeaders = false
		case inHeaders:
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				t.Errorf("%s:%d: %s: header line without \"Key: \": %q", path, n, cur.id, line)
				continue
			}
			cur.headers[k] = v
		default:
			cur.body += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return entries
}

var idForm = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestCatalogMatchesMessageIDs: every id in internal/msgid has exactly one
// catalog entry, every entry is for one of them, and each says what it is
// and who defines it.
func TestCatalogMatchesMessageIDs(t *testing.T) {
	entries := readCatalog(t, "connetd.catalog")
	byID := map[string]string{}
	for name, id := range msgid.All {
		byID[string(id)] = name
	}
	count := map[string]int{}
	for _, e := range entries {
		count[e.id]++
		if !idForm.MatchString(e.id) {
			t.Errorf("catalog entry %q: not 32 lowercase hex digits", e.id)
		}
		if _, ok := byID[e.id]; !ok {
			t.Errorf("catalog entry %s: no such id in internal/msgid", e.id)
		}
		if !strings.HasPrefix(e.headers["Subject"], "connetd ") {
			t.Errorf("catalog entry %s: Subject %q should start with connetd", e.id, e.headers["Subject"])
		}
		if e.headers["Defined-By"] != "connetd" {
			t.Errorf("catalog entry %s: Defined-By %q, want connetd", e.id, e.headers["Defined-By"])
		}
		if e.headers["Support"] == "" {
			t.Errorf("catalog entry %s: no Support", e.id)
		}
		if strings.TrimSpace(e.body) == "" {
			t.Errorf("catalog entry %s: no text", e.id)
		}
	}
	for id, name := range byID {
		if count[id] != 1 {
			t.Errorf("msgid.%s (%s): %d catalog entries, want 1", name, id, count[id])
		}
	}
}

// TestCatalogImportsWithJournalctl builds a catalog database from the file
// under a temporary root, as journalctl --update-catalog does in the
// packages' scripts, and lists it back: journalctl refuses a malformed file
// and shows "n/a" for an entry whose headers it could not read.
func TestCatalogImportsWithJournalctl(t *testing.T) {
	need(t, "journalctl")
	root := t.TempDir()
	dir := filepath.Join(root, "usr/lib/systemd/catalog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("connetd.catalog")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "connetd.catalog"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("journalctl", "--root="+root, "--update-catalog").CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("journalctl --update-catalog: %v\n%s", err, out)
	}
	out, err := exec.Command("journalctl", "--root="+root, "--list-catalog").Output()
	if err != nil {
		t.Fatalf("journalctl --list-catalog: %v\n%s", err, out)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		id, rest, _ := strings.Cut(line, " ")
		listed[id] = rest
	}
	for name, id := range msgid.All {
		rest, ok := listed[string(id)]
		if !ok {
			t.Errorf("msgid.%s (%s) is not in the imported catalog", name, id)
			continue
		}
		if !strings.HasPrefix(rest, "connetd: connetd ") {
			t.Errorf("msgid.%s (%s) listed as %q, want its Defined-By and Subject", name, id, rest)
		}
	}
	if len(listed) != len(msgid.All) {
		t.Errorf("imported catalog has %d entries, want %d:\n%s", len(listed), len(msgid.All), out)
	}
}

// TestEveryMessageIDIsLogged: an id no log call uses would document an event
// that never reaches the journal.
func TestEveryMessageIDIsLogged(t *testing.T) {
	used := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || path == filepath.Join("..", "internal", "msgid")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for name := range msgid.All {
			if strings.Contains(string(b), "msgid."+name+".Attr()") {
				used[name] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range msgid.All {
		if !used[name] {
			t.Errorf("msgid.%s is attached to no log call", name)
		}
	}
}
