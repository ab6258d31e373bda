package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/wispfn/wisp/controller/fnspec"
)

// FunctionVersion is one kept version of a function: what the function
// was made of after one create or update (issue 14: versions and
// rollback). Versions are numbered 1, 2, 3... per function, in the order
// written; a number is never reused while the function exists.
type FunctionVersion struct {
	Number int64
	Digest string
	Size   int64
	ABI    string
	// Spec is the version's settings, kept through the encoding the
	// function's own settings use (fnspec.Spec.Encode), plus its Config.
	Spec fnspec.Spec
	// Unreadable is set, as Function.Unreadable, when the kept settings
	// do not parse: Spec then holds the fields that do.
	Unreadable error
	// Created is when the version was written (the function's Updated
	// then).
	Created time.Time
}

// versionOf is the version fn is, numbered n.
func versionOf(fn Function, n int64) FunctionVersion {
	return FunctionVersion{Number: n, Digest: fn.Digest, Size: fn.Size, ABI: fn.ABI, Spec: fn.Spec, Created: fn.Updated}
}

// versionSpec is how a version's settings are kept: one JSON object whose
// fields are the stored forms of each setting (fnspec.Spec.Encode's, and
// the Config's JSON), absent when the setting is.
type versionSpec struct {
	Events   json.RawMessage `json:"events,omitempty"`
	Sinks    json.RawMessage `json:"sinks,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Config   json.RawMessage `json:"config,omitempty"`
}

// encodeVersionSpec returns the stored form of a version's settings.
func encodeVersionSpec(s fnspec.Spec) []byte {
	var v versionSpec
	v.Events, v.Sinks, v.Metadata, v.Config = s.Encode()
	b, err := json.Marshal(v)
	if err != nil {
		panic("store: marshal version settings: " + err.Error())
	}
	return b
}

// decodeVersionSpec reads a version's stored settings with the parsers
// the API uses; the error is FunctionVersion.Unreadable's.
func decodeVersionSpec(raw []byte) (fnspec.Spec, error) {
	var v versionSpec
	if err := json.Unmarshal(raw, &v); err != nil {
		return fnspec.Spec{}, fmt.Errorf("store: the version's stored settings are unreadable: %w", err)
	}
	return decodeSpec(v.Events, v.Sinks, v.Metadata, v.Config)
}

// keepVersions is how many versions PruneFunctionVersions keeps for a
// caller's keep: at least the newest.
func keepVersions(keep int) int { return max(keep, 1) }

// keepDigestsOf appends to keep, up to n, the distinct digests of the
// versions given newest first that are not current: a function's
// KeptDigests entry.
func keepDigestsOf(keep []string, current string, digest string, n int) []string {
	if len(keep) < n && digest != current && !slices.Contains(keep, digest) {
		keep = append(keep, digest)
	}
	return keep
}
