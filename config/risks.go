package config

import (
	"fmt"
	"os"
)

// risks adds the warnings of connetd check: settings that work but expose a
// secret or accept more than was likely meant. The daemon's own warnings
// (an unanchored name-matches, a token on the command line) are given too.
func (v *validator) risks(f *File) {
	type secretFile struct {
		p    keyPath
		path string
	}
	var files []secretFile
	inline := false
	switch {
	case f.Client != nil:
		c := f.Client
		files = append(files, secretFile{key("client", "token-file"), c.TokenFile},
			secretFile{key("client", "direct-stateless-reset-key-file"), expandPath(c.DirectStatelessResetKeyFile)})
		inline = c.Token != "" && c.TokenFile == "" && os.Getenv("CONNET_TOKEN") != c.Token
	case f.Server != nil:
		s := f.Server
		files = append(files, secretFile{key("server", "tokens-file"), s.TokensFile})
		inline = len(s.Tokens) > 0 && s.TokensFile == ""
		v.openToAll(key("server", "tokens"), inline, s.IPRestriction, s.TokenRestrictions)
	case f.Control != nil:
		c := f.Control
		files = append(files, secretFile{key("control", "clients-tokens-file"), c.ClientsTokensFile},
			secretFile{key("control", "relays-tokens-file"), c.RelaysTokensFile})
		cin := len(c.ClientsTokens) > 0 && c.ClientsTokensFile == ""
		inline = cin || (len(c.RelaysTokens) > 0 && c.RelaysTokensFile == "")
		v.openToAll(key("control", "clients-tokens"), cin, c.ClientsIPRestriction, c.ClientsTokenRestrictions)
	case f.Relay != nil:
		files = append(files, secretFile{key("relay", "token-file"), f.Relay.TokenFile})
		inline = f.Relay.Token != "" && f.Relay.TokenFile == ""
	}
	for _, sf := range files {
		if worldReadable(sf.path) {
			v.warn(sf.p, "%s is readable by every user of this machine; it holds a secret: chmod o-r it (or use a systemd credential)", sf.path)
		}
	}
	if inline && f.Path != "" && worldReadable(f.Path) {
		v.warns = append(v.warns, &Error{File: f.Path,
			Msg: "this file holds tokens inline and is readable by every user of this machine: chmod o-r it, or move the tokens to a tokens file"})
	}
}

// openToAll warns about inline client tokens on a server that takes clients
// from any address: a token copied out of the file works from anywhere.
func (v *validator) openToAll(p keyPath, inline bool, ip IPRestriction, trs []TokenRestriction) {
	if !inline || len(ip.AllowCIDRs) > 0 {
		return
	}
	open := len(trs) == 0
	for _, tr := range trs {
		open = open || len(tr.AllowCIDRs) == 0
	}
	if !open {
		return // every token is limited to some networks
	}
	v.warn(p, "%s", fmt.Sprint("tokens are written inline and clients are accepted from any address: ",
		"whoever reads this file can connect from anywhere; set allow-cidrs (ip-restriction or token-restriction), or keep the tokens in a file"))
}

func worldReadable(path string) bool {
	if path == "" {
		return false
	}
	st, err := os.Stat(path)
	return err == nil && st.Mode().Perm()&0o004 != 0
}
