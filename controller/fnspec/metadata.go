package fnspec

import (
	"encoding/json"
	"strconv"
)

// Metadata is what scheduling, assignment and dispatch need to know about
// a function. Its JSON is {"tag":"t","capacity":<KiB>,"idempotent":true}.
type Metadata struct {
	// Tag names the agents the function is assigned to and the APP
	// script blocks that schedule it; "" means none.
	Tag string `json:"tag,omitempty"`
	// Capacity is the memory the function needs, in KiB (FunLess says KB
	// and compares bytes; Wisp uses KiB throughout); nil when not given.
	Capacity *int64 `json:"capacity,omitempty"`
	// Idempotent (Wisp's addition) says that running the function twice
	// for one call does no harm, which lets the controller run a call on
	// another agent when the first one is alive but does not start it
	// (docs/delivery.md).
	Idempotent bool `json:"idempotent,omitempty"`
}

// CapacityKiB is the capacity as a scheduler filter, 0 when not given.
func (m Metadata) CapacityKiB() uint64 {
	if m.Capacity == nil || *m.Capacity <= 0 {
		return 0
	}
	return uint64(*m.Capacity)
}

// ParseMetadata parses a metadata field:
// {"tag":"t","capacity":<KiB>,"idempotent":true}. Empty means none (zero).
//
// # Errors
//
// An *Error (wrapping ErrInvalid) for malformed JSON, a value other than
// an object, unknown keys, or a capacity that is not a whole number of KiB,
// 0 or more.
func ParseMetadata(raw []byte) (Metadata, error) {
	if absent(raw) {
		return Metadata{}, nil
	}
	var in *struct {
		Tag        *string      `json:"tag"`
		Capacity   *json.Number `json:"capacity"`
		Idempotent *bool        `json:"idempotent"`
	}
	if err := strictUnmarshal("metadata", raw, &in); err != nil {
		return Metadata{}, err
	}
	if in == nil {
		return Metadata{}, invalid("metadata", "want an object")
	}
	var m Metadata
	if in.Tag != nil {
		m.Tag = *in.Tag
	}
	if in.Capacity != nil {
		c, err := strconv.ParseInt(in.Capacity.String(), 10, 64)
		if err != nil || c < 0 {
			return Metadata{}, invalid("metadata", "capacity must be a whole number of KiB, 0 or more")
		}
		m.Capacity = &c
	}
	if in.Idempotent != nil {
		m.Idempotent = *in.Idempotent
	}
	return m, nil
}
