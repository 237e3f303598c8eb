package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzLoad checks that no file content makes Load panic or hang, and that
// every error it returns starts with the file name, as users rely on that to
// find the problem.
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "seed", "*.toml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"[client]\ntoken = \"t\"\n[client.destinations.\"a\\u0000b\"]\naddr = \":1\"\n",
		"[server]\ntoken-restriction = [{}, {role-matches = 1}]\n",
		"x = \"\"\"\n[y]\n\"\"\"\n[[z]]\n[z.w]\nq = {a = [1, {b = 2}]}\n",
		"[client]\ntoken = 5\n",
		"a.\"b\".'c' = 1\n",
		"[client]\ntoken = \"t\"\n[client.destinations.a]\nurl = \"https://h:443/api\"\ncas-file = \"insecure-skip-verify\"\nserver-name = \"x\"\ndial-timeout = 10\n[client.destinations.f]\nurl = \"file:./www\"\n[client.sources.b]\nurl = \"http://:80/p\"\n",
	} {
		f.Add([]byte(s))
	}

	// One file per worker process, rewritten for each input: a directory per
	// input would slow fuzzing several times over. Inputs of one process run
	// one after the other, since the target does not call t.Parallel.
	path := filepath.Join(f.TempDir(), "fuzz.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		err := os.WriteFile(path, data, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			cfg *File
			err error
		}
		done := make(chan result, 1)
		go func() {
			scanLayout(string(data)) // also on text the decoder rejects
			cfg, err := Load(path)
			done <- result{cfg, err}
		}()
		var cfg *File
		select {
		case r := <-done:
			cfg, err = r.cfg, r.err
		case <-time.After(10 * time.Second):
			t.Fatalf("Load did not return within 10s on %q", data)
		}
		if err == nil {
			return
		}
		if cfg != nil {
			t.Errorf("Load returned a config along with error %v", err)
		}
		for line := range strings.Lines(err.Error()) {
			if !strings.HasPrefix(line, path) {
				t.Fatalf("error line does not start with the file name %s:\n%s", path, err)
			}
		}
	})
}
