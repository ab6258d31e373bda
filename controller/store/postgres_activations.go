package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Activations and sink deliveries in Postgres (migrations 0003, 0004 and
// 0009, the log lines: logs.go).
//
// A batch is written with two statements whatever its size: the activations
// as arrays unnested into one INSERT ... ON CONFLICT (id) DO NOTHING
// RETURNING id, then the deliveries of the ids it returned (those the batch
// really added) as a second unnest. The rows are inserted in id order, so
// concurrent overlapping batches wait on each other's rows in one order and
// cannot deadlock.
//
// unnest was measured against pgx CopyFrom into a temporary table followed by
// INSERT ... SELECT ON CONFLICT: both record 15,000-22,000 activations/s in
// batches of 500 (local PostgreSQL 15, 2 vCPUs, BenchmarkPostgresRecordActivations),
// so the simpler one, which creates no temporary table per batch, was kept.

// RecordActivation implements Store.
func (p *Postgres) RecordActivation(ctx context.Context, a Activation, sinks [][]byte) (bool, error) {
	n, err := p.recordActivations(ctx, []ActivationWithSinks{{Activation: a, Sinks: sinks}})
	if err != nil {
		return false, pgFail(err, "record activation %q", a.ID)
	}
	return n == 1, nil
}

// RecordActivations implements Store.
func (p *Postgres) RecordActivations(ctx context.Context, as []ActivationWithSinks) (int, error) {
	n, err := p.recordActivations(ctx, as)
	if err != nil {
		return 0, pgFail(err, "record %d activations", len(as))
	}
	return n, nil
}

func (p *Postgres) recordActivations(ctx context.Context, as []ActivationWithSinks) (int, error) {
	recorded := now()
	batch, err := prepareActivations(as, recorded)
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	n := len(batch)
	var (
		ids, modules, functions, digests = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		agents, sources, messages        = make([]string, n), make([]string, n), make([]string, n)
		codes                            = make([]int32, n)
		truncated                        = make([]bool, n)
		outputs, logs                    = make([][]byte, n), make([][]byte, n)
		started                          = make([]time.Time, n)
		durations                        = make([]int64, n)
		byID                             = make(map[string]int, n)
	)
	for i, a := range batch {
		ids[i], modules[i], functions[i], digests[i] = a.ID, a.Module, a.Function, a.Digest
		agents[i], sources[i], messages[i] = a.Agent, a.Source, a.Message
		codes[i], outputs[i], started[i], durations[i] = int32(a.Code), a.Output, a.Started, int64(a.Duration)
		truncated[i], logs[i] = a.Truncated, encodeLogs(a.Logs)
		byID[a.ID] = i
	}
	var created int
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
			INSERT INTO activations (id, module, function, digest, agent, source, code, message, output, started, duration_ns, truncated, logs, recorded, owner)
			SELECT u.*, $13::timestamptz, coalesce(m.owner, '') FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
				$7::integer[], $8::text[], $9::bytea[], $10::timestamptz[], $11::bigint[], $12::boolean[], $14::bytea[])
				AS u (id, module, function, digest, agent, source, code, message, output, started, duration_ns, truncated, logs)
				LEFT JOIN modules m ON m.name = u.module
			ORDER BY u.id
			ON CONFLICT (id) DO NOTHING
			RETURNING id`,
			ids, modules, functions, digests, agents, sources, codes, messages, outputs, started, durations, truncated, recorded, logs)
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		created = len(inserted)
		var (
			dIDs     []string
			dIndexes []int32
			dSinks   [][]byte
			dOutputs [][]byte // nil: read the activation's
			whole    bool     // some delivery keeps its own output
		)
		for _, id := range inserted {
			a := batch[byID[id]]
			for i, sink := range a.Sinks {
				dIDs, dIndexes, dSinks = append(dIDs, id), append(dIndexes, int32(i)), append(dSinks, sink)
				dOutputs = append(dOutputs, a.SinkOutput)
				whole = whole || a.SinkOutput != nil
			}
		}
		if len(dIDs) == 0 {
			return nil
		}
		if !whole { // the usual batch: no array of NULL outputs to send
			_, err = tx.Exec(ctx, `
				INSERT INTO sink_deliveries (activation_id, sink_index, sink, next_attempt)
				SELECT u.*, $4::timestamptz FROM unnest($1::text[], $2::integer[], $3::bytea[]) AS u (activation_id, sink_index, sink)`,
				dIDs, dIndexes, dSinks, recorded)
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO sink_deliveries (activation_id, sink_index, sink, output, next_attempt)
			SELECT u.*, $5::timestamptz FROM unnest($1::text[], $2::integer[], $3::bytea[], $4::bytea[]) AS u (activation_id, sink_index, sink, output)`,
			dIDs, dIndexes, dSinks, dOutputs, recorded)
		return err
	})
	return created, err
}

const activationColumns = `id, module, function, digest, agent, source, code, message, output, started, duration_ns, recorded, truncated, owner, logs`

func scanActivation(row pgx.Row) (Activation, error) {
	var (
		a        Activation
		code     int32
		duration int64
		logs     []byte
	)
	err := row.Scan(&a.ID, &a.Module, &a.Function, &a.Digest, &a.Agent, &a.Source, &code, &a.Message,
		&a.Output, &a.Started, &duration, &a.Recorded, &a.Truncated, &a.Owner, &logs)
	if err == nil {
		if a.Logs, err = decodeLogs(logs); err != nil {
			err = fmt.Errorf("activation %q: %w", a.ID, err)
		}
	}
	a.Code, a.Duration = int(code), time.Duration(duration)
	a.Started, a.Recorded = a.Started.UTC(), a.Recorded.UTC()
	return a, err
}

// GetActivation implements Store.
func (p *Postgres) GetActivation(ctx context.Context, id string) (Activation, error) {
	a, err := scanActivation(p.pool.QueryRow(ctx, `SELECT `+activationColumns+` FROM activations WHERE id = $1`, id))
	if err != nil {
		return Activation{}, pgFail(err, "get activation %q", id)
	}
	return a, nil
}

// ListActivations implements Store. The query names only the conditions f
// sets, so that the planner (and pgx's statement cache) sees each shape on
// its own rather than one generic plan with "$1 = ” OR ..." terms. The
// indexes it can walk in order are the primary key (either way),
// (module, function, id), (owner, id), (agent, id), the failed ones' id
// and (recorded, id) (migrations 0003, 0007 and 0010).
func (p *Postgres) ListActivations(ctx context.Context, f ActivationFilter) ([]Activation, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Module != "" {
		add("module = $%d", f.Module)
	}
	if f.Function != "" {
		add("function = $%d", f.Function)
	}
	if f.Owner != "" {
		// owner <> '' lets a generic plan use the partial index
		// activations_owner_id too.
		add("owner = $%d AND owner <> ''", f.Owner)
	}
	if f.Agents != nil {
		add("agent = ANY($%d::text[])", f.Agents)
	}
	if f.Source != "" {
		add("source = $%d", f.Source)
	}
	switch f.Status {
	case StatusSuccess:
		where = append(where, "code = 0")
	case StatusError:
		where = append(where, "code <> 0")
	}
	if !f.Since.IsZero() {
		add("started >= $%d", storeTime(f.Since))
	}
	if !f.Until.IsZero() {
		add("started < $%d", storeTime(f.Until))
	}
	if f.After != "" {
		add("id > $%d", f.After)
	}
	if f.Before != "" {
		add("id < $%d", f.Before)
	}
	order := "id"
	switch f.Order {
	case NewestFirst:
		order = "id DESC"
	case OrderRecorded:
		order = "recorded, id"
		if !f.RecordedAfter.IsZero() || f.RecordedAfterID != "" {
			args = append(args, storeTime(f.RecordedAfter), f.RecordedAfterID)
			where = append(where, fmt.Sprintf("(recorded, id) > ($%d, $%d)", len(args)-1, len(args)))
		}
	}
	q := `SELECT ` + activationColumns + ` FROM activations`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, listLimit(f.Limit))
	q += fmt.Sprintf(` ORDER BY %s LIMIT $%d`, order, len(args))
	rows, _ := p.pool.Query(ctx, q, args...)
	as, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Activation, error) { return scanActivation(r) })
	if err != nil {
		return nil, pgFail(err, "list activations")
	}
	if as == nil {
		as = []Activation{}
	}
	return as, nil
}

const deliveryColumns = `d.activation_id, d.sink_index, d.sink, a.module, a.function, coalesce(d.output, a.output), a.started,
	d.attempts, d.last_error, d.next_attempt`

func scanDelivery(row pgx.Row) (SinkDelivery, error) {
	var (
		d            SinkDelivery
		index, tries int32
	)
	err := row.Scan(&d.ActivationID, &index, &d.Sink, &d.Module, &d.Function, &d.Output, &d.Started,
		&tries, &d.LastError, &d.NextAttempt)
	d.SinkIndex, d.Attempts = int(index), int(tries)
	d.Started, d.NextAttempt = d.Started.UTC(), d.NextAttempt.UTC()
	return d, err
}

func (p *Postgres) listDeliveries(ctx context.Context, what, where string, args ...any) ([]SinkDelivery, error) {
	rows, _ := p.pool.Query(ctx, `
		SELECT `+deliveryColumns+` FROM sink_deliveries d JOIN activations a ON a.id = d.activation_id
		WHERE `+where, args...)
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SinkDelivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, pgFail(err, "%s", what)
	}
	if ds == nil {
		ds = []SinkDelivery{}
	}
	return ds, nil
}

// PendingDeliveries implements Store.
func (p *Postgres) PendingDeliveries(ctx context.Context, now time.Time, limit int) ([]SinkDelivery, error) {
	return p.listDeliveries(ctx, "pending deliveries",
		`d.next_attempt <= $1 ORDER BY d.activation_id, d.sink_index LIMIT $2`, storeTime(now), listLimit(limit))
}

// SinkFailures implements Store.
func (p *Postgres) SinkFailures(ctx context.Context, module, function string) ([]SinkDelivery, error) {
	return p.listDeliveries(ctx, fmt.Sprintf("sink failures of %s/%s", module, function),
		`d.attempts > 0 AND a.module = $1 AND a.function = $2 ORDER BY d.activation_id, d.sink_index`, module, function)
}

// DeliveryDone implements Store.
func (p *Postgres) DeliveryDone(ctx context.Context, activationID string, sinkIndex int) error {
	if !sinkIndexOK(sinkIndex) {
		return fmt.Errorf("store: delivery of activation %q to sink %d done: %w", activationID, sinkIndex, ErrNotFound)
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM sink_deliveries WHERE activation_id = $1 AND sink_index = $2`,
		activationID, sinkIndex)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "delivery of activation %q to sink %d done", activationID, sinkIndex)
}

// DeliveryFailed implements Store.
func (p *Postgres) DeliveryFailed(ctx context.Context, activationID string, sinkIndex int, errMsg string, next time.Time) error {
	if !sinkIndexOK(sinkIndex) {
		return fmt.Errorf("store: delivery of activation %q to sink %d failed: %w", activationID, sinkIndex, ErrNotFound)
	}
	tag, err := p.pool.Exec(ctx, `
		UPDATE sink_deliveries SET attempts = attempts + 1, last_error = $3, next_attempt = $4
		WHERE activation_id = $1 AND sink_index = $2`,
		activationID, sinkIndex, errMsg, storeTime(next))
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return pgFail(err, "delivery of activation %q to sink %d failed", activationID, sinkIndex)
}

// notHeld is the condition, on an activation a, that no queued delivery
// still reads it.
const notHeld = `NOT EXISTS (SELECT 1 FROM sink_deliveries d WHERE d.activation_id = a.id)`

// prune deletes the activations the query selects (it takes the limit as
// its last parameter). The SELECT ... FOR UPDATE SKIP LOCKED lets several
// controllers prune one database at once without waiting on, or
// deadlocking with, each other: each takes the rows the others have not.
func (p *Postgres) prune(ctx context.Context, what, selectIDs string, args ...any) (int, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM activations WHERE id IN (`+selectIDs+`)`, args...)
	if err != nil {
		return 0, pgFail(err, "%s", what)
	}
	return int(tag.RowsAffected()), nil
}

// PruneActivationsBefore implements Store. It walks the primary key from
// its start.
func (p *Postgres) PruneActivationsBefore(ctx context.Context, id string, limit int) (int, error) {
	return p.prune(ctx, fmt.Sprintf("prune activations before %q", id), `
		SELECT a.id FROM activations a WHERE a.id < $1 AND `+notHeld+`
		ORDER BY a.id LIMIT $2 FOR UPDATE OF a SKIP LOCKED`, id, listLimit(limit))
}

// PruneActivationsBeyond implements Store. It counts the activations (a
// pass over the primary key), and only when there are more than keep walks
// the primary key from its start to the newest one not kept, so a call with
// nothing to remove costs the count alone.
func (p *Postgres) PruneActivationsBeyond(ctx context.Context, keep, limit int) (int, error) {
	return p.prune(ctx, fmt.Sprintf("prune activations beyond the newest %d", keep), `
		WITH total AS (SELECT count(*) AS n FROM activations)
		SELECT a.id FROM activations a
		WHERE a.id <= (SELECT id FROM activations WHERE (SELECT n FROM total) > $1
				ORDER BY id OFFSET greatest((SELECT n FROM total) - $1 - 1, 0) LIMIT 1)
			AND `+notHeld+`
		ORDER BY a.id LIMIT $2 FOR UPDATE OF a SKIP LOCKED`, max(keep, 0), listLimit(limit))
}

// PruneActivationsBeyondPerFunction implements Store. It counts each
// function's activations (one pass over the (module, function, id) index),
// then, for those over keep, finds the newest one not kept by walking keep
// entries of that index backwards.
func (p *Postgres) PruneActivationsBeyondPerFunction(ctx context.Context, keep, limit int) (int, error) {
	return p.prune(ctx, fmt.Sprintf("prune activations beyond the newest %d of each function", keep), `
		WITH over AS (
			SELECT module, function FROM activations GROUP BY module, function HAVING count(*) > $1
		), bound AS (
			SELECT o.module, o.function, (SELECT x.id FROM activations x WHERE x.module = o.module AND x.function = o.function
				ORDER BY x.id DESC OFFSET $1 LIMIT 1) AS newest_out
			FROM over o
		)
		SELECT a.id FROM bound b JOIN activations a ON a.module = b.module AND a.function = b.function AND a.id <= b.newest_out
		WHERE `+notHeld+`
		ORDER BY a.id LIMIT $2 FOR UPDATE OF a SKIP LOCKED`, max(keep, 0), listLimit(limit))
}

// ActivationVolume implements Store. count(*) reads the whole primary key
// (about 10 ms per 100,000 activations here); the relation sizes are read
// from the catalog.
func (p *Postgres) ActivationVolume(ctx context.Context) (ActivationVolume, error) {
	var v ActivationVolume
	err := p.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM activations),
			pg_total_relation_size('activations') + pg_total_relation_size('sink_deliveries')`).Scan(&v.Count, &v.Bytes)
	if err != nil {
		return ActivationVolume{}, pgFail(err, "activation volume")
	}
	return v, nil
}
