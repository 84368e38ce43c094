package forward

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	clusterv1 "github.com/strom-io/strom/api/gen/strom/cluster/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/cluster"
	"github.com/strom-io/strom/services/kv"
)

// Reads of a primary-key bucket's current state go to its leader, which
// alone holds the KV state. Rows travel in kv's binary row encoding and
// prefixes in its key encoding, both exact for every column type.

// Lookup returns the current row of each key of bucket b (nil where there
// is none), in key order. A key is its primary-key values in primary-key
// order.
func (r *Router) Lookup(ctx context.Context, t catalog.Table, b catalog.BucketID, keys []kv.Row) ([]kv.Row, error) {
	var out []kv.Row
	n := len(t.Schema.Columns)
	err := r.read(ctx, t, b, func(state *kv.Bucket) (err error) {
		out, err = state.Lookup(keys)
		resize(out, n)
		return err
	}, func(ctx context.Context, c clusterClient) error {
		req := &clusterv1.LookupRequest{TableId: t.ID, Bucket: bucketToProto(b), ColumnCount: int32(n)}
		for _, k := range keys {
			req.Keys = append(req.Keys, kv.EncodePrefix(nil, k))
		}
		resp, err := c.Lookup(ctx, connect.NewRequest(req))
		r.count("Lookup", err)
		if err != nil {
			return err
		}
		if len(resp.Msg.GetRows()) != len(keys) {
			return fmt.Errorf("forward lookup: %d rows for %d keys", len(resp.Msg.GetRows()), len(keys))
		}
		out = make([]kv.Row, len(keys))
		for i, data := range resp.Msg.GetRows() {
			if len(data) == 0 {
				continue
			}
			if out[i], err = kv.DecodeRow(t.Schema, data); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// PrefixLookup returns the rows of bucket b whose bucket key equals values.
func (r *Router) PrefixLookup(ctx context.Context, t catalog.Table, b catalog.BucketID, values []any) ([]kv.Row, error) {
	var out []kv.Row
	n := len(t.Schema.Columns)
	err := r.read(ctx, t, b, func(state *kv.Bucket) (err error) {
		out, err = state.PrefixLookup(values)
		resize(out, n)
		return err
	}, func(ctx context.Context, c clusterClient) error {
		resp, err := c.PrefixLookup(ctx, connect.NewRequest(&clusterv1.PrefixLookupRequest{
			TableId: t.ID, Bucket: bucketToProto(b), Prefix: kv.EncodePrefix(nil, values), ColumnCount: int32(n),
		}))
		r.count("PrefixLookup", err)
		if err != nil {
			return err
		}
		out, err = decodeRows(t.Schema, resp.Msg.GetRows())
		return err
	})
	return out, err
}

// Scan returns up to limit current rows of bucket b (0: all), in key
// order, those whose keys follow after (nil: from the first; see
// kv.Bucket.ScanAfter), with the last row's key and whether rows follow.
func (r *Router) Scan(ctx context.Context, t catalog.Table, b catalog.BucketID, after []byte, limit int) ([]kv.Row, []byte, bool, error) {
	var (
		out  []kv.Row
		last []byte
		more bool
	)
	n := len(t.Schema.Columns)
	err := r.read(ctx, t, b, func(state *kv.Bucket) (err error) {
		out, last, more, err = state.ScanAfter(after, limit)
		resize(out, n)
		return err
	}, func(ctx context.Context, c clusterClient) error {
		resp, err := c.Scan(ctx, connect.NewRequest(&clusterv1.ScanRequest{
			TableId: t.ID, Bucket: bucketToProto(b), Limit: int64(limit), ColumnCount: int32(n), AfterKey: after,
		}))
		r.count("Scan", err)
		if err != nil {
			return err
		}
		out, err = decodeRows(t.Schema, resp.Msg.GetRows())
		last, more = resp.Msg.GetLastKey(), resp.Msg.GetMore()
		return err
	})
	return out, last, more, err
}

// Count returns the exact number of current rows of bucket b.
func (r *Router) Count(ctx context.Context, t catalog.Table, b catalog.BucketID) (int64, error) {
	var n int64
	err := r.read(ctx, t, b, func(state *kv.Bucket) error {
		n = state.Count()
		return nil
	}, func(ctx context.Context, c clusterClient) error {
		resp, err := c.Count(ctx, connect.NewRequest(&clusterv1.CountRequest{TableId: t.ID, Bucket: bucketToProto(b)}))
		r.count("Count", err)
		if err != nil {
			return err
		}
		n = resp.Msg.GetCount()
		return nil
	})
	return n, err
}

// clusterClient is the forwarding client of one frontend.
type clusterClient interface {
	Lookup(context.Context, *connect.Request[clusterv1.LookupRequest]) (*connect.Response[clusterv1.LookupResponse], error)
	PrefixLookup(context.Context, *connect.Request[clusterv1.PrefixLookupRequest]) (*connect.Response[clusterv1.PrefixLookupResponse], error)
	Scan(context.Context, *connect.Request[clusterv1.ScanRequest]) (*connect.Response[clusterv1.ScanResponse], error)
	Count(context.Context, *connect.Request[clusterv1.CountRequest]) (*connect.Response[clusterv1.CountResponse], error)
}

// read runs a read of bucket b where it is led: locally, or remotely at
// the leader. Reads have no side effects, so one whose leader moved is
// retried once after re-reading the leaders.
func (r *Router) read(ctx context.Context, t catalog.Table, b catalog.BucketID, local func(*kv.Bucket) error, remote func(context.Context, clusterClient) error) error {
	var err error
	for attempt := 0; attempt <= len(rerouteWaits); attempt++ {
		if attempt > 0 {
			if !sleep(ctx, rerouteWaits[attempt-1]) {
				return err
			}
			if rerr := r.loc.Refresh(ctx); rerr != nil {
				return err
			}
		}
		if err = r.awaitHandoff(ctx, b); err != nil {
			return err
		}
		var target clusterTarget
		target, err = r.target(b)
		if err != nil {
			continue
		}
		if target.local {
			var state *kv.Bucket
			if state, err = r.local.KV(ctx, t, b); err == nil {
				err = local(state)
			}
		} else {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
			err = remote(cctx, r.client(target.addr))
			cancel()
			if err != nil {
				err = remoteError(ctx, "forward read", target.addr, err)
			}
		}
		if err == nil || !retryableRead(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

type clusterTarget struct {
	local bool
	addr  string
}

func (r *Router) target(b catalog.BucketID) (clusterTarget, error) {
	t, err := r.loc.Locate(b)
	switch {
	case err != nil:
		return clusterTarget{}, err
	case t.Local && r.local != nil:
		return clusterTarget{local: true}, nil
	case t.Address == "":
		return clusterTarget{}, fmt.Errorf("%w: bucket %s: no reachable leader", cluster.ErrNoLeader, b)
	}
	return clusterTarget{addr: t.Address}, nil
}

// retryableRead: the leader moved, was unreachable, or closed the state
// while handing the bucket over.
func retryableRead(err error) bool {
	if notWritten(err) || errors.Is(err, kv.ErrClosed) {
		return true
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable:
		return true
	}
	return false
}

// resize gives the rows of a bucket (nil where a key has none) the n
// columns of the caller's schema version: the bucket's state may be of a
// newer or older version (kv.Row.Resize).
func resize(rows []kv.Row, n int) {
	for i, r := range rows {
		if r != nil {
			rows[i] = r.Resize(n)
		}
	}
}

func decodeRows(s catalog.Schema, data [][]byte) ([]kv.Row, error) {
	out := make([]kv.Row, len(data))
	for i, d := range data {
		row, err := kv.DecodeRow(s, d)
		if err != nil {
			return nil, err
		}
		out[i] = row
	}
	return out, nil
}
