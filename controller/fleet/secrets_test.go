package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wispfn/wisp/controller/fnspec"
	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/secrets"
	"github.com/wispfn/wisp/protocol"
)

type fakeSecrets map[string]string // "module/name" -> value

func (f fakeSecrets) Values(_ context.Context, module string, names []string) ([]protocol.Secret, error) {
	var out []protocol.Secret
	for _, n := range names {
		v, ok := f[module+"/"+n]
		if !ok {
			return nil, &secrets.MissingError{Module: module, Names: []string{n}}
		}
		out = append(out, protocol.Secret{Name: n, Value: []byte(v)})
	}
	return out, nil
}

func TestInvokeEnv(t *testing.T) {
	d := &Dispatcher{fleet: &Fleet{cfg: Config{Secrets: fakeSecrets{"m/API_KEY": "k=v", "m/B": "b"}}}}
	req := invoke.Request{Module: "m", Function: "f", Config: fnspec.Config{Env: map[string]string{"Z": "1", "A": "2"}, Secrets: []string{"B", "API_KEY"}}}
	env, err := d.fleet.invokeEnv(t.Context(), req.Module, req.Config)
	// The config's env sorted, then the secrets in the config's order.
	if err != nil || !slices.Equal(env, []string{"A=2", "Z=1", "B=b", "API_KEY=k=v"}) {
		t.Fatalf("invokeEnv: %q %v", env, err)
	}
	env, err = d.fleet.invokeEnv(t.Context(), "m", fnspec.Config{})
	if err != nil || env != nil {
		t.Fatalf("invokeEnv without secrets: %q %v", env, err)
	}
	req.Config.Secrets = []string{"GONE"}
	_, err = d.fleet.invokeEnv(t.Context(), req.Module, req.Config)
	var ie *invoke.Error
	if !errors.As(err, &ie) || !errors.Is(err, invoke.ErrFailed) || !strings.Contains(ie.Detail, "GONE") {
		t.Fatalf("invokeEnv of a missing secret: %v", err)
	}
	none := &Dispatcher{fleet: &Fleet{cfg: Config{}}}
	if _, err := none.fleet.invokeEnv(t.Context(), req.Module, req.Config); !errors.Is(err, invoke.ErrFailed) {
		t.Fatalf("invokeEnv without a secrets service: %v", err)
	}
}

type failingSecrets struct{ err error }

func (f failingSecrets) Values(context.Context, string, []string) ([]protocol.Secret, error) {
	return nil, f.err
}

// TestInvokeEnvErrors: what a failed dispatch says names secrets, never
// values nor infrastructure.
func TestInvokeEnvErrors(t *testing.T) {
	req := invoke.Request{Module: "m", Config: fnspec.Config{Secrets: []string{"K"}}}
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: secret K of module m (key ab): sealbox: no", secrets.ErrUnreadable), "cannot be decrypted"},
		{errors.New("store: dial tcp 10.0.0.1:5432: refused"), "Cannot read the function's secrets now"},
	} {
		d := &Dispatcher{fleet: &Fleet{cfg: Config{Secrets: failingSecrets{c.err}}}}
		_, err := d.fleet.invokeEnv(t.Context(), req.Module, req.Config)
		var ie *invoke.Error
		if !errors.As(err, &ie) || !strings.Contains(ie.Detail, c.want) || strings.Contains(ie.Detail, "10.0.0.1") {
			t.Fatalf("%v: %v", c.err, err)
		}
	}
}
