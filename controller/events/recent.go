package events

import "crypto/sha256"

// recentCap is how many handed messages a broker's recentSet remembers:
// more than a broker keeps in flight to one client (Mosquitto's
// max_inflight_messages defaults to 20), as only messages in flight can
// come back.
const recentCap = 1024

// digest names a message by its topic and payload.
type digest [16]byte

func digestOf(topic string, payload []byte) digest {
	h := sha256.New()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write(payload)
	var d digest
	copy(d[:], h.Sum(nil))
	return d
}

// recentSet remembers the last recentCap messages of one broker session
// that were handed to invocations, by packet id, so that one the broker
// sends again (DUP set: its PUBACK was lost with a connection) is
// acknowledged without being invoked twice. A packet id is reused by the
// broker once acknowledged, so the digest must match too.
type recentSet struct {
	byID map[uint16]recentEntry
	ring [recentCap]struct {
		id  uint16
		seq uint64
	}
	seq uint64
}

type recentEntry struct {
	d   digest
	seq uint64
}

func newRecentSet() *recentSet { return &recentSet{byID: map[uint16]recentEntry{}} }

// add remembers message id with digest d, forgetting the oldest beyond
// recentCap.
func (r *recentSet) add(id uint16, d digest) {
	r.seq++
	slot := &r.ring[r.seq%recentCap]
	if old, ok := r.byID[slot.id]; ok && slot.seq != 0 && old.seq == slot.seq {
		delete(r.byID, slot.id)
	}
	slot.id, slot.seq = id, r.seq
	r.byID[id] = recentEntry{d: d, seq: r.seq}
}

// has says whether message id with digest d was handed recently.
func (r *recentSet) has(id uint16, d digest) bool {
	e, ok := r.byID[id]
	return ok && e.d == d
}
