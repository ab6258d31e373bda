package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/wispfn/wisp/controller/invoke"
	"github.com/wispfn/wisp/controller/secrets"
	"github.com/wispfn/wisp/protocol"
)

// SecretValues opens the values of a module's secrets
// (controller/secrets.Service). Its errors never hold a value.
type SecretValues interface {
	Values(ctx context.Context, module string, names []string) ([]protocol.Secret, error)
}

// secretValues opens the named secrets of module as an invoke error:
// Failed (500) naming what is missing or unreadable, never a value.
func (f *Fleet) secretValues(ctx context.Context, module string, names []string) ([]protocol.Secret, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if f.cfg.Secrets == nil {
		return nil, invoke.Failed("This controller keeps no secrets, and the function's config names "+strings.Join(names, ", "), nil)
	}
	vals, err := f.cfg.Secrets.Values(ctx, module, names)
	var miss *secrets.MissingError
	switch {
	case errors.As(err, &miss):
		return nil, invoke.Failed(fmt.Sprintf("The function's config names secret(s) %s that module %s does not hold", strings.Join(miss.Names, ", "), module), err)
	case errors.Is(err, secrets.ErrUnreadable):
		return nil, invoke.Failed(fmt.Sprintf("A secret of module %s cannot be decrypted with this controller's keys (see the log)", module), err)
	case err != nil:
		return nil, invoke.Failed("Cannot read the function's secrets now", err)
	}
	return vals, nil
}
