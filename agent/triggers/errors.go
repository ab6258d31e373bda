package triggers

import "errors"

var (
	// ErrClosed is returned by Sync after Run has returned.
	ErrClosed = errors.New("triggers: closed")
	// ErrInvalidBinding marks a binding with an empty name or an invalid topic filter.
	ErrInvalidBinding = errors.New("triggers: invalid binding")
	// ErrSubscribe is returned by Sync when the broker refused or did not
	// acknowledge a (un)subscription in time; it is retried on the next connect.
	ErrSubscribe = errors.New("triggers: subscribe failed")
)
