package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// inTempDir makes a fresh working directory holding files (path -> content),
// because relative paths in configs are relative to the working directory.
func inTempDir(t *testing.T, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// stdFiles are the files the test configs refer to.
var stdFiles = map[string]string{
	"cert.pem":   "not parsed here",
	"key.pem":    "not parsed here",
	"token.txt":  "# client token\n\n  tok-1  \n",
	"tokens.txt": "file-a\n# comment\n\nfile-b\n",
	"empty.txt":  "# nothing\n",
}

// wantErr checks that err's first line is exactly "FILE:LINE: KEY: ..." (or
// without the parts given as zero) and contains msg.
func wantErr(t *testing.T, err error, file string, line int, key, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s:%d: %s: ...%s...", file, line, key, msg)
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	prefix := ""
	if file != "" {
		prefix = file
		if line > 0 {
			prefix += fmt.Sprintf(":%d", line)
		}
		prefix += ": "
	}
	if key != "" {
		prefix += key + ": "
	}
	if !strings.HasPrefix(first, prefix) || !strings.Contains(first, msg) {
		t.Fatalf("got error\n\t%s\nwant it to start with %q and contain %q", err, prefix, msg)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *config.Error", err)
	}
	if ce.Line != line {
		t.Errorf("Error.Line = %d, want %d", ce.Line, line)
	}
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
