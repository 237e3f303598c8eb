package config

import (
	"testing"

	"github.com/BurntSushi/toml"
)

func TestScanLayout(t *testing.T) {
	src := doc(
		`# comment [x]`, // 1
		`top = 1`,
		`[a]`,
		`b.c = "x"     # dotted`,
		`"q k".'lit' = 2`, // 5
		`s = """`,
		`[fake]`,
		`"""`,
		`arr = [ 1,`,
		`  2, # ]`, // 10
		`]`,
		`[a."d.e"]`,
		`f = { g = 1, h = [`,
		`  { i = 1 },`,
		`  { j = 2 },`, // 15
		`] }`,
		`[[arr2]]`,
		`k = 1`,
		`[[arr2]]`,
		``, // 20
		`l = 'x'`,
		`[a.b.deep]`,
		`m = "\"quoted\" ]"`,
		`"esc\u0041" = 1`,
		`dt = 1979-05-27 07:32:00Z`, // 25
		`n = '''it''''`,
		`o = 1`,
	)
	// The test is only meaningful on TOML the decoder accepts.
	var decoded map[string]any
	if _, err := toml.Decode(src, &decoded); err != nil {
		t.Fatalf("test document is not valid TOML: %v", err)
	}
	lines := scanLayout(src)
	tests := []struct {
		path keyPath
		line int
	}{
		{key("top"), 2},
		{key("a"), 3},
		{key("a", "b"), 4},
		{key("a", "b", "c"), 4},
		{key("a", "q k", "lit"), 5},
		{key("a", "s"), 6},
		{key("fake"), 0},
		{key("a", "arr"), 9},
		{key("a", "d.e"), 12},
		{key("a", "d.e", "f", "g"), 13},
		{key("a", "d.e", "f", "h"), 13},
		{key("a", "d.e", "f", "h").at(0).key("i"), 14},
		{key("a", "d.e", "f", "h").at(1).key("j"), 15},
		{key("arr2"), 17},
		{key("arr2").at(0).key("k"), 18},
		{key("arr2").at(1), 19},
		{key("arr2").at(1).key("l"), 21},
		{key("a", "b", "deep"), 22},
		{key("a", "b", "deep", "m"), 23},
		{key("a", "b", "deep", "escA"), 24},
		{key("a", "b", "deep", "dt"), 25},
		{key("a", "b", "deep", "n"), 26},
		{key("a", "b", "deep", "o"), 27},
		// Missing keys fall back to the nearest table that exists.
		{key("a", "missing"), 3},
		{key("arr2").at(7).key("k"), 17},
		{key("nothing", "here"), 0},
	}
	for _, tt := range tests {
		if got := lines.lineOf(tt.path); got != tt.line {
			t.Errorf("lineOf(%s) = %d, want %d", tt.path, got, tt.line)
		}
	}
	if got := lines.lineOfKey(toml.Key{"arr2", "l"}); got != 21 {
		t.Errorf("lineOfKey(arr2.l) = %d, want 21", got)
	}
	if got := lines.lineOfKey(toml.Key{"a", "d.e", "f", "h", "j"}); got != 15 {
		t.Errorf("lineOfKey(a.\"d.e\".f.h.j) = %d, want 15", got)
	}
}

func TestKeyPathString(t *testing.T) {
	eq(t, key("client", "destinations", "my svc", "route").String(), `client.destinations."my svc".route`)
	eq(t, key("server", "token-restriction").at(2).key("role-matches").String(), `server.token-restriction[2].role-matches`)
	eq(t, key("client", "sources", "").String(), `client.sources.""`)
}
