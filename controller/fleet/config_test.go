package fleet

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

func TestConfigEnvSorted(t *testing.T) {
	got := configEnv(fnspec.Config{Env: map[string]string{"B": "2", "A_1": "x=y", "A": ""}})
	if want := []string{"A=", "A_1=x=y", "B=2"}; !slices.Equal(got, want) {
		t.Fatalf("configEnv = %q, want %q", got, want)
	}
	if configEnv(fnspec.Config{}) != nil {
		t.Fatal("no env should be nil")
	}
}

// TestInvokeCarriesConfig: every Invoke carries the function's env and its
// allowlist, or the controller's default when it sets none; the desired
// set carries the same, and the agent keeps it.
func TestInvokeCarriesConfig(t *testing.T) {
	c := startController(t)
	c.fleet.cfg.DefaultAllowHosts = []string{"default.test"}
	var mu sync.Mutex
	var got []*protocol.Invoke
	startFakeAgent(t, c, "fake", fakeBehaviour{answer: func(m *protocol.Invoke) []protocol.Message {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		return runs(`{}`)(m)
	}})
	waitFor(t, "the agent", func() bool { return c.fleet.Connected() == 1 })

	own := createFunction(t, c.store, "own", "hello_c", "")
	own.Spec.Config = fnspec.Config{Env: map[string]string{"Z": "last", "A": "first"}, AllowHosts: []string{"*.example.com"}}
	plain := createFunction(t, c.store, "plain", "hello_wat", "")
	for _, fn := range []store.Function{own, plain} {
		req, err := invoke.ForFunction(fn, json.RawMessage(`{}`), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.disp.Invoke(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d invokes", len(got))
	}
	if !slices.Equal(got[0].Env, []string{"A=first", "Z=last"}) || !slices.Equal(got[0].AllowedHosts, []string{"*.example.com"}) {
		t.Errorf("own config: env %q hosts %q", got[0].Env, got[0].AllowedHosts)
	}
	if len(got[1].Env) != 0 || !slices.Equal(got[1].AllowedHosts, []string{"default.test"}) {
		t.Errorf("no config: env %q hosts %q, want the default allowlist", got[1].Env, got[1].AllowedHosts)
	}
}

func TestDesiredCarriesConfig(t *testing.T) {
	c := startController(t)
	a := startAgent(t, c.addr, c.token, "edge", t.TempDir())
	waitFor(t, "the agent", func() bool { return c.fleet.Connected() == 1 })
	fn := createFunction(t, c.store, "cfg", "hello_c", "")
	fn.Spec.Config = fnspec.Config{Env: map[string]string{"K": "v"}, AllowHosts: []string{"api.test:443"}}
	code, err := c.store.Code(context.Background(), fn.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.UpdateFunction(context.Background(), fn, code); err != nil {
		t.Fatal(err)
	}
	c.fleet.SyncDesired(context.Background())
	waitFor(t, "the desired set with the config", func() bool {
		d, ok := a.state.DesiredFunction("_", "cfg")
		return ok && slices.Equal(d.Env, []string{"K=v"}) && slices.Equal(d.AllowHosts, []string{"api.test:443"})
	})
}
