package activations

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/controller/store/storetest"
	"github.com/wispfn/wisp/internal/activationid"
	"github.com/wispfn/wisp/internal/testing/testpg"
	"github.com/wispfn/wisp/protocol"
)

// stores opens each real store for a test: the embedded one, and Postgres
// on a fresh schema (skipped when Postgres is missing).
var stores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"embedded", func(t *testing.T) store.Store {
		s, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "c.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(t *testing.T) store.Store {
		dsn := testpg.Schema(t, 4)
		s, err := store.OpenPostgres(t.Context(), dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

func TestUTF8Cut(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc"},
		{"ab\u00e9cd", 3, "ab"},                 // é is 2 bytes: not split
		{"ab\u00e9cd", 4, "ab\u00e9"},           // cut after it
		{"a\u20acb", 3, "a"},                    // € is 3 bytes
		{"\U0001F600x", 3, ""},                  // a 4-byte rune longer than n
		{"\xff\xff\xff\xff\xff", 2, "\xff\xff"}, // not UTF-8: cut at n
	} {
		if got := tt.in[:utf8Cut(tt.in, tt.n)]; got != tt.want {
			t.Errorf("utf8Cut(%q, %d) keeps %q, want %q", tt.in, tt.n, got, tt.want)
		}
		if got := string([]byte(tt.in)[:utf8Cut([]byte(tt.in), tt.n)]); got != tt.want {
			t.Errorf("utf8Cut([]byte(%q), %d) keeps %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestBound(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := New(Config{Store: &countingStore{}, Bounds: Bounds{OutputBytes: 10, MessageBytes: 6}, Metrics: NewMetrics(reg)})
	sinks := [][]byte{[]byte(`{"type":"couchdb"}`)}
	long := []byte(`"0123456789abcdef"`)
	for _, tt := range []struct {
		name          string
		a             store.Activation
		sinks         [][]byte
		wantOutput    string
		wantMessage   string
		wantTruncated bool
		wantSinkOut   []byte
	}{
		{"within bounds", store.Activation{Output: []byte(`"short"`)}, sinks, `"short"`, "", false, nil},
		{"at the bounds", store.Activation{Output: []byte(`"12345678"`), Code: 1, Message: "123456"}, nil, `"12345678"`, "123456", false, nil},
		{"long output with sinks", store.Activation{Output: long}, sinks, `"012345678`, "", true, long},
		{"long output, no sinks", store.Activation{Output: long}, nil, `"012345678`, "", true, nil},
		{"long output of a failure", store.Activation{Output: long, Code: 3, Message: "trap"}, sinks, `"012345678`, "trap", true, nil},
		{"long message", store.Activation{Code: 3, Message: "trap: \u00e9\u00e9\u00e9"}, nil, "", "trap: ", true, nil},
	} {
		got := r.bound(tt.a, tt.sinks)
		if string(got.Output) != tt.wantOutput || got.Message != tt.wantMessage || got.Truncated != tt.wantTruncated ||
			!bytes.Equal(got.SinkOutput, tt.wantSinkOut) || len(got.Sinks) != len(tt.sinks) {
			t.Errorf("%s: output %q, message %q, truncated %v, sink output %q; want %q, %q, %v, %q",
				tt.name, got.Output, got.Message, got.Truncated, got.SinkOutput, tt.wantOutput, tt.wantMessage, tt.wantTruncated, tt.wantSinkOut)
		}
		if got.Truncated && len(got.Output) > 0 && &got.Output[0] == &tt.a.Output[0] {
			t.Errorf("%s: the cut output shares the whole one's memory", tt.name)
		}
	}
	if n := testutil.ToFloat64(r.metrics.truncatedTotal.WithLabelValues(fieldOutput)); n != 3 {
		t.Errorf("truncated outputs counted: %v, want 3", n)
	}
	if n := testutil.ToFloat64(r.metrics.truncatedTotal.WithLabelValues(fieldMessage)); n != 1 {
		t.Errorf("truncated messages counted: %v, want 1", n)
	}
}

// TestEveryPathBounds records a large output and a large message through
// both of the recorder's paths (dispatched, with and without waiting, and
// outbox) into each real store: every record is bounded and marked, and
// the sink deliveries carry the whole output.
func TestEveryPathBounds(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			ctx := t.Context()
			sink := fnspec.Sink{Type: "couchdb", Params: fnspec.SinkParams{URL: "http://127.0.0.1:1/db"}}
			code, digest := storetest.Code("bounds")
			if _, err := s.CreateFunction(ctx, store.Function{Module: "_", Name: "big", Digest: digest, ABI: "wasi-command",
				Spec: fnspec.Spec{Sinks: []fnspec.Sink{sink}}}, code); err != nil {
				t.Fatal(err)
			}
			r := New(Config{Store: s, Bounds: Bounds{OutputBytes: 1000, MessageBytes: 100}})
			runCtx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(runCtx) }()

			whole := []byte(`{"s":"` + strings.Repeat("\u00e9", 100_000) + `"}`)
			message := strings.Repeat("boom ", 1000)
			id := func() string { return activationid.New(time.Now()) }
			withSinks, noSinks, failed, replayed := id(), id(), id(), id()
			a := store.Activation{Module: "_", Function: "big", Digest: digest, Source: "api", Output: whole, Started: time.Now()}
			a.ID = withSinks
			if err := r.Dispatched(ctx, a, []fnspec.Sink{sink}, true); err != nil {
				t.Fatal(err)
			}
			a.ID = noSinks
			if err := r.Dispatched(ctx, a, nil, false); err != nil {
				t.Fatal(err)
			}
			f := a
			f.ID, f.Code, f.Message, f.Output = failed, int(protocol.Trap), message, nil
			if err := r.Dispatched(ctx, f, nil, false); err != nil {
				t.Fatal(err)
			}
			if err := r.Outbox(ctx, "ag_1", []protocol.OutboxEntry{{ActivationID: replayed, Module: "_", Function: "big",
				Digest: digest, Source: "local-api", Output: whole, StartedUnixUS: uint64(time.Now().UnixMicro())}}); err != nil {
				t.Fatal(err)
			}
			stop()
			<-done // flushes what is queued

			for _, id := range []string{withSinks, noSinks, replayed} {
				got, err := s.GetActivation(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if !got.Truncated || len(got.Output) > 1000 || len(got.Output) < 998 || !bytes.HasPrefix(whole, got.Output) || !utf8.Valid(got.Output) {
					t.Errorf("activation %s: truncated %v, %d bytes of output (valid UTF-8: %v); want a marked UTF-8 prefix of at most 1000",
						id, got.Truncated, len(got.Output), utf8.Valid(got.Output))
				}
			}
			got, err := s.GetActivation(ctx, failed)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Truncated || got.Message != message[:100] {
				t.Errorf("failed activation: truncated %v, message %q", got.Truncated, got.Message)
			}
			ds, err := s.PendingDeliveries(ctx, time.Now().Add(time.Hour), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 2 || ds[0].ActivationID != withSinks || ds[1].ActivationID != replayed {
				t.Fatalf("deliveries: %d, want those of %s and %s", len(ds), withSinks, replayed)
			}
			for _, d := range ds {
				if !bytes.Equal(d.Output, whole) {
					t.Errorf("delivery of %s carries %d bytes, want the whole %d", d.ActivationID, len(d.Output), len(whole))
				}
			}
		})
	}
}
