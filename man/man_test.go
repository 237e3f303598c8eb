// Package man holds connetd's manual pages, written in mdoc: connetd(8),
// connetctl(1) and connetd.toml(5). Its tests keep them in step with the
// code: every configuration key, default, flag and connetctl command must
// be documented, nothing documented may be gone from the code, the examples
// must load, and mandoc must find nothing to complain about.
package man

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"go/ast"
	"go/parser"
	"go/token"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/internal/testenv"
)

var pages = []string{"connetd.8", "connetctl.1", "connetd.toml.5"}

// item is one ".It" entry of a page: its head line and the lines that
// follow it up to the next item or the end of its list.
type item struct {
	head string
	body string
}

// section returns the lines of the ".Sh name" section.
func section(t *testing.T, page, name string) []string {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		if strings.HasPrefix(line, ".Sh ") {
			in = strings.TrimSpace(strings.TrimPrefix(line, ".Sh ")) == name
			continue
		}
		if in {
			out = append(out, line)
		}
	}
	if out == nil {
		t.Fatalf("%s has no section %s", page, name)
	}
	return out
}

// unescape drops mdoc's zero-width escapes and quotes from a heading.
func unescape(s string) string {
	return strings.Trim(strings.ReplaceAll(strings.TrimSpace(s), `\&`, ""), `"`)
}

// manKeys reads the KEYS section of connetd.toml(5): each ".It Cm KEY"
// under ".Ss [TABLE]" (or "[[TABLE]]", or "Top-level keys") documents the
// key TABLE.KEY.
func manKeys(t *testing.T) map[string]item {
	t.Helper()
	keys := map[string]item{}
	table := ""
	var cur *item
	var curKey string
	flush := func() {
		if cur != nil {
			keys[curKey] = *cur
			cur = nil
		}
	}
	for _, line := range section(t, "connetd.toml.5", "KEYS") {
		switch {
		case strings.HasPrefix(line, ".Ss "):
			flush()
			h := unescape(strings.TrimPrefix(line, ".Ss "))
			if h == "Top-level keys" {
				table = ""
			} else {
				table = strings.Trim(h, "[]")
			}
		case strings.HasPrefix(line, ".It Cm "):
			flush()
			f := strings.Fields(line)
			curKey = f[2]
			if table != "" {
				curKey = table + "." + f[2]
			}
			if _, dup := keys[curKey]; dup {
				t.Errorf("connetd.toml.5 documents %s twice", curKey)
			}
			cur = &item{head: line}
		case strings.HasPrefix(line, ".El"):
			flush()
		default:
			if cur != nil {
				cur.body += line + "\n"
			}
		}
	}
	flush()
	return keys
}

// codeKeys lists every key config.File decodes, as dotted paths; a map of
// tables contributes ".NAME", and the role tables themselves are tables,
// not keys.
func codeKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string, root bool)
	walk = func(t reflect.Type, prefix string, root bool) {
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if f.Anonymous && name == "" {
				walk(f.Type, prefix, root) // its keys are the table's own, as TOML decodes them
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			full := name
			if prefix != "" {
				full = prefix + "." + name
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Struct:
				if !root {
					keys = append(keys, full)
				}
				walk(ft, full, false)
			case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
				keys = append(keys, full)
				walk(ft.Elem(), full+".NAME", false)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				keys = append(keys, full)
				walk(ft.Elem(), full, false)
			default:
				keys = append(keys, full)
			}
		}
	}
	walk(reflect.TypeFor[config.File](), "", true)
	slices.Sort(keys)
	return keys
}

func TestEveryConfigKeyIsDocumentedInConnetdToml5(t *testing.T) {
	documented := manKeys(t)
	code := codeKeys()
	if len(code) < 40 {
		t.Fatalf("found only %d keys in config.File; the reflection walk is broken: %v", len(code), code)
	}
	for _, k := range code {
		if _, ok := documented[k]; !ok {
			t.Errorf("config key %s exists in config/types.go but not in man/connetd.toml.5 (add an .It Cm line under its table)", k)
		}
	}
	for k := range documented {
		if !slices.Contains(code, k) {
			t.Errorf("man/connetd.toml.5 documents %s, which config/types.go does not decode", k)
		}
	}
}

func TestEveryConfigKeyStatesItsDefault(t *testing.T) {
	for k, it := range manKeys(t) {
		body := strings.ToLower(it.body)
		if !strings.Contains(body, "default") {
			t.Errorf("man/connetd.toml.5: %s does not state its default (or \"no default\")", k)
		}
	}
}

// usageFlag is one flag of config.Usage with the default its help states.
type usageFlag struct {
	role, name, def string
}

var defaultRe = regexp.MustCompile(`\(default ([^)]*)\)`)

func usageFlags(t *testing.T) []usageFlag {
	t.Helper()
	var out []usageFlag
	for _, role := range []string{"client", "server", "control", "relay"} {
		lines := strings.Split(config.Usage(role), "\n")
		for i, l := range lines {
			f := strings.Fields(l)
			if len(f) == 0 || !strings.HasPrefix(f[0], "--") {
				continue
			}
			uf := usageFlag{role: role, name: strings.TrimPrefix(f[0], "--")}
			if i+1 < len(lines) {
				if m := defaultRe.FindStringSubmatch(lines[i+1]); m != nil {
					uf.def = m[1]
				}
			}
			out = append(out, uf)
		}
	}
	if len(out) < 30 {
		t.Fatalf("read only %d flags from config.Usage; its format changed", len(out))
	}
	return out
}

// defaultWord is the part of a default that the page must show:
// "$STATE_DIRECTORY, else a temporary directory" → "STATE_DIRECTORY".
func defaultWord(def string) string {
	def, _, _ = strings.Cut(def, ",")
	def, _, _ = strings.Cut(def, " ")
	return strings.TrimPrefix(def, "$")
}

func TestConnetdToml5DefaultsMatchTheCode(t *testing.T) {
	documented := manKeys(t)
	checked := 0
	for _, f := range usageFlags(t) {
		if f.def == "" {
			continue
		}
		for _, k := range []string{f.name, f.role + "." + f.name,
			f.role + ".destinations.NAME." + f.name, f.role + ".sources.NAME." + f.name} {
			it, ok := documented[k]
			if !ok {
				continue
			}
			checked++
			if w := defaultWord(f.def); !strings.Contains(it.body, w) {
				t.Errorf("man/connetd.toml.5: %s: the code's default is %q (connetd %s --help), the page does not say %q", k, f.def, f.role, w)
			}
		}
	}
	if checked < 15 {
		t.Errorf("checked only %d defaults; the flag help or the page layout changed", checked)
	}
}

func TestEveryConnetdFlagIsDocumentedInConnetd8(t *testing.T) {
	documented := map[string]bool{}
	re := regexp.MustCompile(`^\.It Fl -(\S+)`)
	for _, l := range section(t, "connetd.8", "OPTIONS") {
		if m := re.FindStringSubmatch(l); m != nil {
			documented[m[1]] = true
		}
	}
	code := map[string]bool{}
	for _, f := range usageFlags(t) {
		code[f.name] = true
		if !documented[f.name] {
			t.Errorf("connetd %s --%s exists in the code but not in man/connetd.8 OPTIONS", f.role, f.name)
		}
	}
	for name := range documented {
		if !code[name] {
			t.Errorf("man/connetd.8 documents --%s, which no role of connetd has", name)
		}
	}
}

// commandNames reads the names of cmd/connetctl's command table: every
// string given as name: in the composite literal of "var commands".
func commandNames(t *testing.T, path string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if id.Name != "commands" || i >= len(vs.Values) {
					continue
				}
				ast.Inspect(vs.Values[i], func(n ast.Node) bool {
					kv, ok := n.(*ast.KeyValueExpr)
					if !ok {
						return true
					}
					if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "name" {
						if lit, ok := kv.Value.(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if s, err := strconv.Unquote(lit.Value); err == nil {
								names = append(names, s)
							}
						}
					}
					return true
				})
			}
		}
	}
	return names
}

func TestEveryConnetctlCommandIsDocumentedInConnetctl1(t *testing.T) {
	const table = "../cmd/connetctl/commands.go"
	if _, err := os.Stat(table); os.IsNotExist(err) {
		t.Skip("connetctl has no command table yet (cmd/connetctl/commands.go with var commands = []command{{name: ...}}); nothing to check")
	}
	names := commandNames(t, table)
	if len(names) == 0 {
		t.Fatalf("%s: found no name: fields in var commands; the table's shape changed, update this test", table)
	}
	// The words after Cm on each .It line: "tokens add" for
	// ".It Cm tokens add Ar TOKEN".
	var documented [][]string
	for _, l := range section(t, "connetctl.1", "COMMANDS") {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != ".It" || f[1] != "Cm" {
			continue
		}
		var words []string
		for _, w := range f[2:] {
			if len(w) >= 2 && w[0] >= 'A' && w[0] <= 'Z' && w[1] >= 'a' && w[1] <= 'z' && len(w) <= 3 {
				break // the next macro (Ar, Op, Oo, Fl)
			}
			words = append(words, w)
		}
		documented = append(documented, words)
	}
	for _, name := range names {
		want := strings.Fields(name)
		found := false
		for _, d := range documented {
			// A command is documented on its own line, as the group of
			// subcommands ("tokens" in "tokens add") or as a subcommand.
			if len(d) >= len(want) && (slices.Equal(d[:len(want)], want) || slices.Equal(d[len(d)-len(want):], want)) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("connetctl command %q is in %s but not in man/connetctl.1 COMMANDS", name, table)
		}
	}
}

// lintNoise is mandoc output that depends on which manuals the machine
// running the test has installed, not on the page: our own pages are not
// installed while their sources are tested.
var lintNoise = regexp.MustCompile(`referenced manual not found|outdated mandoc\.db`)

func TestManPagesAreLintClean(t *testing.T) {
	testenv.RequireTool(t, "mandoc", "mandoc")
	for _, p := range pages {
		out, _ := exec.Command("mandoc", "-Tlint", "-W", "style", p).CombinedOutput()
		for l := range strings.Lines(string(out)) {
			if strings.TrimSpace(l) != "" && !lintNoise.MatchString(l) {
				t.Errorf("mandoc -Tlint: %s", strings.TrimSpace(l))
			}
		}
	}
}

func TestManPagesRenderWithoutGroffWarnings(t *testing.T) {
	testenv.RequireTool(t, "man", "man-db")
	for _, p := range pages {
		cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", p)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "PAGER=cat")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("man -l %s: %v\n%s", p, err, stderr.String())
			continue
		}
		if stderr.Len() > 0 {
			t.Errorf("man -l %s warns:\n%s", p, stderr.String())
		}
		// Without a terminal, man-db still emboldens by overstriking.
		text := regexp.MustCompile(".\x08").ReplaceAllString(stdout.String(), "")
		if !strings.Contains(text, "SEE ALSO") {
			t.Errorf("man -l %s rendered no SEE ALSO section:\n%s", p, text)
		}
	}
}

// etcConnet makes what the examples refer to under /etc/connet, in a
// temporary directory: a certificate, its key and token files.
func etcConnet(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"relay.example.com"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"cert.pem":          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"key.pem":           string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})),
		"clients.tokens":    "# one token per line\nclient-d-token\n",
		"client-d.token":    "client-d-token\n",
		"credentials/token": "relay-token-1\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", filepath.Join(dir, "credentials"))
	return dir
}

// loadExample loads a configuration as connetd would, with /etc/connet/
// pointing at dir.
func loadExample(t *testing.T, dir, name, text string) {
	t.Helper()
	text = strings.ReplaceAll(text, "/etc/connet/", dir+"/")
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(p); err != nil {
		t.Errorf("%s does not load: %v\n%s", name, err, text)
	}
}

func TestShippedExampleConfigurationsLoad(t *testing.T) {
	dir := etcConnet(t)
	examples, _ := filepath.Glob("../docs/examples/*.toml")
	if len(examples) < 5 {
		t.Fatalf("found %d examples in docs/examples, want one per role and both client kinds", len(examples))
	}
	for _, e := range examples {
		b, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		loadExample(t, dir, filepath.Base(e), string(b))
	}
}

func TestConnetdToml5ExamplesLoad(t *testing.T) {
	dir := etcConnet(t)
	var blocks []string
	var cur *strings.Builder
	for _, l := range section(t, "connetd.toml.5", "EXAMPLES") {
		switch {
		case strings.HasPrefix(l, ".Bd -literal"):
			cur = &strings.Builder{}
		case l == ".Ed" && cur != nil:
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(strings.ReplaceAll(l, `\e`, `\`) + "\n")
		}
	}
	if len(blocks) < 5 {
		t.Fatalf("found %d examples in connetd.toml.5, want one per role and both client kinds", len(blocks))
	}
	for i, b := range blocks {
		loadExample(t, dir, "example-"+strconv.Itoa(i+1)+".toml", b)
	}
}
