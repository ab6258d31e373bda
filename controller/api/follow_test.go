package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wispfn/wisp/controller/activations"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/internal/activationid"
)

// mkSubject creates a subject through the API and returns its
// Authorization header value.
func mkSubject(t *testing.T, e *env, name string) string {
	t.Helper()
	status, body := e.json("POST", "/v1/admin/subjects", map[string]any{"subject": map[string]string{"name": name}})
	var got struct {
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	if status != 201 || json.Unmarshal(body, &got) != nil || got.Data.Token == "" {
		t.Fatalf("create subject %s: %d %s", name, status, body)
	}
	return "Bearer " + got.Data.Token
}

// record stores activations directly, as the recorder would.
func record(t testing.TB, st store.Store, as ...store.Activation) {
	t.Helper()
	batch := make([]store.ActivationWithSinks, len(as))
	for i, a := range as {
		batch[i] = store.ActivationWithSinks{Activation: a}
	}
	if _, err := st.RecordActivations(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

// TestInvokeAnswerNamesActivation: the invoke answer carries the
// dispatcher's activation id in X-Wisp-Activation-Id on success and on the
// function's error, with the FunLess envelope byte for byte; none when no
// activation was recorded.
func TestInvokeAnswerNamesActivation(t *testing.T) {
	t.Parallel()
	id := activationid.New(time.Now())
	var mu sync.Mutex
	var answer func() (invoke.Result, error)
	inv := invokerFunc(func(context.Context, invoke.Request) (invoke.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		return answer()
	})
	e := start(t, openEmbedded(t), func(c *Config) { c.Invoker = inv })
	status, body := e.upload("POST", "/v1/fn/_", part{name: "name", value: "hello"}, codePart(fixture(t, "hello_wat.wasm")))
	wantData[nameItem](t, status, body, 201)
	guest := invoke.GuestError("boom").(*invoke.Error)
	guest.Activation = id
	tests := []struct {
		name   string
		answer func() (invoke.Result, error)
		status int
		body   string
		header string
	}{
		{"success", func() (invoke.Result, error) {
			return invoke.Result{Output: json.RawMessage(`{"ok":1}`), Activation: id}, nil
		}, 200, `{"data":{"ok":1}}`, id},
		{"function error", func() (invoke.Result, error) { return invoke.Result{}, guest }, 422, `{"errors":{"detail":"Error: boom"}}`, id},
		{"nothing ran", func() (invoke.Result, error) { return invoke.Result{}, invoke.ErrNoWorker }, 503, `{"errors":{"detail":"No worker available"}}`, ""},
	}
	for _, tt := range tests {
		mu.Lock()
		answer = tt.answer
		mu.Unlock()
		hr, _ := http.NewRequest("POST", e.base+"/v1/fn/_/hello", strings.NewReader(`{}`))
		hr.Header.Set("Authorization", "Bearer "+e.admin)
		hr.Header.Set("Content-Type", "application/json")
		resp, err := e.client.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		resp.Body.Close()
		e.spec.Check(t, hr, []byte(`{}`), true, resp, []byte(b.String()))
		if resp.StatusCode != tt.status || b.String() != tt.body || resp.Header.Get(invoke.ActivationHeader) != tt.header {
			t.Fatalf("%s: %d %s, %s=%q; want %d %s, %q", tt.name, resp.StatusCode, b.String(),
				invoke.ActivationHeader, resp.Header.Get(invoke.ActivationHeader), tt.status, tt.body, tt.header)
		}
	}
}

// TestActivationList: newest first, paging with next/before without
// duplicates or gaps, every filter, oldest first, ownership, bad queries;
// on both stores.
func TestActivationList(t *testing.T) {
	t.Parallel()
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, ts.open(t))
			testActivationList(t, e)
		})
	}
}

func testActivationList(t *testing.T, e *env) {
	ctx := context.Background()
	alice := mkSubject(t, e, "alice")
	bob := mkSubject(t, e, "bob")
	status, body := e.do(req{method: "POST", path: "/v1/fn", token: alice, contentType: "application/json", body: []byte(`{"module":{"name":"am"}}`)})
	wantData[nameItem](t, status, body, 201)
	if _, err := e.st.CreateAgent(ctx, store.Agent{ID: "ag_00000000000000e1", Name: "edge1", CredentialHash: []byte("c1")}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	sources := []string{"api", "mqtt", "local-api", "local-mqtt"}
	var ids []string
	var as []store.Activation
	for i := range 25 {
		started := base.Add(time.Duration(i) * time.Minute)
		a := store.Activation{ID: activationid.New(started), Module: "_", Function: fmt.Sprint("f", i%2), Digest: "sha256:ab",
			Agent: fmt.Sprintf("ag_00000000000000e%d", 1+i%3), Source: sources[i%4], Output: []byte(`{}`), Started: started}
		if i%4 == 3 {
			a.Module = "am"
		}
		if i%5 == 0 {
			a.Code, a.Message, a.Output = 3, "trap", nil
		}
		ids = append(ids, a.ID)
		as = append(as, a)
	}
	record(t, e.st, as...)
	list := func(who, q string) ([]string, string) {
		t.Helper()
		status, body := e.do(req{method: "GET", path: "/v1/activations?" + q, token: who})
		var page struct {
			Data []activationInfo `json:"data"`
			Next string           `json:"next"`
		}
		if status != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("GET /v1/activations?%s: %d %s", q, status, body)
		}
		out := []string{}
		for _, a := range page.Data {
			out = append(out, a.ID)
		}
		return out, page.Next
	}
	sel := func(keep func(i int) bool) []string {
		out := []string{}
		for i := len(ids) - 1; i >= 0; i-- {
			if keep(i) {
				out = append(out, ids[i])
			}
		}
		return out
	}
	tests := []struct {
		who, q string
		keep   func(i int) bool
	}{
		{"", "", func(int) bool { return true }},
		{"", "function=f1", func(i int) bool { return i%2 == 1 }},
		{"", "module=am", func(i int) bool { return i%4 == 3 }},
		{"", "agent=ag_00000000000000e2", func(i int) bool { return i%3 == 1 }},
		{"", "agent=edge1", func(i int) bool { return i%3 == 0 }},
		{"", "agent=nobody", func(int) bool { return false }},
		{"", "status=error", func(i int) bool { return i%5 == 0 }},
		{"", "status=success&function=f0", func(i int) bool { return i%5 != 0 && i%2 == 0 }},
		{"", "source=local-api", func(i int) bool { return i%4 == 2 }},
		{"", "since=2026-11-25T10:05:00Z&until=2026-11-25T10:10:00Z", func(i int) bool { return i >= 5 && i < 10 }},
		{"", "before=" + ids[3], func(i int) bool { return i < 3 }},
		{"", "after=" + ids[20], func(i int) bool { return i > 20 }},
		{alice, "", func(i int) bool { return i%4 == 3 }},
		{alice, "status=error", func(i int) bool { return i%4 == 3 && i%5 == 0 }},
		{bob, "", func(int) bool { return false }},
		{bob, "module=am", func(int) bool { return false }},
	}
	for _, tt := range tests {
		got, _ := list(tt.who, tt.q)
		if want := sel(tt.keep); !slices.Equal(got, want) {
			t.Fatalf("?%s as %q:\n got  %v\n want %v", tt.q, tt.who, got, want)
		}
	}
	// Oldest first, with after paging.
	if got, next := list("", "order=oldest&limit=3"); !slices.Equal(got, ids[:3]) || next != ids[2] {
		t.Fatalf("oldest first: %v next %q", got, next)
	}
	// Paging newest first with next while newer and older activations are
	// recorded: every one that existed is listed once, in order.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			newer := activationid.New(time.Now())
			older := activationid.New(base.Add(-time.Hour)) // a late outbox replay
			record(t, e.st, store.Activation{ID: newer, Module: "_", Function: "f0", Source: "api", Started: time.Now()},
				store.Activation{ID: older, Module: "_", Function: "f0", Source: "local-api", Started: base.Add(-time.Hour)})
		}
	})
	var paged []string
	q := "function=f0&limit=4"
	for {
		got, next := list("", q)
		paged = append(paged, got...)
		if next == "" {
			break
		}
		q = "function=f0&limit=4&before=" + next
	}
	close(stop)
	wg.Wait()
	if !slices.IsSortedFunc(paged, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Fatalf("paged not newest first: %v", paged)
	}
	seen := map[string]bool{}
	for _, id := range paged {
		if seen[id] {
			t.Fatalf("%s listed twice", id)
		}
		seen[id] = true
	}
	for i := 0; i < 25; i += 2 {
		if !seen[ids[i]] {
			t.Fatalf("%s (f0) missing from the pages", ids[i])
		}
	}

	for _, q := range []string{"status=maybe", "source=cron", "until=tomorrow", "before=short", "order=random", "limit=1001", "follow=2",
		"follow=1&before=" + ids[0], "follow=1&limit=5"} {
		status, body := e.do(req{method: "GET", path: "/v1/activations?" + q, bad: true})
		wantError(t, status, body, 400)
	}
}

// sse reads a follow stream.
type sse struct {
	resp   *http.Response
	events chan sseEvent
	done   chan struct{}
}

type sseEvent struct {
	name string
	data string
	at   time.Time
}

// follow opens GET /v1/activations?follow=1&q as who and reads its events
// in the background until the stream ends.
func follow(t *testing.T, e *env, who, q string) *sse {
	t.Helper()
	hr, _ := http.NewRequest("GET", e.base+"/v1/activations?follow=1&"+q, nil)
	if who == "" {
		who = "Bearer " + e.admin
	}
	hr.Header.Set("Authorization", who)
	resp, err := (&http.Client{}).Do(hr) // no timeout: the stream is long
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("follow: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sse{resp: resp, events: make(chan sseEvent, 1000), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ev.at = time.Now()
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	t.Cleanup(func() { resp.Body.Close(); <-s.done })
	return s
}

func (s *sse) next(t *testing.T, within time.Duration) sseEvent {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %s", within)
	}
	return sseEvent{}
}

// TestFollowActivations: a follow stream delivers new activations within
// a second (the latency is printed), only what its filters and its
// caller's ownership select, each once, in the order recorded, including
// a late one with an old id; it ends when the client goes, without
// leaking goroutines; the caps answer 429; on both stores.
func TestFollowActivations(t *testing.T) {
	for _, ts := range testStores() {
		t.Run(ts.name, func(t *testing.T) {
			bell := &activations.Bell{}
			e := start(t, ts.open(t), func(c *Config) { c.Recorded = bell; c.MaxFollowersPerSubject = 3 })
			testFollow(t, e, bell)
		})
	}
}

func testFollow(t *testing.T, e *env, bell *activations.Bell) {
	alice := mkSubject(t, e, "alice")
	status, body := e.do(req{method: "POST", path: "/v1/fn", token: alice, contentType: "application/json", body: []byte(`{"module":{"name":"am"}}`)})
	wantData[nameItem](t, status, body, 201)
	old := activationid.New(time.Now().Add(-time.Hour))
	record(t, e.st, store.Activation{ID: old, Module: "_", Function: "f", Source: "api", Started: time.Now().Add(-time.Hour)})

	goroutines := runtime.NumGoroutine()
	all := follow(t, e, "", "")
	errs := follow(t, e, "", "function=f&status=error")
	mine := follow(t, e, alice, "")
	for _, s := range []*sse{all, errs, mine} {
		select {
		case ev := <-s.events:
			t.Fatalf("a stream showed %v, recorded before it opened", ev)
		case <-time.After(300 * time.Millisecond):
		}
	}

	// Woken by the bell, and by polling alone.
	var worst time.Duration
	for i, ring := range []bool{true, false, true} {
		a := store.Activation{ID: activationid.New(time.Now()), Module: "_", Function: "f", Source: "api", Started: time.Now(),
			Code: 3, Message: "trap"}
		t0 := time.Now()
		record(t, e.st, a)
		if ring {
			bell.Ring()
		}
		for _, s := range []*sse{all, errs} {
			ev := s.next(t, 5*time.Second)
			var got activationInfo
			if ev.name != "activation" || json.Unmarshal([]byte(ev.data), &got) != nil || got.ID != a.ID || got.Status != "error" {
				t.Fatalf("event %d: %+v", i, ev)
			}
			worst = max(worst, ev.at.Sub(t0))
		}
		t.Logf("follow latency (bell %v): %s", ring, worst)
	}
	t.Logf("follow latency, worst of 6 deliveries: %s", worst)
	if worst > time.Second {
		t.Fatalf("an activation took %s to reach a follower; want within 1s", worst)
	}

	// A success of alice's module: all and alice's streams get it, not the
	// errors one; then a late record with an old id reaches all.
	ok := store.Activation{ID: activationid.New(time.Now()), Module: "am", Function: "g", Source: "local-api", Started: time.Now(), Output: []byte(`{}`)}
	record(t, e.st, ok)
	late := store.Activation{ID: activationid.New(time.Now().Add(-30 * time.Minute)), Module: "_", Function: "f", Source: "local-mqtt",
		Started: time.Now().Add(-30 * time.Minute), Code: 3, Message: "replayed"}
	record(t, e.st, late)
	for _, tc := range []struct {
		s    *sse
		want []string
	}{{all, []string{ok.ID, late.ID}}, {mine, []string{ok.ID}}, {errs, []string{late.ID}}} {
		var got []string
		for range tc.want {
			var info activationInfo
			json.Unmarshal([]byte(tc.s.next(t, 5*time.Second).data), &info)
			got = append(got, info.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Fatalf("stream got %v, want %v", got, tc.want)
		}
		select {
		case ev := <-tc.s.events:
			t.Fatalf("an extra event %+v", ev)
		case <-time.After(600 * time.Millisecond): // two polls: nothing is sent twice
		}
	}

	// The cap per subject: alice has one open; two more, then 429.
	mine2, mine3 := follow(t, e, alice, ""), follow(t, e, alice, "")
	hr, _ := http.NewRequest("GET", e.base+"/v1/activations?follow=1", nil)
	hr.Header.Set("Authorization", alice)
	resp, err := e.client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 {
		t.Fatalf("a 4th stream of alice: %d, want 429", resp.StatusCode)
	}

	// Closing the clients ends the streams and their goroutines.
	for _, s := range []*sse{all, errs, mine, mine2, mine3} {
		s.resp.Body.Close()
		<-s.done
	}
	srv := e.server
	waitUntil(t, "streams closed", func() bool { return srv.FollowersOpen() == 0 })
	e.client.CloseIdleConnections()
	waitUntil(t, "goroutines back", func() bool { return runtime.NumGoroutine() <= goroutines+2 })
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFollowSlowReaderAndShutdown: a client that never reads its stream
// while many large activations are recorded is dropped after the write
// wait instead of making the server buffer them (the heap stays bounded);
// shutting the server down ends an open stream at once.
func TestFollowSlowReaderAndShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for a write deadline")
	}
	st := openEmbedded(t)
	e := start(t, st)
	// A raw connection that sends the request and never reads.
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(conn, "GET /v1/activations?follow=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", e.admin)
	waitUntil(t, "stream open", func() bool { return e.server.FollowersOpen() == 1 })
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	big := []byte(`"` + strings.Repeat("x", 60<<10) + `"`)
	deadline := time.Now().Add(followWriteWait + 10*time.Second)
	recorded := 0
	for e.server.FollowersOpen() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stream of a client that does not read is still open after %d records", recorded)
		}
		var as []store.Activation
		for range 20 {
			as = append(as, store.Activation{ID: activationid.New(time.Now()), Module: "_", Function: "big", Source: "api", Started: time.Now(), Output: big})
		}
		record(t, st, as...)
		recorded += len(as)
		time.Sleep(100 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("a reader that never read was dropped after %d records of 60 KiB (%d MiB); heap %d -> %d MiB",
		recorded, recorded*60>>10, before.HeapAlloc>>20, after.HeapAlloc>>20)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Fatalf("the heap grew by %d MiB", grew>>20)
	}

	// Shutdown with a stream open (a reading one) returns promptly.
	s := follow(t, e, "", "")
	t0 := time.Now()
	e.cancel()
	select {
	case <-e.stopped:
		if e.runErr != nil {
			t.Fatalf("Run: %v", e.runErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown hangs on an open stream")
	}
	if ev := s.next(t, 2*time.Second); ev.name != "end" {
		t.Fatalf("last event %+v, want end", ev)
	}
	<-s.done
	t.Logf("shutdown with an open stream took %s", time.Since(t0))
}
