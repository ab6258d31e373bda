package sinks

import "errors"

var (
	// ErrInvalidParams is wrapped by every error of [ValidateParams].
	ErrInvalidParams = errors.New("sinks: invalid sink parameters")
	// ErrRunning is returned by [Worker.Run] when the worker is already running.
	ErrRunning = errors.New("sinks: worker already running")
)
