// Package forward sends each part of a request to the frontend that leads
// its bucket: parts this process leads go to the local write path, the
// others over the internal ClusterService to their leaders. Its Handler is
// the receiving end, which serves only buckets it leads (or may lead now)
// and never forwards again.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"

	"github.com/strom-io/strom/api/client"
	clusterv1 "github.com/strom-io/strom/api/gen/strom/cluster/v1"
	"github.com/strom-io/strom/api/gen/strom/cluster/v1/clusterv1connect"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/cluster"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/writer"
)

// notWrittenHeader marks an unavailable answer of the receiving end that
// wrote nothing (the bucket is not led there), so the sender may re-route
// the part at once, even for a write that is not idempotent.
const notWrittenHeader = "Strom-Not-Written"

// Locator says where a bucket is led (cluster.Cluster).
type Locator interface {
	Locate(b catalog.BucketID) (cluster.Target, error)
	Refresh(ctx context.Context) error
}

// Local is this process's write path (writer.Writer); nil for a process
// without the write role.
type Local interface {
	Append(ctx context.Context, req writer.Request) ([]writer.Result, error)
	KV(ctx context.Context, t catalog.Table, b catalog.BucketID) (*kv.Bucket, error)
	// AwaitHandoff waits until the handoff of b under way here, if any,
	// ends (its lease is released, or it failed and b is led here again).
	AwaitHandoff(ctx context.Context, b catalog.BucketID) error
}

// Config configures forwarding.
type Config struct {
	// Timeout bounds one forwarded call (the caller's deadline too).
	Timeout time.Duration
	// HTTPClient carries the internal calls; nil for an h2c client.
	HTTPClient connect.HTTPClient
	// Token, if set, is sent as bearer token with every internal call: the
	// frontends' shared secret (-server.internal-token-file).
	Token string
	// OnForward, if set, counts forwarded calls by procedure and outcome
	// ("ok" or a Connect code).
	OnForward func(procedure, outcome string)
}

// Router routes request parts to their buckets' leaders.
type Router struct {
	cfg    Config
	loc    Locator
	local  Local
	logger *slog.Logger

	mu      sync.Mutex
	clients map[string]clusterv1connect.ClusterServiceClient
}

// NewRouter returns a router; local is nil without the write role.
func NewRouter(cfg Config, loc Locator, local Local, logger *slog.Logger) *Router {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = h2cClient()
	}
	if cfg.Token != "" {
		cfg.HTTPClient = client.BearerHTTPClient(cfg.HTTPClient, cfg.Token)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Router{cfg: cfg, loc: loc, local: local, logger: logger, clients: map[string]clusterv1connect.ClusterServiceClient{}}
}

// h2cClient speaks HTTP/2 without TLS, so that all forwarded calls to one
// frontend share a connection.
func h2cClient() *http.Client {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           protocols,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}}
}

func (r *Router) client(addr string) clusterv1connect.ClusterServiceClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.clients[addr]
	if !ok {
		c = clusterv1connect.NewClusterServiceClient(r.cfg.HTTPClient, "http://"+addr)
		r.clients[addr] = c
	}
	return c
}

// Write is one client write, split by bucket.
type Write struct {
	writer.Request
	// Kind says what the rows are; TargetColumns names a partial update's
	// columns (empty for all).
	Kind          clusterv1.WriteKind
	TargetColumns []string
}

// rerouteWaits are the pauses before re-routing parts whose leader moved.
// They do not have to outlast a handoff: requests that reach a bucket
// while it is handed over wait at the old leader until the lease is
// released (awaitHandoff), so a re-route after a handoff finds the next
// leader at once, and one more covers a view that was a moment stale. They
// bound the time a request keeps trying when a bucket has no leader it can
// reach (its leader died and the lease has not expired); beyond them the
// client gets unavailable and retries itself.
var rerouteWaits = []time.Duration{0, 20 * time.Millisecond, 80 * time.Millisecond, 250 * time.Millisecond}

// Write writes every part at its bucket's leader and returns the results in
// part order. A part whose bucket this process is handing over waits for
// the handoff to end first. A part whose leader turns out to have moved
// (nothing written) is re-routed after re-reading the leaders, a few times
// within half a second. When parts go to different leaders and some fail,
// the others may be written: an idempotent writer's retry then returns
// their offsets.
func (r *Router) Write(ctx context.Context, w Write) ([]writer.Result, error) {
	results := make([]writer.Result, len(w.Parts))
	todo := make([]int, len(w.Parts))
	for i := range todo {
		todo[i] = i
	}
	var err error
	for attempt := 0; ; attempt++ {
		var again []int
		again, err = r.writeOnce(ctx, w, todo, results)
		if err == nil || len(again) == 0 || attempt == len(rerouteWaits) || !sleep(ctx, rerouteWaits[attempt]) {
			break
		}
		if rerr := r.loc.Refresh(ctx); rerr != nil {
			break
		}
		todo = again
	}
	if err != nil {
		return nil, err
	}
	return results, nil
}

// awaitHandoff waits until this process's handoff of b, if one is under
// way, ends: until then the bucket has no leader to route to (this process
// refuses new writes to it, and the next leader cannot acquire its lease).
func (r *Router) awaitHandoff(ctx context.Context, b catalog.BucketID) error {
	if r.local == nil {
		return nil
	}
	return r.local.AwaitHandoff(ctx, b)
}

// sleep waits d unless ctx ends first; it reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// writeOnce writes the parts at idx, grouped by target, in parallel. It
// returns the parts that were not written because their leader moved, and
// the first error.
func (r *Router) writeOnce(ctx context.Context, w Write, idx []int, results []writer.Result) ([]int, error) {
	groups := map[string][]int{} // address ("" for local) -> parts
	var again []int
	var firstErr error
	for _, i := range idx {
		if err := r.awaitHandoff(ctx, w.Parts[i].Bucket); err != nil {
			return nil, err
		}
		t, err := r.loc.Locate(w.Parts[i].Bucket)
		switch {
		case err != nil:
			again = append(again, i)
			firstErr = cmpErr(firstErr, err)
		case t.Local && r.local != nil:
			groups[""] = append(groups[""], i)
		case t.Address == "":
			again = append(again, i)
			firstErr = cmpErr(firstErr, fmt.Errorf("%w: bucket %s: member %s has no internal address", cluster.ErrNoLeader, w.Parts[i].Bucket, t.Member))
		default:
			groups[t.Address] = append(groups[t.Address], i)
		}
	}
	if _, local := groups[""]; !local {
		writer.Settle(ctx) // nothing for the local writer's flush to wait for
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for addr, parts := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if addr == "" {
				err = r.writeLocal(ctx, w, parts, results)
			} else {
				err = r.writeRemote(ctx, addr, w, parts, results)
			}
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if notWritten(err) {
				again = append(again, parts...)
			}
			firstErr = cmpErr(firstErr, err)
		}()
	}
	wg.Wait()
	return again, firstErr
}

// cmpErr keeps the first error, preferring one that is not a "leader
// moved" error (it says more).
func cmpErr(first, err error) error {
	if first == nil || (notWritten(first) && !notWritten(err)) {
		return err
	}
	return first
}

// notWritten reports whether err says that nothing was written because the
// bucket is led elsewhere (or nowhere right now).
func notWritten(err error) bool {
	if errors.Is(err, writer.ErrNotLeader) || errors.Is(err, cluster.ErrNoLeader) {
		return true
	}
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Meta().Get(notWrittenHeader) != "" {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (r *Router) writeLocal(ctx context.Context, w Write, parts []int, results []writer.Result) error {
	req := w.Request
	req.Parts = make([]writer.Part, len(parts))
	for j, i := range parts {
		req.Parts[j] = w.Parts[i]
	}
	res, err := r.local.Append(ctx, req)
	if err != nil {
		return err
	}
	for j, i := range parts {
		results[i] = res[j]
	}
	return nil
}

func (r *Router) writeRemote(ctx context.Context, addr string, w Write, parts []int, results []writer.Result) error {
	req := &clusterv1.WriteRequest{
		TableId: w.Table.ID, SchemaVersion: w.Table.SchemaVersion, Kind: w.Kind,
		Durability: durabilityToProto(w.Durability), WriterId: w.WriterID, Sequence: w.Sequence,
		TargetColumns: w.TargetColumns,
	}
	for _, i := range parts {
		p := w.Parts[i]
		data := p.IPC // the client's bytes, when they are the batch's encoding
		if data == nil {
			var err error
			if data, err = batch.EncodeIPC(p.Record.Schema(), []arrow.RecordBatch{p.Record}); err != nil {
				return fmt.Errorf("forward: encode part for bucket %s: %w", p.Bucket, err)
			}
		}
		req.Parts = append(req.Parts, &clusterv1.WritePart{Bucket: bucketToProto(p.Bucket), ArrowIpc: data})
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	resp, err := r.client(addr).Write(cctx, connect.NewRequest(req))
	r.count("Write", err)
	if err != nil {
		return remoteError(ctx, "forward write", addr, err)
	}
	got := resp.Msg.GetResults()
	if len(got) != len(parts) {
		return fmt.Errorf("forward write to %s: %d results for %d parts", addr, len(got), len(parts))
	}
	for j, i := range parts {
		g := got[j]
		results[i] = writer.Result{
			Bucket:     w.Parts[i].Bucket,
			BaseOffset: g.GetBaseOffset(), Count: g.GetCount(), Duplicate: g.GetDuplicate(),
		}
	}
	return nil
}

// remoteError describes a failed call to the leader at addr. Unless the
// caller's own ctx ended, a failure that is not the leader's answer (the
// connection was refused, reset or broken: it died or shut down) and the
// leader's own cancellation are unavailable, which clients retry; the
// leader's other answers keep their code.
func remoteError(ctx context.Context, op, addr string, err error) error {
	if ctx.Err() != nil {
		return err
	}
	var ce *connect.Error
	if errors.As(err, &ce) && connect.IsWireError(ce) && ce.Code() != connect.CodeCanceled {
		return fmt.Errorf("%s to %s: %w", op, addr, err)
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s: the leader at %s did not answer: %w", op, addr, err))
}

func (r *Router) count(procedure string, err error) {
	if r.cfg.OnForward == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = connect.CodeOf(err).String()
	}
	r.cfg.OnForward(procedure, outcome)
}

func durabilityToProto(d writer.Durability) stromv1.Durability {
	if d == writer.WAL {
		return stromv1.Durability_DURABILITY_WAL
	}
	return stromv1.Durability_DURABILITY_DURABLE
}

func durabilityFromProto(d stromv1.Durability) writer.Durability {
	if d == stromv1.Durability_DURABILITY_WAL {
		return writer.WAL
	}
	return writer.Durable
}

func bucketToProto(b catalog.BucketID) *clusterv1.Bucket {
	return &clusterv1.Bucket{Partition: b.Partition, Bucket: b.Bucket}
}

func bucketFromProto(tableID int64, b *clusterv1.Bucket) catalog.BucketID {
	return catalog.BucketID{TableID: tableID, Partition: b.GetPartition(), Bucket: b.GetBucket()}
}
