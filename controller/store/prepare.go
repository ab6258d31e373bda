package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wispfn/wisp/controller/fnspec"
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

// maxAgentBytes bounds the byte counts kept of an agent (Postgres keeps
// them in a signed bigint): 2^62 bytes is far beyond any machine.
const maxAgentBytes = 1 << 62

// prepareAgent is how the stores keep a new agent: labels copied, Created
// and LastSeen set to the store's clock, byte counts bounded.
func prepareAgent(a Agent) Agent {
	a.Labels = prepareLabels(a.Labels)
	a.Created = now()
	a.LastSeen = a.Created
	a.JoinMemBytes = min(a.JoinMemBytes, maxAgentBytes)
	a.Control = prepareControl(a.Control)
	return a
}

// prepareControl copies an agent's operator labels and bounds its cap.
func prepareControl(c AgentControl) AgentControl {
	c.Labels = prepareLabels(c.Labels)
	c.MemCapBytes = min(c.MemCapBytes, maxAgentBytes)
	return c
}

// prepareLabels copies labels so the caller's slice is not retained, and
// turns nil into an empty slice (lists are never nil).
func prepareLabels(labels []string) []string {
	return append([]string{}, labels...)
}

// decodeSpec reads a function's stored settings. The error is
// Function.Unreadable's: it names the store and every unreadable field.
func decodeSpec(events, sinks, metadata, config []byte) (fnspec.Spec, error) {
	spec, err := fnspec.Decode(events, sinks, metadata, config)
	if err != nil {
		return spec, fmt.Errorf("store: the function's stored settings are unreadable: %w", err)
	}
	return spec, nil
}

// prepareFunction checks that fn.Digest names code and sets fn.Size from it.
// Both implementations call it before writing a function. Unreadable is
// cleared: the settings written are the caller's.
func prepareFunction(fn Function, code []byte) (Function, error) {
	fn.Unreadable = nil
	sum := sha256.Sum256(code)
	if want := "sha256:" + hex.EncodeToString(sum[:]); fn.Digest != want {
		return Function{}, fmt.Errorf("store: function %s/%s: digest %q, code hashes to %q: %w",
			fn.Module, fn.Name, fn.Digest, want, ErrDigestMismatch)
	}
	fn.Size = int64(len(code))
	return fn, nil
}

// listLimit turns a caller's limit into the one a list uses: <= 0 means
// DefaultActivationLimit, and no more than MaxActivationLimit.
func listLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultActivationLimit
	case n > MaxActivationLimit:
		return MaxActivationLimit
	}
	return n
}

// prepareActivations readies a batch for recording at recorded: it checks
// every id, keeps only the first element of each id, sorts by id (so that
// concurrent batches take row locks in one order), sets Recorded, keeps
// Started in UTC to the microsecond, and drops the sinks of failed
// activations. The caller's slices are not modified.
func prepareActivations(as []ActivationWithSinks, recorded time.Time) ([]ActivationWithSinks, error) {
	out := make([]ActivationWithSinks, 0, len(as))
	seen := make(map[string]bool, len(as))
	for _, a := range as {
		if a.ID == "" || strings.IndexByte(a.ID, 0) >= 0 {
			return nil, fmt.Errorf("activation %q of %s/%s: the id is empty or holds a NUL byte: %w",
				a.ID, a.Module, a.Function, ErrInvalid)
		}
		if a.Code < math.MinInt32 || a.Code > math.MaxInt32 {
			return nil, fmt.Errorf("activation %q: code %d does not fit 32 bits: %w", a.ID, a.Code, ErrInvalid)
		}
		if seen[a.ID] {
			continue
		}
		seen[a.ID] = true
		a.Started = storeTime(a.Started)
		a.Recorded = recorded
		if a.Code != 0 {
			a.Sinks = nil
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b ActivationWithSinks) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// sinkIndexOK reports whether i can name a queued delivery: sink indexes are
// kept in 32 bits (a function has a handful of sinks).
func sinkIndexOK(i int) bool {
	return i >= 0 && i <= math.MaxInt32
}

// prepareQuarantine readies a quarantine for storing at created: a digest
// that can be a key, a reason that any store keeps as text, times in UTC to
// the microsecond.
func prepareQuarantine(q Quarantine, created time.Time) (Quarantine, error) {
	if q.Digest == "" || strings.IndexByte(q.Digest, 0) >= 0 || !utf8.ValidString(q.Digest) {
		return Quarantine{}, fmt.Errorf("quarantine of %q: the digest is empty or not text: %w", q.Digest, ErrInvalid)
	}
	q.Reason = boundText(q.Reason, MaxQuarantineReason)
	q.Agent = strings.ToValidUTF8(strings.ReplaceAll(q.Agent, "\x00", ""), "")
	q.Since = storeTime(q.Since)
	q.Created = created
	return q, nil
}

// boundText is s as any store keeps text from an agent: without NUL bytes,
// valid UTF-8 (invalid bytes replaced), at most n bytes (cut at a
// character boundary).
func boundText(s string, n int) string {
	r := strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(r) > n {
		r = strings.ToValidUTF8(r[:n], "")
	}
	return r
}
