package fleet

import (
	"slices"
	"testing"

	"github.com/wispfn/wisp/controller/store"
	"github.com/wispfn/wisp/protocol"
)

func TestEffectiveLabels(t *testing.T) {
	for _, tc := range []struct {
		name          string
		own, operator []string
		want          []string
	}{
		{"none", nil, nil, []string{}},
		{"own only", []string{"zone=a", "gpu"}, nil, []string{"zone=a", "gpu"}},
		{"operator overrides by key", []string{"zone=a", "arch=arm64"}, []string{"zone=b"}, []string{"arch=arm64", "zone=b"}},
		{"operator adds", []string{"zone=a"}, []string{"tag=gpu"}, []string{"zone=a", "tag=gpu"}},
		{"a key without value", []string{"gpu", "tag=x"}, []string{"gpu=no", "tag="}, []string{"gpu=no", "tag="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := effectiveLabels(tc.own, tc.operator); !slices.Equal(got, tc.want) {
				t.Fatalf("effectiveLabels(%q, %q) = %q, want %q", tc.own, tc.operator, got, tc.want)
			}
		})
	}
}

// TestSchedulerMemory: the scheduler never believes more than the memory
// reported at join or the operator's cap, whichever is lower, nor more
// available than total.
func TestSchedulerMemory(t *testing.T) {
	const GiB = 1 << 30
	for _, tc := range []struct {
		name                 string
		hello, beat          uint64 // reported total, then available
		join, cap            uint64
		wantTotal, wantAvail uint64
	}{
		{"honest, no bounds", 8 * GiB, 2 * GiB, 0, 0, 8 * GiB, 2 * GiB},
		{"available above total", 8 * GiB, 1 << 50, 0, 0, 8 * GiB, 8 * GiB},
		{"total above what it joined with", 1 << 50, 1 << 50, 4 * GiB, 0, 4 * GiB, 4 * GiB},
		{"operator cap", 8 * GiB, 6 * GiB, 8 * GiB, 1 * GiB, 1 * GiB, 1 * GiB},
		{"cap above join memory", 1 << 50, 1 << 50, 2 * GiB, 16 * GiB, 2 * GiB, 2 * GiB},
		{"no metrics", 0, 0, 0, GiB, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{hello: protocol.Hello{MemTotalBytes: tc.hello}}
			s.memAvail.Store(tc.beat)
			s.apply(store.Agent{JoinMemBytes: tc.join, Control: store.AgentControl{MemCapBytes: tc.cap}})
			if total, avail := s.schedulerMemory(); total != tc.wantTotal || avail != tc.wantAvail {
				t.Fatalf("schedulerMemory = %d, %d; want %d, %d", total, avail, tc.wantTotal, tc.wantAvail)
			}
		})
	}
}
