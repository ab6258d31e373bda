package events

import "errors"

var (
	// ErrClosed is returned by Sync and Hold after Run has returned.
	ErrClosed = errors.New("events: manager closed")
	// ErrHolding is returned by Hold while another Hold runs.
	ErrHolding = errors.New("events: already holding the subscriptions")
	// ErrInvalidEvent marks an events field or event that cannot be used.
	ErrInvalidEvent = errors.New("events: invalid event")
	// ErrNotConnected is the status of a binding whose broker is not
	// connected when Sync's wait ends; the Manager keeps retrying it.
	ErrNotConnected = errors.New("events: broker not connected")
	// ErrSubscribe is the status of a binding the broker refused or did not
	// acknowledge in time.
	ErrSubscribe = errors.New("events: subscribe failed")
)
