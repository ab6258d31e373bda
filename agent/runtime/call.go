package runtime

import (
	"bytes"
	"context"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"

	"github.com/wispfn/wisp/protocol"
)

// call is the state of one invocation, shared by the host functions (which
// find it in their context) and by the instance's stdio writers.
type call struct {
	input  []byte
	limits Limits
	// linearCap is what linear memory may take: the memory cap less what
	// the module's tables can take.
	linearCap uint64
	allowed   []string
	// env is the guest's environment ("NAME=value", checked); an instance
	// made for another call (a spare) has none, so a call with env never
	// takes a spare.
	env    []string
	client *http.Client

	output       []byte
	outputSet    bool
	outputTooBig bool
	errMsg       []byte
	errSet       bool

	// log keeps the log lines: __console_log, stdout and stderr of
	// FunLess-ABI guests (StreamConsole), stderr of WASI commands
	// (StreamStderr), and the host's own lines (StreamPlatform).
	log logBuffer
	// streams are the log streams of stdio fds 1 and 2.
	streams [2]protocol.LogStream
	// stdout is a WASI command's output.
	stdout boundedBuffer

	// trap is set by a host function just before it panics, so the runtime
	// reports the host's precise reason rather than wazero's wrapping.
	trap *Error
	// deadline bounds guest sleeps.
	deadline time.Time
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// hostTrap records a trap and unwinds the guest. wazero recovers the panic
// and returns it from Call as an error; the host never crashes.
func (c *call) hostTrap(format string, args ...any) {
	e := newError(KindTrap, format, args...)
	if c != nil && c.trap == nil {
		c.trap = e
	}
	panic(e)
}

// platformLog adds a line of the host's own about this invocation (such as
// why an __http_request failed), bounded like the guest's.
func (c *call) platformLog(line string) {
	c.log.addString(protocol.StreamPlatform, line, time.Now())
}

// stderr is what a WASI command wrote to stderr, as far as the log bound
// kept it ("" for FunLess-ABI guests, whose stdio is in their log).
func (c *call) stderr() string {
	if c.streams[1] != protocol.StreamStderr {
		return ""
	}
	return c.log.text(protocol.StreamStderr, 2)
}

// sleep bounds a guest's poll_oneoff sleep by the invocation deadline, so a
// sleeping guest cannot outlive its timeout.
func (c *call) sleep(ns int64) {
	d := time.Duration(ns)
	if !c.deadline.IsZero() {
		if left := time.Until(c.deadline); left < d {
			d = left
		}
	}
	if d > 0 {
		time.Sleep(d)
	}
}

// boundedBuffer keeps at most max bytes and counts what it dropped.
type boundedBuffer struct {
	bytes.Buffer
	max     int
	dropped int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	room := b.max - b.Len()
	if room < len(p) {
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		b.dropped += len(p) - max(room, 0)
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// slot lets an instance built before its invocation (a spare) reach the
// invocation's state from its stdio writers and sleep function.
type slot struct{ c *call }

type slotWriter struct {
	s      *slot
	fd     int  // 1 or 2
	stdout bool // a WASI command's stdout is its output
}

func (w slotWriter) Write(p []byte) (int, error) {
	c := w.s.c
	if c == nil {
		return len(p), nil
	}
	if w.stdout {
		return c.stdout.Write(p)
	}
	c.log.write(w.fd, c.streams[w.fd-1], p)
	return len(p), nil
}

func (s *slot) sleep(ns int64) {
	if c := s.c; c != nil {
		c.sleep(ns)
		return
	}
	time.Sleep(min(time.Duration(ns), time.Second))
}

// FunLess host functions (module fl_imps). Every pointer the guest hands us
// is bounds-checked; a bad one traps this invocation only.

func hostGetInputData(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		(*call)(nil).hostTrap("__get_input_data called outside an invocation")
	}
	if !mod.Memory().Write(api.DecodeU32(stack[0]), c.input) {
		c.hostTrap("__get_input_data: %d bytes at %#x are outside linear memory", len(c.input), api.DecodeU32(stack[0]))
	}
}

func hostInsertResponse(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		(*call)(nil).hostTrap("__insert_response called outside an invocation")
	}
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	if int64(n) > int64(c.limits.OutputBytes) {
		c.outputTooBig = true
		c.outputSet = true
		c.output = nil
		return
	}
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		c.hostTrap("__insert_response: %d bytes at %#x are outside linear memory", n, ptr)
	}
	c.output = append(c.output[:0], b...)
	c.outputSet = true
	c.outputTooBig = false
}

func hostInsertError(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		(*call)(nil).hostTrap("__insert_error called outside an invocation")
	}
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	n = min(n, uint32(c.limits.OutputBytes))
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		c.hostTrap("__insert_error: %d bytes at %#x are outside linear memory", n, ptr)
	}
	c.errMsg = append(c.errMsg[:0], b...)
	c.errSet = true
}

func hostConsoleLog(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	if c == nil {
		return // a log line from a spare's initialisation has nowhere to go
	}
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	// Check the whole pointer, even for a line the bound drops: a bad one
	// is a bug the guest should see.
	if uint64(ptr)+uint64(n) > uint64(mod.Memory().Size()) {
		c.hostTrap("__console_log: %d bytes at %#x are outside linear memory", n, ptr)
	}
	// Read (a view of guest memory, no copy) at most what the bound can
	// keep, plus a UTF-8 sequence to cut at; add copies what it keeps.
	keep := uint32(min(uint64(n), uint64(c.log.room())+utf8.UTFMax))
	b, _ := mod.Memory().Read(ptr, keep)
	if keep < n {
		c.log.droppedBytes += int(n - keep) // add counts the rest
	}
	c.log.add(protocol.StreamConsole, b, time.Now())
}
