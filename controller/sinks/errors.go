package sinks

import "errors"

var (
	// ErrInvalidParams is wrapped by every error of [ValidateParams] and [ValidateSink].
	ErrInvalidParams = errors.New("sinks: invalid sink parameters")
	// ErrUnsupportedType is returned by [ValidateSink] for a type other than "couchdb".
	ErrUnsupportedType = errors.New("sinks: unsupported sink type")
	// ErrRunning is returned by [Worker.Run] when the worker is already running.
	ErrRunning = errors.New("sinks: worker already running")
)
