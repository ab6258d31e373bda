package scheduler

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrInvalidScript: an APP script is not valid YAML or not a valid APP
// script. The error text says where and why.
var ErrInvalidScript = errors.New("invalid APP script")

// MaxScriptBytes bounds the APP source ParseAPP accepts.
const MaxScriptBytes = 1 << 20

// Strategy is how a block picks among its valid workers.
type Strategy string

const (
	// StrategyBestFirst takes the first valid worker in the block's order.
	StrategyBestFirst Strategy = "best-first"
	// StrategyRandom takes a valid worker at random.
	StrategyRandom Strategy = "random"
	// StrategyPlatform applies the platform's default policy (most
	// available memory) to the block's valid workers.
	StrategyPlatform Strategy = "platform"
)

// Followup is what happens when every block of a tag fails.
type Followup string

const (
	// FollowupFail answers the invocation with an error.
	FollowupFail Followup = "fail"
	// FollowupDefault falls back to the blocks of the "default" tag.
	FollowupDefault Followup = "default"
)

// DefaultTag is the tag whose blocks apply to functions whose tag has no entry.
const DefaultTag = "default"

// Script is a parsed APP script.
type Script struct {
	// Tags in source order; names are unique.
	Tags []Tag `json:"tags"`
}

// Tag is the scheduling policy of the functions whose metadata tag is Name.
type Tag struct {
	Name     string   `json:"name"`
	Blocks   []Block  `json:"blocks"`
	Followup Followup `json:"followup"`
}

// Block is a group of workers tried together.
type Block struct {
	// Workers are agent names or ids, or "key=value" labels (IsWorker);
	// AllWorkers means any agent.
	Workers    []string   `json:"workers"`
	AllWorkers bool       `json:"all_workers"`
	Strategy   Strategy   `json:"strategy"`
	Invalidate Invalidate `json:"invalidate"`
}

// Invalidate says when a worker of a block is not valid. Zero values mean no
// limit.
type Invalidate struct {
	// CapacityUsed is a percentage (1-100) of the worker's memory that
	// running the function must not exceed; 0 means no limit.
	CapacityUsed int `json:"capacity_used,omitempty"`
	// MaxConcurrentInvocations is how many invocations the worker may run
	// at once, counting the one being placed: a worker already running
	// this many is not valid. 0 means no limit.
	MaxConcurrentInvocations int `json:"max_concurrent_invocations,omitempty"`
}

// Tag returns the tag named name.
func (s Script) Tag(name string) (Tag, bool) {
	for _, t := range s.Tags {
		if t.Name == name {
			return t, true
		}
	}
	return Tag{}, false
}

// ParseAPP parses and validates an APP script:
//
//	# an APP script (this line keeps gofmt from reading the example as a list)
//	- tag_a:                                  # a function metadata tag
//	    - workers: [edge1, edge2]             # agent names, or "*"
//	      strategy: best-first                # best-first | random | platform
//	      invalidate: {capacity_used: 50%, max_concurrent_invocations: 3}
//	  followup: default                       # default | fail
//
// # Notes
//
// The document is a non-empty list; each item maps exactly one tag name to a
// non-empty list of blocks, plus an optional followup. Defaults (Wisp's
// choice, FunLess leaves them implicit): strategy "best-first", followup
// "fail", no invalidation limits. capacity_used accepts 50%, "50" or 50.
// Unknown keys are errors, so a typo is never silently ignored. Followup
// "default" on the default tag itself is an error (it would loop).
//
// # Errors
//
// Every error wraps ErrInvalidScript and names the line where it can.
func ParseAPP(src []byte) (Script, error) {
	if len(src) > MaxScriptBytes {
		return Script{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidScript, len(src), MaxScriptBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Script{}, fmt.Errorf("%w: the script is empty", ErrInvalidScript)
		}
		return Script{}, fmt.Errorf("%w: %v", ErrInvalidScript, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Script{}, fmt.Errorf("%w: the file holds more than one YAML document", ErrInvalidScript)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.SequenceNode || len(root.Content) == 0 {
		return Script{}, invalid(root, "the script must be a non-empty list of tags")
	}
	var s Script
	seen := map[string]bool{}
	for _, item := range root.Content {
		t, err := parseTag(item)
		if err != nil {
			return Script{}, err
		}
		if seen[t.Name] {
			return Script{}, invalid(item, "tag %q appears twice", t.Name)
		}
		seen[t.Name] = true
		s.Tags = append(s.Tags, t)
	}
	return s, nil
}

func invalid(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrInvalidScript, n.Line, fmt.Sprintf(format, args...))
}

func parseTag(item *yaml.Node) (Tag, error) {
	if item.Kind != yaml.MappingNode {
		return Tag{}, invalid(item, "each list item must map a tag to its blocks")
	}
	t := Tag{Followup: FollowupFail}
	var blocks *yaml.Node
	for i := 0; i+1 < len(item.Content); i += 2 {
		k, v := item.Content[i], item.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return Tag{}, invalid(k, "keys must be plain names")
		}
		if k.Value == "followup" {
			if v.Kind != yaml.ScalarNode {
				return Tag{}, invalid(v, "followup must be default or fail")
			}
			switch Followup(v.Value) {
			case FollowupFail, FollowupDefault:
				t.Followup = Followup(v.Value)
			default:
				return Tag{}, invalid(v, "followup %q: want default or fail", v.Value)
			}
			continue
		}
		if blocks != nil {
			return Tag{}, invalid(k, "one list item holds two tags (%q and %q); give each its own item", t.Name, k.Value)
		}
		if strings.TrimSpace(k.Value) == "" {
			return Tag{}, invalid(k, "a tag name must not be empty")
		}
		t.Name, blocks = k.Value, v
	}
	if blocks == nil {
		return Tag{}, invalid(item, "the item names no tag")
	}
	if blocks.Kind != yaml.SequenceNode || len(blocks.Content) == 0 {
		return Tag{}, invalid(blocks, "tag %q: want a non-empty list of blocks", t.Name)
	}
	if t.Name == DefaultTag && t.Followup == FollowupDefault {
		return Tag{}, invalid(item, "the default tag cannot follow up to itself")
	}
	for _, bn := range blocks.Content {
		b, err := parseBlock(t.Name, bn)
		if err != nil {
			return Tag{}, err
		}
		t.Blocks = append(t.Blocks, b)
	}
	return t, nil
}

func parseBlock(tag string, n *yaml.Node) (Block, error) {
	if n.Kind != yaml.MappingNode {
		return Block{}, invalid(n, "tag %q: a block must be a mapping with workers", tag)
	}
	b := Block{Strategy: StrategyBestFirst}
	hasWorkers := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "workers":
			hasWorkers = true
			if err := parseWorkers(tag, v, &b); err != nil {
				return Block{}, err
			}
		case "strategy":
			switch Strategy(v.Value) {
			case StrategyBestFirst, StrategyRandom, StrategyPlatform:
				if v.Kind != yaml.ScalarNode {
					return Block{}, invalid(v, "tag %q: strategy must be a name", tag)
				}
				b.Strategy = Strategy(v.Value)
			default:
				return Block{}, invalid(v, "tag %q: strategy %q: want best-first, random or platform", tag, v.Value)
			}
		case "invalidate":
			inv, err := parseInvalidate(tag, v)
			if err != nil {
				return Block{}, err
			}
			b.Invalidate = inv
		default:
			return Block{}, invalid(k, "tag %q: unknown block key %q (want workers, strategy, invalidate)", tag, k.Value)
		}
	}
	if !hasWorkers {
		return Block{}, invalid(n, "tag %q: a block needs workers", tag)
	}
	return b, nil
}

func parseWorkers(tag string, v *yaml.Node, b *Block) error {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Value != "*" {
			return invalid(v, "tag %q: workers must be a list of agent names or \"*\"", tag)
		}
		b.AllWorkers = true
		return nil
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			return invalid(v, "tag %q: workers must not be empty", tag)
		}
		for _, w := range v.Content {
			if w.Kind != yaml.ScalarNode || strings.TrimSpace(w.Value) == "" {
				return invalid(w, "tag %q: a worker must be a non-empty name", tag)
			}
			if w.Value == "*" {
				b.AllWorkers = true
				continue
			}
			b.Workers = append(b.Workers, w.Value)
		}
		return nil
	}
	return invalid(v, "tag %q: workers must be a list of agent names or \"*\"", tag)
}

func parseInvalidate(tag string, v *yaml.Node) (Invalidate, error) {
	var inv Invalidate
	if v.Kind != yaml.MappingNode {
		return inv, invalid(v, "tag %q: invalidate must be a mapping", tag)
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if val.Kind != yaml.ScalarNode {
			return inv, invalid(val, "tag %q: %s must be a number", tag, k.Value)
		}
		switch k.Value {
		case "capacity_used":
			p, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(val.Value), "%")))
			if err != nil || p < 1 || p > 100 {
				return inv, invalid(val, "tag %q: capacity_used %q: want a percentage from 1%% to 100%%", tag, val.Value)
			}
			inv.CapacityUsed = p
		case "max_concurrent_invocations":
			n, err := strconv.Atoi(val.Value)
			if err != nil || n < 1 {
				return inv, invalid(val, "tag %q: max_concurrent_invocations %q: want a positive integer", tag, val.Value)
			}
			inv.MaxConcurrentInvocations = n
		default:
			return inv, invalid(k, "tag %q: unknown invalidate key %q (want capacity_used, max_concurrent_invocations)", tag, k.Value)
		}
	}
	return inv, nil
}
