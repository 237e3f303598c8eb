package etcdkv

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	for _, eps := range [][]string{
		nil,
		{"127.0.0.1:2379"},
		{"ftp://host:2379"},
		{"http://"},
		{"http://host:2379/v3"},
		{"http://user@host:2379"},
	} {
		if _, err := New(Config{Endpoints: eps}); err == nil {
			t.Errorf("New(%q) accepted", eps)
		}
	}
	c, err := New(Config{Endpoints: []string{"http://127.0.0.1:2379/", "https://[::1]:2379"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a", "b"},
		{"a/", "a0"},
		{"a\xff", "b"},
		{"\xff\xff", "\x00"},
	} {
		if got := string(prefixEnd(tc.in)); got != tc.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestGarbage points the client at servers that are not etcd: every call
// must fail with an error, none may panic or hang.
func TestGarbage(t *testing.T) {
	handlers := map[string]http.HandlerFunc{
		"text": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("hello, I am not etcd"))
		},
		"empty json": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("{}"))
		},
		"wrong types": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"header":{"revision":{}},"kvs":[{"key":42}],"result":[1],"ID":"x","error":7}`))
		},
		"truncated": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"header":{"revision":"3"},"kvs":[{"key":"Zm9v","val`))
		},
		"html 500": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "<html>Internal Server Error</html>", http.StatusInternalServerError)
		},
		"404": func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		},
		"hang up": func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		},
		"slow": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		},
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(h)
			defer srv.Close()
			c, err := New(Config{Endpoints: []string{srv.URL}, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var errs []error
			_, _, err = c.Get(ctx, "k", true)
			errs = append(errs, err)
			_, err = c.Grant(ctx, time.Second)
			errs = append(errs, err)
			_, err = c.KeepAliveOnce(ctx, 1)
			errs = append(errs, err)
			_, err = c.Put(ctx, "k", nil, 0)
			errs = append(errs, err)
			_, err = c.Delete(ctx, "k", false)
			errs = append(errs, err)
			_, _, err = c.Txn(ctx, nil, nil, nil)
			errs = append(errs, err)
			errs = append(errs, c.Revoke(ctx, 1))
			errs = append(errs, c.Compact(ctx, 1))
			for i, err := range errs {
				if err == nil {
					t.Errorf("call %d: no error", i)
				}
			}
			t.Logf("get: %v", errs[0])

			wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
			defer wcancel()
			var gotErr bool
			for r := range c.Watch(wctx, "k", 0) {
				if r.Err == nil {
					t.Fatalf("watch delivered %+v", r)
				}
				gotErr = true
				wcancel()
			}
			if !gotErr {
				t.Error("watch ended without an error")
			}
		})
	}
}

func TestGarbageWatchStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"result":{"header":{"revision":"5"},"created":true}}` + "\n"))
		w.Write([]byte(`{"result":{"header":{"revision":"6"},"events":[{"type":"EXPLODE","kv":{"key":"aw=="}}]}}` + "\n"))
	}))
	defer srv.Close()
	c, _ := New(Config{Endpoints: []string{srv.URL}})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := <-c.Watch(ctx, "k", 0)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "EXPLODE") {
		t.Errorf("bad event type: %+v", r)
	}
}

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		is     error
	}{
		{404, `{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}`, ErrLeaseNotFound},
		{503, `{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}`, ErrNoQuorum},
		{503, `{"error":"etcdserver: request timed out","code":14}`, ErrNoQuorum},
		{400, `{"error":"etcdserver: mvcc: required revision has been compacted","code":11}`, ErrCompacted},
		{502, `<html>bad gateway</html>`, ErrNoQuorum},
		{200, `{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}`, ErrNoQuorum},
	} {
		err := decodeError(tc.status, []byte(tc.body))
		if !errors.Is(err, tc.is) {
			t.Errorf("decodeError(%d, %s) = %v, not %v", tc.status, tc.body, err, tc.is)
		}
	}
}

// Seeds: what etcd 3.4's gateway really sends, and some near misses.
var fuzzSeeds = []string{
	`{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}`,
	`{"header":{"revision":"4"},"succeeded":true,"responses":[{"response_range":{"header":{"revision":"4"}}}]}`,
	`{"header":{"revision":"2"},"ID":"2324035715691088393","TTL":"2"}`,
	`{"result":{"header":{"revision":"2"},"ID":"12345"}}`,
	`{"result":{"header":{"revision":"2"},"ID":"12345","TTL":"5"}}` + "\n" + `{"result":{}}`,
	`{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}`,
	`{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}`,
	`{"result":{"header":{"revision":"2"},"created":true}}`,
	`{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"2"}}`,
	`{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"Zm9v","create_revision":"4","mod_revision":"4","version":"1","value":"YmFy"}},{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"5"},"prev_kv":{"key":"Zm9v","value":"YmFy"}}]}}`,
	`{"result":{"events":[{"kv":{"mod_revision":"9"}},{"kv":{"mod_revision":"3"}}]}}`,
	`{"header":{"revision":9223372036854775808}}`,
	`{"header":{"revision":"-1"}}`,
	`null`, `[]`, `"x"`, ``, `{"kvs":[null]}`,
}

// FuzzDecodeResponse feeds every decoder the same bytes: none may panic,
// and a decoder that succeeds must give a sane answer.
func FuzzDecodeResponse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), 200)
	}
	f.Add([]byte(`{"error":"x","code":14}`), 503)
	f.Fuzz(func(t *testing.T, body []byte, status int) {
		if kvs, rev, err := decodeRange(body); err == nil && rev <= 0 {
			t.Errorf("decodeRange: revision %d, %d kvs", rev, len(kvs))
		}
		if rev, err := decodeRevision(body); err == nil && rev <= 0 {
			t.Errorf("decodeRevision: %d", rev)
		}
		if _, rev, err := decodeTxn(body); err == nil && rev <= 0 {
			t.Errorf("decodeTxn: %d", rev)
		}
		if ttl, err := decodeKeepAlive(body); err == nil && ttl <= 0 {
			t.Errorf("decodeKeepAlive: ttl %v without error", ttl)
		}
		if err := decodeError(status, body); err == nil {
			t.Error("decodeError: nil")
		} else {
			_ = err.Error()
			_ = errors.Is(err, ErrNoQuorum)
		}
		if err := streamError(body); err != nil {
			_ = err.Error()
		}
	})
}

// FuzzDecodeWatch checks the watch stream's decoder.
func FuzzDecodeWatch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := decodeWatch(line)
		if err != nil {
			_ = err.Error()
			return
		}
		for i, e := range m.Events {
			if e.Type != "PUT" && e.Type != "DELETE" {
				t.Errorf("event type %q", e.Type)
			}
			if i > 0 && e.KV.ModRevision < m.Events[i-1].KV.ModRevision {
				t.Errorf("events out of order")
			}
		}
	})
}

// TestKeepAliveOpenStream: a gateway that keeps the keepalive stream open
// after answering must not cost the caller a timeout.
func TestKeepAliveOpenStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"result":{"header":{"revision":"2"},"ID":"7","TTL":"9"}}` + "\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	c, _ := New(Config{Endpoints: []string{srv.URL}, Timeout: 5 * time.Second})
	defer c.Close()
	start := time.Now()
	ttl, err := c.KeepAliveOnce(context.Background(), 7)
	if err != nil || ttl != 9*time.Second {
		t.Fatalf("keepalive: %v, %v", ttl, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("keepalive took %v", d)
	}
}
