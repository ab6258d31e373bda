package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Activations and sink deliveries in the embedded store (schema version 3;
// the layout is drawn on Embedded). A batch is one bbolt write transaction,
// so one fsync however many activations it holds.

// activationRecord is an activation as stored after its 8-byte started
// prefix; its id is the key.
type activationRecord struct {
	Module   string    `json:"module"`
	Function string    `json:"function"`
	Digest   string    `json:"digest"`
	Agent    string    `json:"agent"`
	Source   string    `json:"source"`
	Code     int       `json:"code"`
	Message  string    `json:"message"`
	Output   []byte    `json:"output"` // no omitempty: nil and empty must stay apart
	Duration int64     `json:"duration_ns"`
	Recorded time.Time `json:"recorded"`
	// Truncated is absent from records written before it existed, which
	// were whole.
	Truncated bool `json:"truncated,omitempty"`
	// Owner is absent from records written before version 5 (the admin's)
	// and from the admin's.
	Owner string `json:"owner,omitempty"`
	// Logs are the log lines (encodeLogs). Absent from records without
	// lines, and from those written before they were kept: no schema
	// version came with them, since every record reads as it did (an older
	// build ignores the field, a newer one reads its absence as no lines).
	Logs []byte `json:"logs,omitempty"`
}

// deliveryRecord is a queued delivery as stored after its 8-byte next
// attempt prefix; the activation's fields are read from activations/.
type deliveryRecord struct {
	Sink      []byte `json:"sink"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
	// Output is the whole output when the activation's record holds only
	// its beginning (ActivationWithSinks.SinkOutput); absent otherwise, and
	// then the activation's output is read.
	Output []byte `json:"output,omitempty"`
}

// errBadValue is returned for a value too short to hold its time prefix.
var errBadValue = errors.New("value shorter than its 8-byte time prefix")

func appendMicros(b []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t.UnixMicro()))
}

// splitMicros splits a value into its leading time and the rest.
func splitMicros(v []byte) (time.Time, []byte, error) {
	if len(v) < 8 {
		return time.Time{}, nil, errBadValue
	}
	return microsTime(int64(binary.BigEndian.Uint64(v))), v[8:], nil
}

// microsTime is the inverse of UnixMicro, keeping the zero time zero.
func microsTime(us int64) time.Time {
	if us == (time.Time{}).UnixMicro() {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// fnKey names the activationsbyfn bucket of a function. The module's length
// leads so that no two (module, function) pairs share a key, and so that the
// keys of one module are contiguous.
func fnKey(module, function string) []byte {
	k := binary.BigEndian.AppendUint16(nil, uint16(len(module)))
	return append(append(k, module...), function...)
}

// parseFnKey is the inverse of fnKey.
func parseFnKey(k []byte) (module, function string, ok bool) {
	if len(k) < 2 {
		return "", "", false
	}
	n := int(binary.BigEndian.Uint16(k))
	if len(k) < 2+n {
		return "", "", false
	}
	return string(k[2 : 2+n]), string(k[2+n:]), true
}

// deliveryKey is the deliveries/ key of (activation id, sink index). Ids
// hold no NUL byte (prepareActivations), so keys sort by id then index.
func deliveryKey(id string, index int) []byte {
	k := append([]byte(id), 0)
	return binary.BigEndian.AppendUint32(k, uint32(index))
}

func parseDeliveryKey(k []byte) (id string, index int, ok bool) {
	if len(k) < 6 || k[len(k)-5] != 0 {
		return "", 0, false
	}
	return string(k[:len(k)-5]), int(binary.BigEndian.Uint32(k[len(k)-4:])), true
}

func putActivation(tx *bolt.Tx, a Activation) error {
	if len(a.Module) > math.MaxUint16 {
		return fmt.Errorf("activation %q: module name of %d bytes: %w", a.ID, len(a.Module), ErrInvalid)
	}
	rec, err := json.Marshal(activationRecord{Module: a.Module, Function: a.Function, Digest: a.Digest,
		Agent: a.Agent, Source: a.Source, Code: a.Code, Message: a.Message, Output: a.Output,
		Duration: int64(a.Duration), Recorded: a.Recorded, Truncated: a.Truncated, Owner: a.Owner,
		Logs: encodeLogs(a.Logs)})
	if err != nil {
		return err
	}
	v := append(appendMicros(make([]byte, 0, 8+len(rec)), a.Started), rec...)
	acts := tx.Bucket(bucketActivations)
	acts.FillPercent = appendFill
	if err := acts.Put([]byte(a.ID), v); err != nil {
		return err
	}
	byFn, err := tx.Bucket(bucketActivationsByFn).CreateBucketIfNotExists(fnKey(a.Module, a.Function))
	if err != nil {
		return err
	}
	byFn.FillPercent = appendFill
	// bbolt keeps values until commit; neither slice is written again.
	if err := byFn.Put([]byte(a.ID), v[:8]); err != nil {
		return err
	}
	byRec := tx.Bucket(bucketActivationsByRecorded)
	byRec.FillPercent = appendFill
	return byRec.Put(recordedKey(a.Recorded, []byte(a.ID)), nil)
}

// appendFill is how full bbolt fills a page it splits in the activation
// buckets. Their keys grow with time (activation ids and recorded times),
// so new records go to the last page: at bbolt's default (0.5) every page
// left behind stays half empty, and a commit writes twice the pages it
// needs. An out-of-order key (an outbox replay) still fits: a full page
// splits.
const appendFill = 0.95

// recordedKey is the activationsbyrecorded/ key of an activation: its
// recorded time then its id, so that the bucket's order is (Recorded, ID).
func recordedKey(recorded time.Time, id []byte) []byte {
	return append(appendMicros(make([]byte, 0, 8+len(id)), recorded), id...)
}

// recordRecorded reads the recorded time of an activation record without
// decoding its output or message (json skips the fields it is not given).
func recordRecorded(rec []byte) (time.Time, error) {
	var r struct {
		Recorded time.Time `json:"recorded"`
	}
	if err := json.Unmarshal(rec, &r); err != nil {
		return time.Time{}, err
	}
	return storeTime(r.Recorded), nil
}

func getActivation(tx *bolt.Tx, id []byte) (Activation, error) {
	v := tx.Bucket(bucketActivations).Get(id)
	if v == nil {
		return Activation{}, ErrNotFound
	}
	started, rec, err := splitMicros(v)
	if err != nil {
		return Activation{}, fmt.Errorf("decode activation %q: %w", id, err)
	}
	var r activationRecord
	if err := json.Unmarshal(rec, &r); err != nil {
		return Activation{}, fmt.Errorf("decode activation %q: %w", id, err)
	}
	logs, err := decodeLogs(r.Logs)
	if err != nil {
		return Activation{}, fmt.Errorf("decode activation %q: %w", id, err)
	}
	return Activation{Logs: logs, ID: string(id), Module: r.Module, Function: r.Function, Digest: r.Digest,
		Agent: r.Agent, Source: r.Source, Code: r.Code, Message: r.Message, Output: r.Output,
		Started: started, Duration: time.Duration(r.Duration), Recorded: r.Recorded.UTC(), Truncated: r.Truncated,
		Owner: r.Owner}, nil
}

// RecordActivation implements Store.
func (e *Embedded) RecordActivation(ctx context.Context, a Activation, sinks [][]byte) (bool, error) {
	n, err := e.recordActivations(ctx, []ActivationWithSinks{{Activation: a, Sinks: sinks}})
	if err != nil {
		return false, boltFail(err, "record activation %q", a.ID)
	}
	return n == 1, nil
}

// RecordActivations implements Store.
func (e *Embedded) RecordActivations(ctx context.Context, as []ActivationWithSinks) (int, error) {
	n, err := e.recordActivations(ctx, as)
	if err != nil {
		return 0, boltFail(err, "record %d activations", len(as))
	}
	return n, nil
}

func (e *Embedded) recordActivations(ctx context.Context, as []ActivationWithSinks) (int, error) {
	recorded := now()
	batch, err := prepareActivations(as, recorded)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	next := appendMicros(nil, recorded)
	var created int
	err = e.update(ctx, func(tx *bolt.Tx) error {
		created = 0
		acts, deliveries := tx.Bucket(bucketActivations), tx.Bucket(bucketDeliveries)
		for _, a := range batch {
			if acts.Get([]byte(a.ID)) != nil {
				continue // a replay
			}
			a.Owner = ""
			if id := tx.Bucket(bucketModules).Get([]byte(a.Module)); id != nil {
				a.Owner = moduleOwner(tx, id)
			}
			if err := putActivation(tx, a.Activation); err != nil {
				return err
			}
			for i, sink := range a.Sinks {
				rec, err := json.Marshal(deliveryRecord{Sink: sink, Output: a.SinkOutput})
				if err != nil {
					return err
				}
				if err := deliveries.Put(deliveryKey(a.ID, i), append(slices.Clip(next), rec...)); err != nil {
					return err
				}
			}
			created++
		}
		return nil
	})
	return created, err
}

// GetActivation implements Store.
func (e *Embedded) GetActivation(ctx context.Context, id string) (Activation, error) {
	return viewOne(ctx, e, id, getActivation, "get activation %q")
}

// idCursor is one walk over activation ids, ascending or descending, in
// activations/ or in one bucket of activationsbyfn/; each value starts
// with the started time.
type idCursor struct {
	c    *bolt.Cursor
	k, v []byte
}

// ListActivations implements Store. In id order, without a module or
// function it walks activations/; otherwise it merges, by id, the walks of
// every activationsbyfn/ bucket that matches (one for module and function,
// the module's functions for a module alone, every module's function of
// that name for a function alone). OrderRecorded walks
// activationsbyrecorded/. The started time is read from each value's
// 8-byte prefix; the other conditions (owner, agents, source, status) need
// the record, so a selective filter on them walks until it has Limit
// matches or reaches the end.
func (e *Embedded) ListActivations(ctx context.Context, f ActivationFilter) ([]Activation, error) {
	limit := listLimit(f.Limit)
	as := []Activation{}
	if f.Agents != nil && len(f.Agents) == 0 {
		return as, nil
	}
	match := activationMatcher(f)
	err := e.view(ctx, func(tx *bolt.Tx) error {
		if f.Order == OrderRecorded {
			return listRecorded(tx, f, limit, match, &as)
		}
		desc := f.Order == NewestFirst
		var cursors []*idCursor
		switch byFn := tx.Bucket(bucketActivationsByFn); {
		case f.Module == "" && f.Function == "":
			cursors = append(cursors, &idCursor{c: tx.Bucket(bucketActivations).Cursor()})
		case f.Module != "" && f.Function != "":
			if b := byFn.Bucket(fnKey(f.Module, f.Function)); b != nil {
				cursors = append(cursors, &idCursor{c: b.Cursor()})
			}
		default:
			c := byFn.Cursor()
			k, _ := c.First()
			if f.Module != "" {
				k, _ = c.Seek(fnKey(f.Module, "")) // the module's keys are contiguous
			}
			for ; k != nil; k, _ = c.Next() {
				module, function, ok := parseFnKey(k)
				if !ok {
					return fmt.Errorf("malformed activationsbyfn key %x", k)
				}
				if f.Module != "" && module != f.Module {
					break // past the module's keys
				}
				if f.Function == "" || function == f.Function {
					cursors = append(cursors, &idCursor{c: byFn.Bucket(k).Cursor()})
				}
			}
		}
		for _, ic := range cursors {
			ic.start(f.After, f.Before, desc)
		}
		for len(as) < limit {
			var next *idCursor
			for _, ic := range cursors {
				if ic.k == nil {
					continue
				}
				if next == nil || (bytes.Compare(ic.k, next.k) < 0) != desc {
					next = ic
				}
			}
			if next == nil {
				return nil
			}
			if (desc && f.After != "" && string(next.k) <= f.After) || (!desc && f.Before != "" && string(next.k) >= f.Before) {
				return nil // past the other bound
			}
			started, _, err := splitMicros(next.v)
			if err != nil {
				return fmt.Errorf("activation %q: %w", next.k, err)
			}
			if inStarted(f, started) {
				a, err := getActivation(tx, next.k)
				if err != nil {
					return err
				}
				if match(a) {
					as = append(as, a)
				}
			}
			if desc {
				next.k, next.v = next.c.Prev()
			} else {
				next.k, next.v = next.c.Next()
			}
		}
		return nil
	})
	if err != nil {
		return nil, boltFail(err, "list activations")
	}
	return as, nil
}

// start places ic on the first id of its walk: ascending, the first one
// after after; descending, the last one before before.
func (ic *idCursor) start(after, before string, desc bool) {
	if !desc {
		ic.k, ic.v = ic.c.Seek([]byte(after))
		if after != "" && ic.k != nil && string(ic.k) == after {
			ic.k, ic.v = ic.c.Next()
		}
		return
	}
	if before == "" {
		ic.k, ic.v = ic.c.Last()
		return
	}
	ic.k, ic.v = ic.c.Seek([]byte(before))
	if ic.k == nil {
		ic.k, ic.v = ic.c.Last() // every id is before it
	} else {
		ic.k, ic.v = ic.c.Prev() // the first id >= before: step back
	}
}

// listRecorded appends to as the activations of activationsbyrecorded/
// after (f.RecordedAfter, f.RecordedAfterID) that f selects, at most limit.
func listRecorded(tx *bolt.Tx, f ActivationFilter, limit int, match func(Activation) bool, as *[]Activation) error {
	c := tx.Bucket(bucketActivationsByRecorded).Cursor()
	var k []byte
	if f.RecordedAfter.IsZero() && f.RecordedAfterID == "" {
		k, _ = c.First()
	} else {
		from := recordedKey(storeTime(f.RecordedAfter), []byte(f.RecordedAfterID))
		k, _ = c.Seek(from)
		if k != nil && bytes.Equal(k, from) {
			k, _ = c.Next()
		}
	}
	for ; k != nil && len(*as) < limit; k, _ = c.Next() {
		if len(k) < 8 {
			return fmt.Errorf("malformed activationsbyrecorded key %x", k)
		}
		id := k[8:]
		if (f.After != "" && string(id) <= f.After) || (f.Before != "" && string(id) >= f.Before) {
			continue
		}
		a, err := getActivation(tx, id)
		if err != nil {
			return fmt.Errorf("activationsbyrecorded %x: %w", k, err)
		}
		if inStarted(f, a.Started) && match(a) {
			*as = append(*as, a)
		}
	}
	return nil
}

// inStarted reports whether started is within f's Since and Until.
func inStarted(f ActivationFilter, started time.Time) bool {
	since, until := storeTime(f.Since), storeTime(f.Until)
	return (since.IsZero() || !started.Before(since)) && (until.IsZero() || started.Before(until))
}

// activationMatcher tests the conditions of f that only the record holds.
func activationMatcher(f ActivationFilter) func(Activation) bool {
	return func(a Activation) bool {
		switch {
		case f.Module != "" && a.Module != f.Module,
			f.Function != "" && a.Function != f.Function,
			f.Owner != "" && a.Owner != f.Owner,
			f.Source != "" && a.Source != f.Source,
			f.Status == StatusSuccess && a.Code != 0,
			f.Status == StatusError && a.Code == 0,
			f.Agents != nil && !slices.Contains(f.Agents, a.Agent):
			return false
		}
		return true
	}
}

// disownActivations gives the activations of subject to the admin.
func disownActivations(tx *bolt.Tx, subject string) error {
	acts := tx.Bucket(bucketActivations)
	var mine []Activation
	if err := acts.ForEach(func(k, _ []byte) error {
		a, err := getActivation(tx, k)
		if err == nil && a.Owner == subject {
			mine = append(mine, a)
		}
		return err
	}); err != nil {
		return err
	}
	for _, a := range mine { // not while walking: bbolt forbids writes under ForEach
		a.Owner = ""
		if err := putActivation(tx, a); err != nil {
			return err
		}
	}
	return nil
}

// getDelivery decodes the delivery at key k with value v and joins it with
// its activation.
func getDelivery(tx *bolt.Tx, k, v []byte) (SinkDelivery, error) {
	id, index, ok := parseDeliveryKey(k)
	if !ok {
		return SinkDelivery{}, fmt.Errorf("malformed delivery key %x", k)
	}
	next, rec, err := splitMicros(v)
	if err != nil {
		return SinkDelivery{}, fmt.Errorf("decode delivery %q/%d: %w", id, index, err)
	}
	var r deliveryRecord
	if err := json.Unmarshal(rec, &r); err != nil {
		return SinkDelivery{}, fmt.Errorf("decode delivery %q/%d: %w", id, index, err)
	}
	a, err := getActivation(tx, []byte(id))
	if err != nil {
		return SinkDelivery{}, fmt.Errorf("activation of delivery %q/%d: %w", id, index, err)
	}
	output := a.Output
	if r.Output != nil {
		output = r.Output
	}
	return SinkDelivery{ActivationID: id, SinkIndex: index, Sink: r.Sink,
		Module: a.Module, Function: a.Function, Output: output, Started: a.Started,
		Attempts: r.Attempts, LastError: r.LastError, NextAttempt: next}, nil
}

// PendingDeliveries implements Store.
func (e *Embedded) PendingDeliveries(ctx context.Context, now time.Time, limit int) ([]SinkDelivery, error) {
	limit = listLimit(limit)
	due := storeTime(now)
	ds := []SinkDelivery{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDeliveries).Cursor()
		for k, v := c.First(); k != nil && len(ds) < limit; k, v = c.Next() {
			next, _, err := splitMicros(v)
			if err != nil {
				return fmt.Errorf("delivery %x: %w", k, err)
			}
			if next.After(due) {
				continue
			}
			d, err := getDelivery(tx, k, v)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		return nil
	})
	if err != nil {
		return nil, boltFail(err, "pending deliveries")
	}
	return ds, nil
}

// SinkFailures implements Store.
func (e *Embedded) SinkFailures(ctx context.Context, module, function string) ([]SinkDelivery, error) {
	ds := []SinkDelivery{}
	err := e.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeliveries).ForEach(func(k, v []byte) error {
			d, err := getDelivery(tx, k, v)
			if err != nil {
				return err
			}
			if d.Attempts > 0 && d.Module == module && d.Function == function {
				ds = append(ds, d)
			}
			return nil
		})
	})
	if err != nil {
		return nil, boltFail(err, "sink failures of %s/%s", module, function)
	}
	return ds, nil
}

// DeliveryDone implements Store.
func (e *Embedded) DeliveryDone(ctx context.Context, activationID string, sinkIndex int) error {
	err := e.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		k := deliveryKey(activationID, sinkIndex)
		if !sinkIndexOK(sinkIndex) || b.Get(k) == nil {
			return ErrNotFound
		}
		return b.Delete(k)
	})
	return boltFail(err, "delivery of activation %q to sink %d done", activationID, sinkIndex)
}

// DeliveryFailed implements Store.
func (e *Embedded) DeliveryFailed(ctx context.Context, activationID string, sinkIndex int, errMsg string, next time.Time) error {
	err := e.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeliveries)
		k := deliveryKey(activationID, sinkIndex)
		v := b.Get(k)
		if !sinkIndexOK(sinkIndex) || v == nil {
			return ErrNotFound
		}
		_, rec, err := splitMicros(v)
		if err != nil {
			return err
		}
		var r deliveryRecord
		if err := json.Unmarshal(rec, &r); err != nil {
			return fmt.Errorf("decode delivery: %w", err)
		}
		r.Attempts++
		r.LastError = errMsg
		if rec, err = json.Marshal(r); err != nil {
			return err
		}
		return b.Put(k, append(appendMicros(nil, storeTime(next)), rec...))
	})
	return boltFail(err, "delivery of activation %q to sink %d failed", activationID, sinkIndex)
}

// held reports whether a queued delivery still reads activation id.
func held(tx *bolt.Tx, id []byte) bool {
	prefix := append(slices.Clip(id), 0)
	k, _ := tx.Bucket(bucketDeliveries).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// recordFunction reads the module and function of an activation record
// without decoding the rest: json.Marshal writes the fields in struct order,
// module and function first, so a large output is never scanned.
func recordFunction(rec []byte) (module, function string, err error) {
	dec := json.NewDecoder(bytes.NewReader(rec))
	if _, err := dec.Token(); err != nil { // {
		return "", "", err
	}
	var found int
	for found < 2 && dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", "", err
		}
		switch key {
		case "module":
			err = dec.Decode(&module)
			found++
		case "function":
			err = dec.Decode(&function)
			found++
		default:
			err = dec.Decode(&json.RawMessage{})
		}
		if err != nil {
			return "", "", err
		}
	}
	if found < 2 {
		return "", "", errors.New("no module or function")
	}
	return module, function, nil
}

// deleteActivations removes activations of known functions: each element
// of ids is an id, and fns[i] its fn key. A function's activationsbyfn
// bucket goes with its last activation.
func deleteActivations(tx *bolt.Tx, ids, fns [][]byte) error {
	acts, byFn := tx.Bucket(bucketActivations), tx.Bucket(bucketActivationsByFn)
	byRec := tx.Bucket(bucketActivationsByRecorded)
	emptied := map[string]bool{}
	for i, id := range ids {
		if v := acts.Get(id); v != nil {
			_, rec, err := splitMicros(v)
			if err != nil {
				return fmt.Errorf("activation %q: %w", id, err)
			}
			recorded, err := recordRecorded(rec)
			if err != nil {
				return fmt.Errorf("decode activation %q: %w", id, err)
			}
			if err := byRec.Delete(recordedKey(recorded, id)); err != nil {
				return err
			}
		}
		if err := acts.Delete(id); err != nil {
			return err
		}
		b := byFn.Bucket(fns[i])
		if b == nil {
			return fmt.Errorf("activation %q: no activationsbyfn bucket %x", id, fns[i])
		}
		if err := b.Delete(id); err != nil {
			return err
		}
		emptied[string(fns[i])] = true
	}
	for k := range emptied {
		if k, _ := byFn.Bucket([]byte(k)).Cursor().First(); k != nil {
			continue
		}
		if err := byFn.DeleteBucket([]byte(k)); err != nil {
			return err
		}
	}
	return nil
}

// pruneWalk removes, in one write transaction, at most limit of the first
// n activations of activations/ (n < 0: all), stopping at the first id
// that stop rejects. Held ones are skipped (and counted in n).
func (e *Embedded) pruneWalk(ctx context.Context, what string, n func(tx *bolt.Tx) int, stop func(id []byte) bool, limit int) (int, error) {
	limit = listLimit(limit)
	var removed int
	err := e.update(ctx, func(tx *bolt.Tx) error {
		removed = 0
		var ids, fns [][]byte
		c := tx.Bucket(bucketActivations).Cursor()
		walk := n(tx)
		for k, v := c.First(); k != nil && walk != 0 && len(ids) < limit && !stop(k); k, v = c.Next() {
			walk--
			if held(tx, k) {
				continue
			}
			_, rec, err := splitMicros(v)
			if err != nil {
				return fmt.Errorf("activation %q: %w", k, err)
			}
			module, function, err := recordFunction(rec)
			if err != nil {
				return fmt.Errorf("decode activation %q: %w", k, err)
			}
			ids, fns = append(ids, slices.Clone(k)), append(fns, fnKey(module, function))
		}
		removed = len(ids)
		return deleteActivations(tx, ids, fns)
	})
	if err != nil {
		return 0, boltFail(err, "%s", what)
	}
	return removed, nil
}

// PruneActivationsBefore implements Store.
func (e *Embedded) PruneActivationsBefore(ctx context.Context, id string, limit int) (int, error) {
	return e.pruneWalk(ctx, fmt.Sprintf("prune activations before %q", id),
		func(*bolt.Tx) int { return -1 },
		func(k []byte) bool { return string(k) >= id }, limit)
}

// PruneActivationsBeyond implements Store. It counts the activations from
// the bucket's pages (bolt.Bucket.Stats), without reading the records.
func (e *Embedded) PruneActivationsBeyond(ctx context.Context, keep, limit int) (int, error) {
	return e.pruneWalk(ctx, fmt.Sprintf("prune activations beyond the newest %d", keep),
		func(tx *bolt.Tx) int { return max(tx.Bucket(bucketActivations).Stats().KeyN-max(keep, 0), 0) },
		func([]byte) bool { return false }, limit)
}

// PruneActivationsBeyondPerFunction implements Store: it counts each
// function's activationsbyfn bucket and walks the first ones of those over
// keep.
func (e *Embedded) PruneActivationsBeyondPerFunction(ctx context.Context, keep, limit int) (int, error) {
	limit, keep = listLimit(limit), max(keep, 0)
	var removed int
	err := e.update(ctx, func(tx *bolt.Tx) error {
		removed = 0
		var ids, fns [][]byte
		byFn := tx.Bucket(bucketActivationsByFn)
		err := byFn.ForEachBucket(func(fn []byte) error {
			b := byFn.Bucket(fn)
			walk := b.Stats().KeyN - keep
			c := b.Cursor()
			for k, _ := c.First(); k != nil && walk > 0 && len(ids) < limit; k, _ = c.Next() {
				walk--
				if !held(tx, k) {
					ids, fns = append(ids, slices.Clone(k)), append(fns, slices.Clone(fn))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		removed = len(ids)
		return deleteActivations(tx, ids, fns)
	})
	if err != nil {
		return 0, boltFail(err, "prune activations beyond the newest %d of each function", keep)
	}
	return removed, nil
}

// ActivationVolume implements Store. bolt.Bucket.Stats walks the buckets'
// pages (their headers, not the records).
func (e *Embedded) ActivationVolume(ctx context.Context) (ActivationVolume, error) {
	var v ActivationVolume
	err := e.view(ctx, func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketActivations, bucketActivationsByFn, bucketDeliveries} {
			st := tx.Bucket(name).Stats()
			if bytes.Equal(name, bucketActivations) {
				v.Count = int64(st.KeyN)
			}
			v.Bytes += int64(st.BranchAlloc + st.LeafAlloc)
		}
		return nil
	})
	if err != nil {
		return ActivationVolume{}, boltFail(err, "activation volume")
	}
	return v, nil
}
