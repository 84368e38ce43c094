package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/strom-io/strom/catalog"
)

// memberGrace is how long after its expiry a member's row is kept before
// Heartbeat deletes it.
const memberGrace = time.Hour

const memberColumns = `id, address, api_address, roles, started, expiry`

func scanMember(r pgx.Row) (catalog.Member, error) {
	var m catalog.Member
	err := r.Scan(&m.ID, &m.Address, &m.APIAddress, &m.Roles, &m.Started, &m.Expiry)
	m.Roles = nilIfEmpty(m.Roles)
	return m, err
}

// Heartbeat implements catalog.Store with one upsert judged by the
// database clock (now()). The same statement deletes the rows of other
// members that expired more than an hour ago, skipping rows another
// transaction has locked, so concurrent heartbeats never wait for each
// other's clean-up.
func (s *Store) Heartbeat(ctx context.Context, m catalog.Member, ttl time.Duration) (catalog.Member, error) {
	if err := catalog.ValidateMember(m, ttl); err != nil {
		return catalog.Member{}, err
	}
	roles := m.Roles
	if roles == nil {
		roles = []string{}
	}
	out, err := scanMember(s.pool.QueryRow(ctx, `
		WITH gone AS (
			DELETE FROM members WHERE id IN (
				SELECT id FROM members WHERE expiry < now() - $6 * interval '1 microsecond' AND id <> $1
				FOR UPDATE SKIP LOCKED)
		)
		INSERT INTO members (id, address, api_address, roles, started, expiry)
		VALUES ($1, $2, $3, $4, now(), now() + $5 * interval '1 microsecond')
		ON CONFLICT (id) DO UPDATE SET
			address = EXCLUDED.address, api_address = EXCLUDED.api_address, roles = EXCLUDED.roles,
			started = CASE WHEN members.expiry > now() THEN members.started ELSE EXCLUDED.started END,
			expiry = EXCLUDED.expiry
		RETURNING `+memberColumns,
		m.ID, m.Address, m.APIAddress, roles, ttl.Microseconds(), memberGrace.Microseconds()))
	if err != nil {
		return catalog.Member{}, mapErr(fmt.Sprintf("heartbeat of member %q", m.ID), err)
	}
	return out, nil
}

// ListMembers implements catalog.Store.
func (s *Store) ListMembers(ctx context.Context) ([]catalog.Member, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+memberColumns+` FROM members WHERE expiry > now() ORDER BY id`)
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.Member, error) { return scanMember(r) })
	if err != nil {
		return nil, mapErr("list members", err)
	}
	return nilIfEmpty(ms), nil
}

// RemoveMember implements catalog.Store.
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM members WHERE id = $1`, id); err != nil {
		return mapErr(fmt.Sprintf("remove member %q", id), err)
	}
	return nil
}
