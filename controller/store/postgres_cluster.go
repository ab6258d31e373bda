package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Membership in Postgres (migration 0014): the controllers table and the
// agent_links table. Times of liveness are the database's clock (now()),
// so controllers whose clocks differ agree on who is dead.

// HeartbeatController implements Membership. xmax = 0 on the returned
// row means the INSERT made it (an ON CONFLICT update sets xmax).
func (p *Postgres) HeartbeatController(ctx context.Context, c Controller) (bool, error) {
	var created bool
	err := p.pool.QueryRow(ctx, `
		INSERT INTO controllers (id, rest_addr, quic_addr, started, last_seen) VALUES ($1, $2, $3, now(), now())
		ON CONFLICT (id) DO UPDATE SET rest_addr = EXCLUDED.rest_addr, quic_addr = EXCLUDED.quic_addr, last_seen = now()
		RETURNING xmax = 0`, c.ID, c.RESTAddr, c.QUICAddr).Scan(&created)
	if err != nil {
		return false, pgFail(err, "heartbeat of controller %q", c.ID)
	}
	return created, nil
}

// ListControllers implements Membership.
func (p *Postgres) ListControllers(ctx context.Context) ([]Controller, error) {
	rows, _ := p.pool.Query(ctx, `SELECT id, rest_addr, quic_addr, started, last_seen FROM controllers ORDER BY id`)
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Controller, error) {
		var c Controller
		err := r.Scan(&c.ID, &c.RESTAddr, &c.QUICAddr, &c.Started, &c.LastSeen)
		c.Started, c.LastSeen = c.Started.UTC(), c.LastSeen.UTC()
		return c, err
	})
	if err != nil {
		return nil, pgFail(err, "list controllers")
	}
	if cs == nil {
		cs = []Controller{}
	}
	return cs, nil
}

// micros is d in whole microseconds, for SQL's "* interval '1 microsecond'".
func micros(d time.Duration) int64 { return d.Microseconds() }

// RemoveDeadControllers implements Membership; their links go by the
// foreign key's cascade.
func (p *Postgres) RemoveDeadControllers(ctx context.Context, deadAfter time.Duration) ([]string, error) {
	rows, _ := p.pool.Query(ctx, `
		DELETE FROM controllers WHERE last_seen < now() - $1 * interval '1 microsecond'
		RETURNING id`, micros(deadAfter))
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pgFail(err, "remove dead controllers")
	}
	if ids == nil {
		ids = []string{}
	}
	slices.Sort(ids)
	return ids, nil
}

// RemoveController implements Membership.
func (p *Postgres) RemoveController(ctx context.Context, id string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM controllers WHERE id = $1`, id)
	return pgFail(err, "remove controller %q", id)
}

// linkColumns are the columns of a link's arrays, in agentLinkArrays' order.
type linkArrays struct {
	agents, controllers, os, arch, engine, version []string
	since                                          []time.Time
	cpus, mem                                      []int64
}

func agentLinkArrays(links []AgentLink) linkArrays {
	var a linkArrays
	for _, l := range links {
		l = prepareLink(l)
		a.agents, a.controllers, a.since = append(a.agents, l.Agent), append(a.controllers, l.Controller), append(a.since, l.Since)
		a.os, a.arch, a.engine, a.version = append(a.os, l.OS), append(a.arch, l.Arch), append(a.engine, l.Engine), append(a.version, l.Version)
		a.cpus, a.mem = append(a.cpus, int64(l.CPUs)), append(a.mem, int64(l.MemTotalBytes))
	}
	return a
}

// PutAgentLinks implements Membership: one statement for the batch. The
// joins skip links of agents or controllers without a row; DISTINCT ON
// keeps the last of a pair given twice.
func (p *Postgres) PutAgentLinks(ctx context.Context, links []AgentLink) error {
	if len(links) == 0 {
		return nil
	}
	a := agentLinkArrays(links)
	_, err := p.pool.Exec(ctx, `
		INSERT INTO agent_links (agent_id, controller_id, since, os, arch, engine, version, cpus, mem_total_bytes)
		SELECT DISTINCT ON (l.a, l.c) l.a, l.c, l.s, l.os, l.arch, l.engine, l.version, l.cpus, l.mem
		FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[])
			WITH ORDINALITY AS l(a, c, s, os, arch, engine, version, cpus, mem, n)
		JOIN agents ag ON ag.id = l.a
		JOIN controllers co ON co.id = l.c
		ORDER BY l.a, l.c, l.n DESC
		ON CONFLICT (agent_id, controller_id) DO UPDATE SET since = EXCLUDED.since, os = EXCLUDED.os, arch = EXCLUDED.arch,
			engine = EXCLUDED.engine, version = EXCLUDED.version, cpus = EXCLUDED.cpus, mem_total_bytes = EXCLUDED.mem_total_bytes`,
		a.agents, a.controllers, a.since, a.os, a.arch, a.engine, a.version, a.cpus, a.mem)
	if isForeignKey(err) {
		// An agent or a controller removed between the joins and the
		// insert: write the batch one link at a time, skipping its.
		if len(links) > 1 {
			for _, l := range links {
				if err := p.PutAgentLinks(ctx, []AgentLink{l}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err != nil {
		return pgFail(err, "put %d agent links", len(links))
	}
	return nil
}

// DeleteAgentLinks implements Membership.
func (p *Postgres) DeleteAgentLinks(ctx context.Context, links []AgentLink) error {
	if len(links) == 0 {
		return nil
	}
	a := agentLinkArrays(links)
	_, err := p.pool.Exec(ctx, `
		DELETE FROM agent_links l USING unnest($1::text[], $2::text[], $3::timestamptz[]) AS d(a, c, s)
		WHERE l.agent_id = d.a AND l.controller_id = d.c AND l.since = d.s`, a.agents, a.controllers, a.since)
	return pgFail(err, "delete %d agent links", len(links))
}

// ClusterAgents implements Membership: one query, a row per (agent, live
// link), grouped here.
func (p *Postgres) ClusterAgents(ctx context.Context, deadAfter time.Duration) ([]ClusterAgent, error) {
	rows, _ := p.pool.Query(ctx, `
		SELECT `+agentColumnsOf("a")+`, l.controller_id, l.since, l.os, l.arch, l.engine, l.version, l.cpus, l.mem_total_bytes
		FROM agents a
		LEFT JOIN (agent_links l JOIN controllers c ON c.id = l.controller_id AND c.last_seen >= now() - $1 * interval '1 microsecond')
			ON l.agent_id = a.id
		ORDER BY a.name, a.id, l.controller_id`, micros(deadAfter))
	defer rows.Close()
	out := []ClusterAgent{}
	for rows.Next() {
		var (
			ctl, os, arch, engine, version *string
			since                          *time.Time
			cpus, mem                      *int64
		)
		a, err := scanAgent(rows, &ctl, &since, &os, &arch, &engine, &version, &cpus, &mem)
		if err != nil {
			return nil, pgFail(err, "list the cluster's agents")
		}
		if n := len(out); n == 0 || out[n-1].ID != a.ID {
			out = append(out, ClusterAgent{Agent: a, Links: []AgentLink{}})
		}
		if ctl != nil {
			ca := &out[len(out)-1]
			ca.Links = append(ca.Links, AgentLink{Agent: a.ID, Controller: *ctl, Since: since.UTC(), OS: *os, Arch: *arch,
				Engine: *engine, Version: *version, CPUs: uint64(*cpus), MemTotalBytes: uint64(*mem)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, pgFail(err, "list the cluster's agents")
	}
	return out, nil
}

// isForeignKey reports whether err is Postgres's foreign_key_violation.
func isForeignKey(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// agentColumnsOf is agentColumns qualified by a table alias.
func agentColumnsOf(alias string) string {
	return alias + "." + strings.ReplaceAll(agentColumns, ", ", ", "+alias+".")
}
