package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strom-io/strom/catalog"
)

// memberGrace is how long after its expiry a member's row is kept before
// Heartbeat deletes it.
const memberGrace = time.Hour

// memberRec is a member's row in bktMembers, keyed by its id.
type memberRec struct {
	Address    string    `json:"address,omitempty"`
	APIAddress string    `json:"api_address,omitempty"`
	Roles      []string  `json:"roles,omitempty"`
	Started    time.Time `json:"started"`
	Expiry     time.Time `json:"expiry"`
}

func (r memberRec) member(id string) catalog.Member {
	return catalog.Member{ID: id, Address: r.Address, APIAddress: r.APIAddress, Roles: r.Roles, Started: r.Started, Expiry: r.Expiry}
}

func decodeMember(k, v []byte) (memberRec, error) {
	var r memberRec
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("catalog/embedded: corrupt member %q: %w", k, err)
	}
	return r, nil
}

// Heartbeat implements catalog.Store. In the same transaction it deletes
// the rows of other members that expired more than an hour ago.
func (s *Store) Heartbeat(ctx context.Context, m catalog.Member, ttl time.Duration) (catalog.Member, error) {
	if err := catalog.ValidateMember(m, ttl); err != nil {
		return catalog.Member{}, err
	}
	var out catalog.Member
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktMembers)
		now := s.now()
		var stale [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if string(k) == m.ID {
				return nil
			}
			r, err := decodeMember(k, v)
			if err != nil {
				return err
			}
			if r.Expiry.Before(now.Add(-memberGrace)) {
				stale = append(stale, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		key := []byte(m.ID)
		old, ok, err := get[memberRec](b, key)
		if err != nil {
			return err
		}
		rec := memberRec{Address: m.Address, APIAddress: m.APIAddress, Roles: nilIfEmpty(slices.Clone(m.Roles)),
			Started: now, Expiry: now.Add(ttl)}
		if ok && old.Expiry.After(now) {
			rec.Started = old.Started
		}
		out = rec.member(m.ID)
		return put(b, key, rec)
	})
	if err != nil {
		return catalog.Member{}, err
	}
	return out, nil
}

// ListMembers implements catalog.Store.
func (s *Store) ListMembers(ctx context.Context) ([]catalog.Member, error) {
	var out []catalog.Member
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bktMembers)
		now := s.now()
		return b.ForEach(func(k, v []byte) error {
			r, err := decodeMember(k, v)
			if err != nil {
				return err
			}
			if r.Expiry.After(now) {
				out = append(out, r.member(string(k)))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveMember implements catalog.Store.
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bktMembers).Delete([]byte(id)) })
}
