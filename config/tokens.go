package config

import (
	"io"
	"os"
	"strings"
)

// maxTokenFile bounds what is read from a token file, so that pointing it at
// /dev/zero or a huge file fails instead of eating memory.
const maxTokenFile = 1 << 20

// readTokens reads one token per line, ignoring blank lines and # comments.
func (v *validator) readTokens(p keyPath, path string) ([]string, bool) {
	f, err := os.Open(path)
	if err != nil {
		v.fail(p, err, "%v", err)
		return nil, false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		v.fail(p, err, "%v", err)
		return nil, false
	}
	if len(data) > maxTokenFile {
		v.fail(p, nil, "%s is larger than %d bytes; it should hold tokens, one per line", path, maxTokenFile)
		return nil, false
	}
	var toks []string
	for line := range strings.Lines(string(data)) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		toks = append(toks, t)
	}
	return toks, true
}

// token resolves a single token given inline or in a file. When both are
// set the file wins, as in connet: its own specification sets both, and a
// file (e.g. a systemd credential) is the safer place for a secret.
func (v *validator) token(p keyPath, token, file string) string {
	switch {
	case file != "":
		toks, ok := v.readTokens(p.key("token-file"), file)
		if !ok {
			break
		}
		if len(toks) != 1 {
			v.fail(p.key("token-file"), nil, "%s holds %d tokens; it must hold exactly one", file, len(toks))
			break
		}
		return toks[0]
	case token != "":
		return token
	default:
		v.fail(p.key("token"), nil, "one of token or token-file is required")
	}
	return ""
}

// tokenList is the token array, or the tokens of the file when one is
// named: the file replaces the array, as token-file replaces token. ok is false when the list could not be determined, so that checks
// depending on its length are skipped instead of reporting nonsense.
func (v *validator) tokenList(p keyPath, listKey, fileKey string, list []string, file string, required bool) (toks []string, ok bool) {
	ok = true
	for i, t := range list {
		if strings.TrimSpace(t) == "" {
			v.fail(p.key(listKey), nil, "token %d of %d is empty", i+1, len(list))
			ok = false
		}
	}
	toks = append(toks, list...)
	if file != "" {
		var rok bool
		toks, rok = v.readTokens(p.key(fileKey), file)
		ok = ok && rok
	}
	if !ok {
		return nil, false
	}
	if len(toks) == 0 {
		switch {
		case !required:
			return nil, true
		case len(list) == 0 && file == "":
			v.fail(p.key(listKey), nil, "one of %s or %s is required", listKey, fileKey)
		case file != "":
			v.fail(p.key(fileKey), nil, "no tokens: %s holds none", file)
		default:
			v.fail(p.key(listKey), nil, "no tokens: %s is empty", listKey)
		}
		return nil, false
	}
	// Tokens are secrets, so duplicates are reported by position only.
	seen := make(map[string]int, len(toks))
	for i, t := range toks {
		if j, dup := seen[t]; dup {
			key := listKey
			if file != "" {
				key = fileKey
			}
			v.fail(p.key(key), nil, "token %d is the same as token %d", i+1, j+1)
			return nil, false
		}
		seen[t] = i
	}
	return toks, true
}
