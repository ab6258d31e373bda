package auth

import "errors"

// ErrBadToken: the token is missing, malformed, or belongs to no subject.
var ErrBadToken = errors.New("missing or invalid token")
