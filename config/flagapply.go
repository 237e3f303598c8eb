package config

import "flag"

// applyFlags copies the flags that were actually given into f and returns,
// for each key they set, the flag's name, so errors can name the flag.
func applyFlags(f *File, role string, fs *flag.FlagSet) (map[string]string, error) {
	set := map[string]flag.Value{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = fl.Value })

	switch role {
	case "client":
		if f.Client == nil {
			f.Client = &Client{}
		}
	case "server":
		if f.Server == nil {
			f.Server = &Server{}
		}
	case "control":
		if f.Control == nil {
			f.Control = &Control{}
		}
	case "relay":
		if f.Relay == nil {
			f.Relay = &Relay{}
		}
	}

	over := map[string]string{}
	for _, d := range commonFlags {
		if v, ok := set[d.name]; ok && d.apply != nil {
			d.apply(f, v)
			over[key(d.name).String()] = d.name
		}
	}
	for _, d := range roleFlags[role] {
		if v, ok := set[d.name]; ok && d.apply != nil {
			d.apply(f, v)
			over[key(role, d.name).String()] = d.name
		}
	}

	// A token given on the command line replaces the file's token, however
	// the file gave it; otherwise the two would clash as "both set".
	switch role {
	case "client":
		replaceEither(set, &f.Client.Token, &f.Client.TokenFile)
		if err := applyEndpoints(f.Client, set, over); err != nil {
			return nil, err
		}
	case "relay":
		replaceEither(set, &f.Relay.Token, &f.Relay.TokenFile)
	}
	return over, nil
}

func replaceEither(set map[string]flag.Value, token, file *string) {
	_, t := set["token"]
	_, tf := set["token-file"]
	switch {
	case t && !tf:
		*file = ""
	case tf && !t:
		*token = ""
	}
}

func flagError(name, msg string) error {
	return &Error{Key: "flag --" + name, Msg: msg}
}

// applyEndpoints adds the one source and/or destination of the flags. A flag
// endpoint replaces a file endpoint of the same name as a whole, so that what
// runs is exactly what the command line says.
func applyEndpoints(c *Client, set map[string]flag.Value, over map[string]string) error {
	get := func(name string) (string, bool) {
		v, ok := set[name]
		if !ok {
			return "", false
		}
		return v.String(), true
	}
	srcName, hasSrc := get("src-name")
	srcAddr, hasSrcAddr := get("src-addr")
	dstName, hasDst := get("dst-name")
	dstAddr, hasDstAddr := get("dst-addr")
	route, hasRoute := get("route")
	proxy, hasProxy := get("proxy-proto-version")
	root, hasRoot := get("file-server-root")

	switch {
	case hasSrc && !hasSrcAddr:
		return flagError("src-name", "needs --src-addr as well")
	case hasSrcAddr && !hasSrc:
		return flagError("src-addr", "needs --src-name as well")
	case hasDst && !hasDstAddr:
		return flagError("dst-name", "needs --dst-addr as well")
	case hasDstAddr && !hasDst:
		return flagError("dst-addr", "needs --dst-name as well")
	case hasRoute && !hasSrc && !hasDst:
		return flagError("route", "applies to the flag endpoint; needs --src-name or --dst-name")
	case hasProxy && !hasDst:
		return flagError("proxy-proto-version", "applies to the flag destination; needs --dst-name")
	case hasRoot && !hasDst:
		return flagError("file-server-root", "applies to the flag destination; needs --dst-name")
	}

	if hasSrc {
		if c.Sources == nil {
			c.Sources = map[string]Source{}
		}
		s := Source{Addr: srcAddr, Route: route}
		addrKey := AddrOrURL(&s.Addr, &s.URL)
		c.Sources[srcName] = s
		ep := key("client", "sources", srcName)
		over[ep.String()] = "src-name"
		over[ep.key(addrKey).String()] = "src-addr"
		if hasRoute {
			over[ep.key("route").String()] = "route"
		}
	}
	if hasDst {
		if c.Destinations == nil {
			c.Destinations = map[string]Destination{}
		}
		d := Destination{Addr: dstAddr, Route: route, ProxyProtoVersion: proxy, FileServerRoot: root}
		addrKey := AddrOrURL(&d.Addr, &d.URL)
		c.Destinations[dstName] = d
		ep := key("client", "destinations", dstName)
		over[ep.String()] = "dst-name"
		over[ep.key(addrKey).String()] = "dst-addr"
		for _, name := range []string{"route", "proxy-proto-version", "file-server-root"} {
			if _, ok := set[name]; ok {
				over[ep.key(name).String()] = name
			}
		}
	}
	return nil
}
