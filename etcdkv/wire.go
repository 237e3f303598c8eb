package etcdkv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The gateway's JSON is protobuf's JSON mapping with the .proto field
// names: bytes are base64 (encoding/json's []byte), int64s are strings,
// enums are names, and fields at their zero value are left out (so a PUT
// event has no "type" and a failed txn no "succeeded").

// i64 is an int64 that protobuf's JSON mapping writes as a string; it
// reads numbers too, as the mapping allows.
type i64 int64

func (v i64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(v), 10) + `"`), nil
}

func (v *i64) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("bad int64 %.40q", b)
	}
	*v = i64(n)
	return nil
}

type header struct {
	Revision i64 `json:"revision"`
}

type rangeRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
}

type putRequest struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
	Lease i64    `json:"lease,omitempty"`
}

type leaseRequest struct {
	ID  i64 `json:"ID,omitempty"`
	TTL i64 `json:"TTL,omitempty"`
}

type compactRequest struct {
	Revision i64  `json:"revision"`
	Physical bool `json:"physical,omitempty"`
}

type compareJSON struct {
	Key            []byte `json:"key"`
	Target         string `json:"target"`
	Result         string `json:"result"`
	Version        *i64   `json:"version,omitempty"`
	CreateRevision *i64   `json:"create_revision,omitempty"`
	ModRevision    *i64   `json:"mod_revision,omitempty"`
	Value          []byte `json:"value,omitempty"`
}

type requestOp struct {
	Put    *putRequest   `json:"request_put,omitempty"`
	Delete *rangeRequest `json:"request_delete_range,omitempty"`
}

type txnRequest struct {
	Compare []compareJSON `json:"compare,omitempty"`
	Success []requestOp   `json:"success,omitempty"`
	Failure []requestOp   `json:"failure,omitempty"`
}

func txnReq(cmp []Compare, then, els []Op) (txnRequest, error) {
	var req txnRequest
	for _, c := range cmp {
		j := compareJSON{Key: []byte(c.Key)}
		switch c.Result {
		case "=":
			j.Result = "EQUAL"
		case "!=":
			j.Result = "NOT_EQUAL"
		case "<":
			j.Result = "LESS"
		case ">":
			j.Result = "GREATER"
		default:
			return req, fmt.Errorf("compare %s: bad result %q", c.Key, c.Result)
		}
		// Pointers so that a compare against 0 (the key does not
		// exist) still sends the field: the oneof must be set.
		rev := i64(c.Rev)
		switch c.Target {
		case "mod":
			j.Target, j.ModRevision = "MOD", &rev
		case "create":
			j.Target, j.CreateRevision = "CREATE", &rev
		case "version":
			j.Target, j.Version = "VERSION", &rev
		case "value":
			j.Target, j.Value = "VALUE", nonNil(c.Value)
		default:
			return req, fmt.Errorf("compare %s: bad target %q", c.Key, c.Target)
		}
		req.Compare = append(req.Compare, j)
	}
	ops := func(in []Op) []requestOp {
		var out []requestOp
		for _, o := range in {
			if o.Put {
				out = append(out, requestOp{Put: &putRequest{Key: []byte(o.Key), Value: nonNil(o.Value), Lease: i64(o.Lease)}})
			} else {
				r := rangeOf(o.Key, o.Prefix)
				out = append(out, requestOp{Delete: &r})
			}
		}
		return out
	}
	req.Success, req.Failure = ops(then), ops(els)
	return req, nil
}

type kvJSON struct {
	Key            []byte `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision i64    `json:"create_revision"`
	ModRevision    i64    `json:"mod_revision"`
	Version        i64    `json:"version"`
	Lease          i64    `json:"lease"`
}

func (j kvJSON) kv() KV {
	return KV{
		Key:            string(j.Key),
		Value:          j.Value,
		CreateRevision: int64(j.CreateRevision),
		ModRevision:    int64(j.ModRevision),
		Version:        int64(j.Version),
		Lease:          int64(j.Lease),
	}
}

func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("bad response %.80q: %w", body, err)
	}
	return nil
}

// decodeRange reads a RangeResponse.
func decodeRange(body []byte) ([]KV, int64, error) {
	var resp struct {
		Header header   `json:"header"`
		KVs    []kvJSON `json:"kvs"`
	}
	if err := decodeJSON(body, &resp); err != nil {
		return nil, 0, err
	}
	if resp.Header.Revision <= 0 {
		// Every real answer has a header; without one this is not etcd.
		return nil, 0, fmt.Errorf("bad response %.80q: no revision", body)
	}
	kvs := make([]KV, 0, len(resp.KVs))
	for _, j := range resp.KVs {
		kvs = append(kvs, j.kv())
	}
	return kvs, int64(resp.Header.Revision), nil
}

// decodeRevision reads the header of a response that has nothing else
// of interest (put, delete range, lease revoke, compaction).
func decodeRevision(body []byte) (int64, error) {
	var resp struct {
		Header header `json:"header"`
	}
	if err := decodeJSON(body, &resp); err != nil {
		return 0, err
	}
	if resp.Header.Revision <= 0 {
		return 0, fmt.Errorf("bad response %.80q: no revision", body)
	}
	return int64(resp.Header.Revision), nil
}

// decodeTxn reads a TxnResponse.
func decodeTxn(body []byte) (bool, int64, error) {
	var resp struct {
		Header    header `json:"header"`
		Succeeded bool   `json:"succeeded"`
	}
	if err := decodeJSON(body, &resp); err != nil {
		return false, 0, err
	}
	if resp.Header.Revision <= 0 {
		return false, 0, fmt.Errorf("bad response %.80q: no revision", body)
	}
	return resp.Succeeded, int64(resp.Header.Revision), nil
}

// decodeKeepAlive reads the first message of the keepalive stream.
func decodeKeepAlive(body []byte) (time.Duration, error) {
	var msg struct {
		Result *struct {
			ID  i64 `json:"ID"`
			TTL i64 `json:"TTL"`
		} `json:"result"`
	}
	// The stream may hold more than one message; only the first matters.
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&msg); err != nil {
		return 0, fmt.Errorf("bad response %.80q: %w", body, err)
	}
	if msg.Result == nil {
		return 0, fmt.Errorf("bad response %.80q: no result", body)
	}
	// etcd answers an unknown or expired lease with TTL 0 (so left out),
	// not with an error.
	if msg.Result.TTL <= 0 {
		return 0, ErrLeaseNotFound
	}
	return time.Duration(msg.Result.TTL) * time.Second, nil
}

// decodeError makes an *Error of a non-200 answer: the gateway's
// {"error": "...", "code": N, "message": "..."} or, from anything else,
// the status and the start of the body.
func decodeError(status int, body []byte) error {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Code    int             `json:"code"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && (e.Message != "" || len(e.Error) > 0) {
		msg := e.Message
		if msg == "" {
			var s string
			if json.Unmarshal(e.Error, &s) == nil {
				msg = s
			} else if se := decodeStreamError(e.Error); se != nil {
				return se
			}
		}
		if msg == "" {
			msg = http200Text(status)
		}
		return &Error{HTTPStatus: status, Code: e.Code, Message: msg}
	}
	return &Error{HTTPStatus: status, Message: fmt.Sprintf("%s: %.200q", http200Text(status), body)}
}

func http200Text(status int) string { return "http status " + strconv.Itoa(status) }

// streamError finds the gateway's in-stream error message
// {"error": {"grpc_code": N, "http_code": N, "message": "..."}} at the
// start of body.
func streamError(body []byte) error {
	var msg struct {
		Error json.RawMessage `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if dec.Decode(&msg) != nil || len(msg.Error) == 0 {
		return nil
	}
	if err := decodeStreamError(msg.Error); err != nil {
		return err
	}
	return nil
}

func decodeStreamError(raw json.RawMessage) *Error {
	var e struct {
		GRPCCode int    `json:"grpc_code"`
		HTTPCode int    `json:"http_code"`
		Message  string `json:"message"`
	}
	if json.Unmarshal(raw, &e) != nil || (e.Message == "" && e.GRPCCode == 0) {
		return nil
	}
	return &Error{HTTPStatus: e.HTTPCode, Code: e.GRPCCode, Message: e.Message}
}

// watchMessage is one message of the watch stream, decoded.
type watchMessage struct {
	Created         bool
	Canceled        bool
	CancelReason    string
	CompactRevision int64
	Revision        int64
	Events          []Event
}

// decodeWatch reads one line of the watch stream.
func decodeWatch(line []byte) (watchMessage, error) {
	var msg struct {
		Result *struct {
			Header          header `json:"header"`
			Created         bool   `json:"created"`
			Canceled        bool   `json:"canceled"`
			CancelReason    string `json:"cancel_reason"`
			CompactRevision i64    `json:"compact_revision"`
			Events          []struct {
				Type   string  `json:"type"`
				KV     kvJSON  `json:"kv"`
				PrevKV *kvJSON `json:"prev_kv"`
			} `json:"events"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(line, &msg); err != nil {
		return watchMessage{}, fmt.Errorf("bad watch message %.80q: %w", line, err)
	}
	if len(msg.Error) > 0 {
		if e := decodeStreamError(msg.Error); e != nil {
			return watchMessage{}, e
		}
		return watchMessage{}, fmt.Errorf("watch error %.200s", msg.Error)
	}
	if msg.Result == nil {
		return watchMessage{}, fmt.Errorf("bad watch message %.80q: no result", line)
	}
	r := msg.Result
	wm := watchMessage{
		Created:         r.Created,
		Canceled:        r.Canceled,
		CancelReason:    r.CancelReason,
		CompactRevision: int64(r.CompactRevision),
		Revision:        int64(r.Header.Revision),
	}
	for _, e := range r.Events {
		ev := Event{KV: e.KV.kv()}
		switch e.Type {
		case "", "PUT":
			ev.Type = "PUT"
		case "DELETE":
			ev.Type = "DELETE"
		default:
			return watchMessage{}, fmt.Errorf("bad watch message: event type %.20q", e.Type)
		}
		if e.PrevKV != nil {
			ev.PrevValue = e.PrevKV.Value
		}
		wm.Events = append(wm.Events, ev)
	}
	for i := 1; i < len(wm.Events); i++ {
		if wm.Events[i].KV.ModRevision < wm.Events[i-1].KV.ModRevision {
			return watchMessage{}, errors.New("bad watch message: events out of order")
		}
	}
	return wm, nil
}
