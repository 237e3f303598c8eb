// Package etcdkv is a small client for etcd's v3 API through its JSON
// gateway (the grpc-gateway every etcd 3.4+ member serves on its client
// URL: POST /v3/kv/range and so on, bytes as base64, int64s as strings).
//
// It exists instead of go.etcd.io/etcd/client/v3 because connetd runs on
// small routers: measured, merely importing clientv3 (gRPC, gogo protobuf,
// zap) added about 10 MB to the binary and 8.4 MiB RSS to every connetd
// process, whether it talked to etcd or not. The control servers need only
// a handful of calls (range, put, delete, txn, leases, watch), which the
// gateway offers over plain HTTP, so net/http and encoding/json suffice.
//
// What clientv3 gave for free and this package has to do itself:
//
//   - Endpoint failover: a request goes to the endpoint that last worked
//     and moves on to the next on connection errors, timeouts and "no
//     leader". A mutation is only retried elsewhere when it surely did not
//     reach a server (or the server rejected it before applying it):
//     retrying a put or txn whose outcome is unknown could apply it twice.
//   - Leader awareness: every request carries the gRPC metadata
//     hasleader=true (the gateway forwards Grpc-Metadata-* headers), as
//     clientv3.WithRequireLeader does, so a member cut off from its quorum
//     answers "no leader" (or ends a watch) instead of serving silence.
//   - Watch resumption from the last seen revision on another member.
//
// Reads are linearizable (etcd's default), so a member without quorum
// never serves stale data; it times out or says "no leader" instead.
package etcdkv

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Errors that callers branch on; the errors returned wrap them.
var (
	// ErrLeaseNotFound: the lease expired or never existed.
	ErrLeaseNotFound = errors.New("etcd: lease not found")
	// ErrCompacted: the requested revision is no longer in etcd's history.
	ErrCompacted = errors.New("etcd: revision compacted")
	// ErrNoQuorum: no endpoint could answer or commit: all unreachable,
	// timed out, or without a leader. For a put, delete or txn that timed
	// out, its outcome is unknown: it may still be applied.
	ErrNoQuorum = errors.New("etcd: no quorum")
)

// maxBody bounds what is read of one response (or one watch message), so
// a broken or hostile endpoint cannot exhaust memory.
const maxBody = 64 << 20

// Config says how to reach the cluster.
type Config struct {
	// Endpoints are client URLs, "http://127.0.0.1:2379" or
	// "https://host:2379", tried in turn.
	Endpoints []string
	// TLS is for https endpoints (CA and optional client certificate);
	// nil uses the system roots.
	TLS *tls.Config
	// Timeout bounds one unary request to one endpoint; default 2s. It
	// is what makes a member without quorum fail fast: etcd itself waits
	// 5s plus two election timeouts before saying "request timed out".
	Timeout time.Duration
}

// Client talks to one etcd cluster. It is safe for concurrent use.
type Client struct {
	eps     []string
	timeout time.Duration
	tr      *http.Transport
	hc      *http.Client

	mu  sync.Mutex
	cur int // index of the endpoint that last worked
}

// KV is one key's state.
type KV struct {
	Key            string
	Value          []byte
	ModRevision    int64
	CreateRevision int64
	Version        int64
	Lease          int64
}

// LeaseID names a lease; 0 is no lease.
type LeaseID int64

// New checks cfg; it does no I/O.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	var eps []string
	for _, ep := range cfg.Endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			return nil, fmt.Errorf("etcd: endpoint %q: %w", ep, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("etcd: endpoint %q: scheme must be http or https", ep)
		}
		if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("etcd: endpoint %q: want scheme://host:port only", ep)
		}
		eps = append(eps, u.Scheme+"://"+u.Host)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	tr := &http.Transport{
		Proxy: nil, // etcd is infrastructure: an HTTP_PROXY meant for the internet must not sit in between
		DialContext: (&net.Dialer{
			Timeout:   timeout,
			KeepAlive: 15 * time.Second,
		}).DialContext,
		TLSHandshakeTimeout: timeout,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
	}
	return &Client{
		eps:     eps,
		timeout: timeout,
		tr:      tr,
		hc:      &http.Client{Transport: tr},
	}, nil
}

// Close releases idle connections. Watches end with their contexts.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

func (c *Client) current() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *Client) setCurrent(i int) {
	c.mu.Lock()
	c.cur = i
	c.mu.Unlock()
}

// Get returns key's value, or with prefix every key starting with key;
// rev is the store's revision the answer reflects.
func (c *Client) Get(ctx context.Context, key string, prefix bool) ([]KV, int64, error) {
	req := rangeOf(key, prefix)
	body, err := c.call(ctx, "/v3/kv/range", req, true)
	if err != nil {
		return nil, 0, fmt.Errorf("etcd get %s: %w", key, err)
	}
	kvs, rev, err := decodeRange(body)
	if err != nil {
		return nil, 0, fmt.Errorf("etcd get %s: %w", key, err)
	}
	return kvs, rev, nil
}

// Put sets key to value, attached to lease unless it is 0.
func (c *Client) Put(ctx context.Context, key string, value []byte, lease LeaseID) (int64, error) {
	body, err := c.call(ctx, "/v3/kv/put", putRequest{Key: []byte(key), Value: nonNil(value), Lease: i64(lease)}, false)
	if err != nil {
		return 0, fmt.Errorf("etcd put %s: %w", key, err)
	}
	rev, err := decodeRevision(body)
	if err != nil {
		return 0, fmt.Errorf("etcd put %s: %w", key, err)
	}
	return rev, nil
}

// Delete removes key, or with prefix every key starting with key.
func (c *Client) Delete(ctx context.Context, key string, prefix bool) (int64, error) {
	req := rangeOf(key, prefix)
	body, err := c.call(ctx, "/v3/kv/deleterange", req, false)
	if err != nil {
		return 0, fmt.Errorf("etcd delete %s: %w", key, err)
	}
	rev, err := decodeRevision(body)
	if err != nil {
		return 0, fmt.Errorf("etcd delete %s: %w", key, err)
	}
	return rev, nil
}

// Compare is one condition of a Txn.
type Compare struct {
	Key    string
	Target string // "mod", "create", "version" or "value"
	Result string // "=", "!=", "<" or ">"
	Rev    int64  // for mod, create and version (a version, then)
	Value  []byte // for value
}

// Op is one operation of a Txn: a put, or else a delete.
type Op struct {
	Put    bool
	Key    string
	Value  []byte
	Lease  LeaseID
	Prefix bool // delete only
}

// Txn runs then if every compare holds, else els; succeeded says which.
func (c *Client) Txn(ctx context.Context, cmp []Compare, then, els []Op) (bool, int64, error) {
	req, err := txnReq(cmp, then, els)
	if err != nil {
		return false, 0, fmt.Errorf("etcd txn: %w", err)
	}
	body, err := c.call(ctx, "/v3/kv/txn", req, false)
	if err != nil {
		return false, 0, fmt.Errorf("etcd txn %s: %w", txnKeys(cmp, then, els), err)
	}
	ok, rev, err := decodeTxn(body)
	if err != nil {
		return false, 0, fmt.Errorf("etcd txn %s: %w", txnKeys(cmp, then, els), err)
	}
	return ok, rev, nil
}

func txnKeys(cmp []Compare, then, els []Op) string {
	seen := map[string]bool{}
	var keys []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, c := range cmp {
		add(c.Key)
	}
	for _, o := range then {
		add(o.Key)
	}
	for _, o := range els {
		add(o.Key)
	}
	return strings.Join(keys, ",")
}

// Grant creates a lease of ttl (etcd rounds up to whole seconds and to its
// minimum, 1.5 election timeouts).
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	// Retrying a grant elsewhere at worst leaves an unused lease to expire.
	body, err := c.call(ctx, "/v3/lease/grant", leaseRequest{TTL: i64(secs)}, true)
	if err != nil {
		return 0, fmt.Errorf("etcd lease grant: %w", err)
	}
	var resp struct {
		ID    i64
		Error string
	}
	if err := decodeJSON(body, &resp); err != nil {
		return 0, fmt.Errorf("etcd lease grant: %w", err)
	}
	if resp.Error != "" || resp.ID == 0 {
		return 0, fmt.Errorf("etcd lease grant: %q", resp.Error)
	}
	return LeaseID(resp.ID), nil
}

// KeepAliveOnce renews lease id and returns its new TTL; ErrLeaseNotFound
// when it has expired or never existed.
func (c *Client) KeepAliveOnce(ctx context.Context, id LeaseID) (time.Duration, error) {
	// The gateway turns the bidirectional stream into one request in, a
	// stream of {"result": ...} out; the server ends it when our request
	// body ends, after answering.
	body, err := c.call(ctx, keepAlivePath, leaseRequest{ID: i64(id)}, true)
	if err != nil {
		return 0, fmt.Errorf("etcd lease keepalive %x: %w", id, err)
	}
	ttl, err := decodeKeepAlive(body)
	if err != nil {
		return 0, fmt.Errorf("etcd lease keepalive %x: %w", id, err)
	}
	return ttl, nil
}

// Revoke ends lease id, deleting its keys. It is ErrLeaseNotFound when
// the lease is already gone, which includes a revoke retried on another
// member after the first one did its work but timed out answering.
func (c *Client) Revoke(ctx context.Context, id LeaseID) error {
	body, err := c.call(ctx, "/v3/lease/revoke", leaseRequest{ID: i64(id)}, true)
	if err == nil {
		_, err = decodeRevision(body)
	}
	if err != nil {
		return fmt.Errorf("etcd lease revoke %x: %w", id, err)
	}
	return nil
}

// Compact discards the history before rev; watches from before it then
// fail with ErrCompacted.
func (c *Client) Compact(ctx context.Context, rev int64) error {
	body, err := c.call(ctx, "/v3/kv/compaction", compactRequest{Revision: i64(rev), Physical: true}, true)
	if err == nil {
		_, err = decodeRevision(body)
	}
	if err != nil {
		return fmt.Errorf("etcd compact %d: %w", rev, err)
	}
	return nil
}

// call posts in to path, trying endpoints from the one that last worked,
// and returns the response body. idempotent says a request whose outcome
// is unknown (sent, then timed out) may be sent again elsewhere.
func (c *Client) call(ctx context.Context, path string, in any, idempotent bool) ([]byte, error) {
	reqBody, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	start := c.current()
	var errs []error
	for i := range c.eps {
		idx := (start + i) % len(c.eps)
		body, sent, err := c.post(ctx, c.eps[idx], path, reqBody)
		if err == nil {
			c.setCurrent(idx)
			return body, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", c.eps[idx], ctx.Err())
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.eps[idx], err))
		if !failover(err) {
			// The cluster answered: asking another member gives the same.
			c.setCurrent(idx)
			return nil, err
		}
		if sent && !idempotent && !rejectedUnapplied(err) {
			return nil, fmt.Errorf("%w (outcome unknown): %w", ErrNoQuorum, errors.Join(errs...))
		}
	}
	if allTLS(errs) {
		// A certificate problem is configuration, not a lost quorum:
		// waiting and retrying will not help.
		return nil, fmt.Errorf("TLS: %w", errors.Join(errs...))
	}
	return nil, fmt.Errorf("%w: %w", ErrNoQuorum, errors.Join(errs...))
}

func allTLS(errs []error) bool {
	for _, err := range errs {
		if !isTLSError(err) {
			return false
		}
	}
	return len(errs) > 0
}

// isTLSError says whether err is a handshake failure: ours (we do not
// trust the server) or the server's (it refused our certificate, which it
// tells in an alert that crypto/tls does not export).
func isTLSError(err error) bool {
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	var ae tls.AlertError
	return errors.As(err, &cve) || errors.As(err, &rhe) || errors.As(err, &ae) ||
		strings.Contains(err.Error(), "remote error: tls:")
}

// post does one request to one endpoint; sent says whether the request
// may have reached the server.
func (c *Client) post(ctx context.Context, ep, path string, reqBody []byte) (body []byte, sent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var wrote bool
	var wmu sync.Mutex
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wmu.Lock(); wrote = true; wmu.Unlock() },
	})
	wasSent := func() bool { wmu.Lock(); defer wmu.Unlock(); return wrote }
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+path, bytes.NewReader(reqBody))
	if err != nil {
		return nil, false, err
	}
	setHeaders(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, wasSent(), &transportError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && path == keepAlivePath {
		body, err = readFirstMessage(resp.Body)
	} else {
		body, err = readBounded(resp.Body)
	}
	if err != nil {
		return nil, true, &transportError{err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, true, decodeError(resp.StatusCode, body)
	}
	// The gateway reports an error inside a stream (keepalive) as a 200
	// whose message is {"error": {...}}.
	if err := streamError(body); err != nil {
		return nil, true, err
	}
	return body, true, nil
}

func setHeaders(req *http.Request) {
	req.Header.Set("Content-Type", "application/json")
	// clientv3.WithRequireLeader: the member refuses (unary) or ends
	// (watch) when it has no leader, rather than hang until a timeout.
	req.Header.Set("Grpc-Metadata-hasleader", "true")
}

// keepAlivePath is a stream: the first message is all we wait for.
const keepAlivePath = "/v3/lease/keepalive"

// readFirstMessage reads the first JSON value of a stream. etcd 3.4 ends
// the keepalive stream once our request body has ended, but nothing
// promises that, and waiting for the end would then cost a timeout.
func readFirstMessage(r io.Reader) ([]byte, error) {
	var msg json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r, maxBody)).Decode(&msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("response larger than %d bytes", maxBody)
	}
	return b, nil
}

// transportError is a failure to talk to an endpoint at all.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// failover says whether another endpoint might do better.
func failover(err error) bool {
	var te *transportError
	if errors.As(err, &te) {
		return true
	}
	var ge *Error
	if errors.As(err, &ge) {
		return ge.unavailable()
	}
	return false
}

// rejectedUnapplied says the member refused the request before applying
// it, so it may be sent elsewhere even if it is a mutation.
func rejectedUnapplied(err error) bool {
	if isTLSError(err) {
		return true
	}
	var ge *Error
	if !errors.As(err, &ge) {
		return false
	}
	m := ge.Message
	return strings.Contains(m, "no leader") || strings.Contains(m, "not capable") ||
		strings.Contains(m, "too many requests") || strings.Contains(m, "not enough started members")
}

// Error is an error the gateway answered with.
type Error struct {
	HTTPStatus int
	Code       int // gRPC status code
	Message    string
}

func (e *Error) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("%s (grpc code %d, http %d)", e.Message, e.Code, e.HTTPStatus)
	}
	return fmt.Sprintf("%s (http %d)", e.Message, e.HTTPStatus)
}

// gRPC codes that matter here.
const (
	codeDeadlineExceeded = 4
	codeNotFound         = 5
	codeOutOfRange       = 11
	codeUnavailable      = 14
)

func (e *Error) unavailable() bool {
	m := e.Message
	return e.Code == codeUnavailable || e.Code == codeDeadlineExceeded ||
		e.HTTPStatus >= 500 || strings.Contains(m, "no leader") ||
		strings.Contains(m, "timed out") || strings.Contains(m, "leader changed")
}

// Is makes errors.Is(err, ErrLeaseNotFound) and friends work.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrLeaseNotFound:
		return strings.Contains(e.Message, "lease not found")
	case ErrCompacted:
		return strings.Contains(e.Message, "compacted")
	case ErrNoQuorum:
		return e.unavailable()
	}
	return false
}

// CompactedError is a watch ended because its start revision was
// compacted away; it is ErrCompacted.
type CompactedError struct{ CompactRevision int64 }

func (e *CompactedError) Error() string {
	return fmt.Sprintf("etcd: revision compacted (history starts at %d)", e.CompactRevision)
}

func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

func rangeOf(key string, prefix bool) rangeRequest {
	if !prefix {
		return rangeRequest{Key: []byte(key)}
	}
	if key == "" {
		// etcd's spelling of "every key".
		return rangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
	}
	return rangeRequest{Key: []byte(key), RangeEnd: prefixEnd(key)}
}

func prefixEnd(prefix string) []byte {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	// All 0xff (or empty): everything from the key on.
	return []byte{0}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
