package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// now is the store's clock: UTC, truncated to what Postgres keeps
// (microseconds), so that a value read back equals the value written.
func now() time.Time {
	return time.Now().UTC().Truncate(time.Microsecond)
}

// storeTime is how the store keeps a time it was given: UTC, truncated to
// microseconds. The zero time stays zero (it means "never" or "unset").
func storeTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// expired reports whether a token expiring at expires is no longer valid at
// now. The zero time never expires.
func expired(expires, now time.Time) bool {
	return !expires.IsZero() && !now.Before(expires)
}

// prepareLabels copies labels so the caller's slice is not retained, and
// turns nil into an empty slice (lists are never nil).
func prepareLabels(labels []string) []string {
	return append([]string{}, labels...)
}

// prepareFunction checks that fn.Digest names code and sets fn.Size from it.
// Both implementations call it before writing a function.
func prepareFunction(fn Function, code []byte) (Function, error) {
	sum := sha256.Sum256(code)
	if want := "sha256:" + hex.EncodeToString(sum[:]); fn.Digest != want {
		return Function{}, fmt.Errorf("store: function %s/%s: digest %q, code hashes to %q: %w",
			fn.Module, fn.Name, fn.Digest, want, ErrDigestMismatch)
	}
	fn.Size = int64(len(code))
	return fn, nil
}
