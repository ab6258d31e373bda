package sinks

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Check connects to a sink's server and makes sure its database exists
// (creating it if needed): what the controller does when a function with
// sinks is created, to answer FunLess's 207 when a sink cannot be reached.
// Deliveries do not depend on it: they are queued and retried anyway.
//
// # Errors
//
// ErrInvalidParams for bad params; otherwise a message with the HTTP status
// or the transport error, never the password.
func Check(ctx context.Context, p Params) error {
	t, err := p.target()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, t.server+"/"+t.db, nil)
	if err != nil {
		return fmt.Errorf("sink %s: %s", p, p.scrub(err.Error()))
	}
	if t.username != "" || t.password != "" {
		req.SetBasicAuth(t.username, t.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sink %s: %s", p, p.scrub(err.Error()))
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusAccepted, http.StatusPreconditionFailed: // created, or already there
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("sink %s: the server refused the credentials (%d)", p, resp.StatusCode)
	}
	return fmt.Errorf("sink %s: the server answered %d", p, resp.StatusCode)
}
