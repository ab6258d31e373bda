package auth

import "errors"

// ErrBadToken: the token is missing, malformed, or belongs to no subject.
var ErrBadToken = errors.New("missing or invalid token")

// ErrNoAdmin: the store has no admin subject to give a new token to.
var ErrNoAdmin = errors.New("auth: no admin subject in the store (the controller has never started on it)")
