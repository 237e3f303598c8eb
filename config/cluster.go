package config

import (
	"net/url"
	"strings"
)

// ClusterStore is where a control server keeps its registry: "local" (this
// process alone, the default) or "etcd", shared with the other control
// nodes of a cluster (docs/ha.md). Keys of [server] and [control].
type ClusterStore struct {
	Store         string   `toml:"store"`
	EtcdEndpoints []string `toml:"etcd-endpoints"`
	EtcdCAsFile   string   `toml:"etcd-cas-file"`
	EtcdCertFile  string   `toml:"etcd-cert-file"`
	EtcdKeyFile   string   `toml:"etcd-key-file"`
	EtcdPrefix    string   `toml:"etcd-prefix"`
}

// Store kinds.
const (
	StoreLocal = "local"
	StoreEtcd  = "etcd"
)

// DefaultEtcdPrefix is where a cluster's keys go unless etcd-prefix says.
const DefaultEtcdPrefix = "/connetd/"

// clusterStore checks the store keys of table p and applies defaults.
func (v *validator) clusterStore(p keyPath, c *ClusterStore) {
	switch c.Store {
	case "":
		c.Store = StoreLocal
	case StoreLocal, StoreEtcd:
	default:
		v.fail(p.key("store"), nil, "%q is not a store: give \"local\" or \"etcd\"", c.Store)
		return
	}
	etcdKeys := len(c.EtcdEndpoints) > 0 || c.EtcdCAsFile != "" || c.EtcdCertFile != "" || c.EtcdKeyFile != "" || c.EtcdPrefix != ""
	if c.Store == StoreLocal {
		if etcdKeys {
			first := "etcd-endpoints"
			switch {
			case len(c.EtcdEndpoints) > 0:
			case c.EtcdCAsFile != "":
				first = "etcd-cas-file"
			case c.EtcdCertFile != "":
				first = "etcd-cert-file"
			case c.EtcdKeyFile != "":
				first = "etcd-key-file"
			default:
				first = "etcd-prefix"
			}
			v.fail(p.key(first), nil, "etcd keys need store = \"etcd\"")
		}
		return
	}
	if len(c.EtcdEndpoints) == 0 {
		v.fail(p.key("store"), nil, "store = \"etcd\" needs etcd-endpoints, e.g. [\"https://10.0.0.1:2379\"]")
	}
	tls := false
	for _, e := range c.EtcdEndpoints {
		u, err := url.Parse(e)
		switch {
		case err != nil || u.Scheme != "http" && u.Scheme != "https":
			v.fail(p.key("etcd-endpoints"), err, "%q: give http:// or https://, host and port, e.g. https://10.0.0.1:2379", e)
			continue
		case u.Port() == "" || (u.Path != "" && u.Path != "/"):
			v.fail(p.key("etcd-endpoints"), nil, "%q: give scheme, host and port only, e.g. https://10.0.0.1:2379", e)
			continue
		}
		tls = tls || u.Scheme == "https"
	}
	if c.EtcdCAsFile != "" {
		v.readable(p.key("etcd-cas-file"), c.EtcdCAsFile)
	}
	switch {
	case (c.EtcdCertFile == "") != (c.EtcdKeyFile == ""):
		if c.EtcdCertFile == "" {
			v.fail(p.key("etcd-key-file"), nil, "etcd-key-file needs etcd-cert-file too")
		} else {
			v.fail(p.key("etcd-cert-file"), nil, "etcd-cert-file needs etcd-key-file too")
		}
	case c.EtcdCertFile != "":
		v.readable(p.key("etcd-cert-file"), c.EtcdCertFile)
		v.readable(p.key("etcd-key-file"), c.EtcdKeyFile)
	}
	if !tls && (c.EtcdCAsFile != "" || c.EtcdCertFile != "") {
		v.warn(p.key("etcd-endpoints"), "etcd-cas-file and etcd-cert-file apply to https:// endpoints only; these are all http://")
	}
	if c.EtcdPrefix == "" {
		c.EtcdPrefix = DefaultEtcdPrefix
	}
	if !strings.HasPrefix(c.EtcdPrefix, "/") || !strings.HasSuffix(c.EtcdPrefix, "/") || len(c.EtcdPrefix) < 2 {
		v.fail(p.key("etcd-prefix"), nil, "%q: give a path that starts and ends with /, e.g. \"/connetd/\"", c.EtcdPrefix)
	}
}
