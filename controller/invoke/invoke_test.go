package invoke

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
)

func TestForFunction(t *testing.T) {
	sink := fnspec.Sink{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://c/db"}}
	fn := store.Function{Module: "m", Name: "f", Digest: "sha256:00",
		Spec: fnspec.Spec{Sinks: []fnspec.Sink{sink}, Metadata: fnspec.Metadata{Tag: "edge", Idempotent: true}}}
	req, err := ForFunction(fn, nil, SourceMQTT)
	if err != nil {
		t.Fatal(err)
	}
	if req.Module != "m" || req.Function != "f" || req.Digest != "sha256:00" || string(req.Args) != "{}" ||
		req.Metadata.Tag != "edge" || !req.Metadata.Idempotent || len(req.Sinks) != 1 || req.Sinks[0] != sink || req.SourceOrDefault() != SourceMQTT {
		t.Fatalf("ForFunction = %+v", req)
	}
	if req, _ := ForFunction(fn, json.RawMessage(`{"a":1}`), ""); string(req.Args) != `{"a":1}` || req.SourceOrDefault() != SourceAPI {
		t.Fatalf("ForFunction with args = %+v", req)
	}

	// fnspec's "Bad stored data": a function whose settings are unreadable
	// is never run.
	fn.Unreadable = &fnspec.Error{Field: "metadata", Reason: "malformed JSON"}
	_, err = ForFunction(fn, nil, SourceAPI)
	var ie *Error
	if !errors.Is(err, ErrFailed) || !errors.As(err, &ie) || ie.Detail == "" || !errors.Is(err, fnspec.ErrInvalid) {
		t.Fatalf("ForFunction of an unreadable function = %v, want ErrFailed with its cause", err)
	}
}

func TestErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		err    error
		kind   error
		detail string
	}{
		{GuestError("boom"), ErrGuest, "Error: boom"},
		{Failed("timed out", errors.New("ctx")), ErrFailed, "timed out"},
		{Lost("may have run", nil), ErrLost, "may have run"},
		{Quarantined("held"), ErrQuarantined, "held"},
		{TooLarge("over"), ErrTooLarge, "over"},
	} {
		var ie *Error
		if !errors.Is(tc.err, tc.kind) || !errors.As(tc.err, &ie) || ie.Detail != tc.detail {
			t.Errorf("%v: kind %v, detail %q", tc.err, tc.kind, tc.detail)
		}
	}
	if _, err := (NoWorkers{}).Invoke(t.Context(), Request{}); !errors.Is(err, ErrNoWorker) {
		t.Errorf("NoWorkers: %v", err)
	}
}
