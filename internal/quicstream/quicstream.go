// Package quicstream holds the quic-go stream handling that the agent's
// link and the controller's fleet share. It sits outside both: the agent
// binary must not link controller code, and protocol/ stays standard
// library only.
package quicstream

import (
	"errors"
	"io"
	"time"

	"github.com/quic-go/quic-go"
)

// FinTimeout is how long Finish waits for the peer's FIN before it cancels
// the read side.
const FinTimeout = 5 * time.Second

// Finish ends both directions of a stream whose exchange is over, so that
// QUIC counts it closed and grants the peer a new one. It closes the write
// side (FIN) and reads the peer's FIN in the background, cancelling the
// read side only if none comes within FinTimeout. Cancelling at once would
// cost a STOP_SENDING and a RESET_STREAM, two packets every invocation
// would pay for; forgetting the read side leaks one stream credit per
// exchange until the connection stalls.
//
// When the peer's FIN has already been read (it came with the last frame,
// as the agent sends it), Finish returns at once without a goroutine.
func Finish(s *quic.Stream) {
	s.Close()
	if finRead(s) {
		return
	}
	go awaitFIN(s)
}

// finRead reports whether s's read side is at its end now: a read that
// cannot wait returns io.EOF. quic-go answers a stream whose FIN was read
// with io.EOF before it looks at the deadline; a stream with anything left
// to read reports false (data read here is dropped, as awaitFIN drops it).
func finRead(s *quic.Stream) bool {
	s.SetReadDeadline(pastDeadline)
	var buf [1]byte
	_, err := s.Read(buf[:])
	return errors.Is(err, io.EOF)
}

// pastDeadline is a read deadline that has passed: a read returns what is
// there without waiting.
var pastDeadline = time.Unix(1, 0)

// FinishWait is Finish that waits for the peer's FIN itself: it returns once
// the FIN arrived, FinTimeout passed, or the stream failed. A peer that ends
// its side only after reading the answer (the controller does) has then
// read it: the agent finishes its invocation streams this way, so that a
// drain closes the connection only after every answer was read (closing a
// QUIC connection drops the stream data not yet delivered).
func FinishWait(s *quic.Stream) {
	s.Close()
	awaitFIN(s)
}

// awaitFIN reads s until the peer's FIN, cancelling the read side if none
// comes within FinTimeout.
func awaitFIN(s *quic.Stream) {
	s.SetReadDeadline(time.Now().Add(FinTimeout))
	var buf [64]byte
	for {
		if _, err := s.Read(buf[:]); err != nil {
			if !errors.Is(err, io.EOF) {
				s.CancelRead(0)
			}
			return
		}
	}
}
