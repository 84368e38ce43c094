// Package lease keeps this frontend's bucket leaderships alive: it acquires
// a bucket's lease from the catalog, renews it in the background, and
// reports the moment the catalog says the epoch is gone — or the bucket
// itself, its table dropped — so that the writer fences itself at once.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strom-io/strom/catalog"
)

// Store is the part of the catalog the keeper needs.
type Store interface {
	AcquireLease(ctx context.Context, b catalog.BucketID, holder string, ttl time.Duration) (catalog.Lease, error)
	RenewLease(ctx context.Context, l catalog.Lease, ttl time.Duration) (catalog.Lease, error)
	ReleaseLease(ctx context.Context, l catalog.Lease) error
}

// Config configures the keeper.
type Config struct {
	// TTL is how long a lease lasts without renewal; another frontend may
	// take the bucket after it.
	TTL time.Duration
	// RenewInterval is how often held leases are renewed; well under TTL.
	RenewInterval time.Duration
	// OnChange, if set, is told of every leadership change, e.g. to feed
	// metrics. It must not block.
	OnChange func(Change)
	// OnRenew, if set, is told the outcome of every renewal attempt: nil
	// when the lease was renewed, else the catalog's error. It must not
	// block.
	OnRenew func(b catalog.BucketID, err error)
}

// ErrReleased: the leadership was given up by Release (a handoff, or the
// keeper's shutdown).
var ErrReleased = errors.New("lease: released")

// Change is a kind of leadership change.
type Change string

// The leadership changes OnChange reports.
const (
	ChangeAcquired Change = "acquired"
	ChangeReleased Change = "released"
	ChangeFenced   Change = "fenced"
	// ChangeDropped: the bucket no longer exists (its table or database
	// was dropped).
	ChangeDropped Change = "dropped"
)

// Changes lists every Change, e.g. to pre-initialise metric labels.
var Changes = []Change{ChangeAcquired, ChangeReleased, ChangeFenced, ChangeDropped}

// Leadership is one held bucket lease. Fenced is closed when the keeper
// learns that the epoch is no longer current or that the bucket no longer
// exists, and when the lease is released; the holder must stop acting as
// leader at once. Err says which.
type Leadership struct {
	Lease  catalog.Lease
	fenced chan struct{}
	once   sync.Once
	err    error // why it ended; set once, before fenced is closed
	// deadline is when the lease ends by this process's monotonic clock
	// (Keeper.since), counted from when the acquire or renew request was
	// sent (so it ends no later than the catalog's expiry).
	deadline atomic.Int64
	k        *Keeper
}

// Expired reports whether the lease may have expired in the catalog because
// it was not renewed in time (the process was paused, or the catalog was
// unreachable). An expired leadership is not fenced yet — nobody may have
// taken the bucket, and the next renewal restores it — but it must not
// serve reads of its local state meanwhile. Commits are safe either way:
// the catalog checks the epoch.
func (l *Leadership) Expired() bool { return l.k.since(l.k.now()) >= l.deadline.Load() }

// Fenced is closed when this leadership has ended.
func (l *Leadership) Fenced() <-chan struct{} { return l.fenced }

// IsFenced reports whether the leadership has ended.
func (l *Leadership) IsFenced() bool {
	select {
	case <-l.fenced:
		return true
	default:
		return false
	}
}

// Err says why the leadership ended, once Fenced is closed (nil before):
// an error wrapping catalog.ErrNotFound when the bucket no longer exists
// (its table or database was dropped), catalog.ErrFenced when another
// holder took the bucket (or the catalog refused a commit), ErrReleased
// after Release, or the cause the caller passed to Keeper.Fence.
func (l *Leadership) Err() error {
	if !l.IsFenced() {
		return nil
	}
	return l.err
}

func (l *Leadership) fence(cause error) {
	l.once.Do(func() {
		l.err = cause
		close(l.fenced)
	})
}

// Keeper acquires and renews leases for one holder.
type Keeper struct {
	store  Store
	holder string
	cfg    Config
	logger *slog.Logger
	epoch  time.Time        // origin of since
	now    func() time.Time // time.Now; tests replace it

	mu   sync.Mutex
	held map[catalog.BucketID]*Leadership
}

// NewKeeper returns a keeper acting as holder.
func NewKeeper(store Store, holder string, cfg Config, logger *slog.Logger) *Keeper {
	return &Keeper{store: store, holder: holder, cfg: cfg, logger: logger, epoch: time.Now(), now: time.Now,
		held: map[catalog.BucketID]*Leadership{}}
}

// since is t on the keeper's monotonic clock: nanoseconds after its epoch.
func (k *Keeper) since(t time.Time) int64 { return int64(t.Sub(k.epoch)) }

// Holder is the id this keeper acquires leases as.
func (k *Keeper) Holder() string { return k.holder }

// Acquire returns the current leadership of b, acquiring the lease if this
// keeper does not hold it. It fails with catalog.ErrLeaseHeld when another
// frontend leads b.
func (k *Keeper) Acquire(ctx context.Context, b catalog.BucketID) (*Leadership, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l, ok := k.held[b]; ok && !l.IsFenced() {
		return l, nil
	}
	sent := k.now()
	lease, err := k.store.AcquireLease(ctx, b, k.holder, k.cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("lease: acquire %s: %w", b, err)
	}
	l := &Leadership{Lease: lease, fenced: make(chan struct{}), k: k}
	l.deadline.Store(k.since(sent.Add(k.cfg.TTL)))
	k.held[b] = l
	k.logger.Info("bucket leadership acquired", slog.String("bucket", b.String()), slog.Int64("epoch", lease.Epoch))
	if k.cfg.OnChange != nil {
		k.cfg.OnChange(ChangeAcquired)
	}
	return l, nil
}

// Run renews every held lease each RenewInterval until ctx is done, then
// releases them so another frontend can take over without waiting.
func (k *Keeper) Run(ctx context.Context) error {
	t := time.NewTicker(k.cfg.RenewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			k.releaseAll()
			return nil
		case <-t.C:
			k.renewAll(ctx)
		}
	}
}

func (k *Keeper) snapshot() []*Leadership {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*Leadership, 0, len(k.held))
	for _, l := range k.held {
		out = append(out, l)
	}
	return out
}

func (k *Keeper) renewAll(ctx context.Context) {
	for _, l := range k.snapshot() {
		if l.IsFenced() {
			continue
		}
		sent := k.now()
		lease, err := k.store.RenewLease(ctx, l.Lease, k.cfg.TTL)
		if ctx.Err() != nil {
			return
		}
		if k.cfg.OnRenew != nil {
			k.cfg.OnRenew(l.Lease.Bucket, err)
		}
		switch {
		case err == nil:
			k.mu.Lock()
			l.Lease.Expiry = lease.Expiry
			k.mu.Unlock()
			l.deadline.Store(k.since(sent.Add(k.cfg.TTL)))
		case errors.Is(err, catalog.ErrNotFound):
			// The table was dropped: nothing left to lead, now or later.
			k.logger.Info("bucket leadership ended: the bucket no longer exists (its table was dropped)",
				slog.String("bucket", l.Lease.Bucket.String()), slog.Int64("epoch", l.Lease.Epoch))
			k.Fence(l, fmt.Errorf("lease: bucket %s: %w", l.Lease.Bucket, err))
		case errors.Is(err, catalog.ErrFenced):
			k.logger.Warn("bucket leadership lost: fenced", slog.String("bucket", l.Lease.Bucket.String()), slog.Int64("epoch", l.Lease.Epoch))
			k.Fence(l, fmt.Errorf("lease: bucket %s: %w", l.Lease.Bucket, err))
		default:
			// Expiry alone does not fence (only a new epoch does), so the
			// leader keeps trying; commits check the epoch anyway.
			k.logger.Warn("lease renewal failed; retrying", slog.String("bucket", l.Lease.Bucket.String()), slog.Any("err", err))
		}
	}
}

// Fence ends a leadership the caller learned is stale (a commit failed with
// catalog.ErrFenced, or catalog.ErrNotFound because the table was dropped)
// or can no longer serve; cause becomes its Err unless it had ended
// already.
func (k *Keeper) Fence(l *Leadership, cause error) {
	if !l.IsFenced() && k.cfg.OnChange != nil {
		if errors.Is(cause, catalog.ErrNotFound) {
			k.cfg.OnChange(ChangeDropped)
		} else {
			k.cfg.OnChange(ChangeFenced)
		}
	}
	k.drop(l, cause)
}

// Release gives one leadership up in the catalog so that another frontend
// can take the bucket at once, and ends it here (Err is ErrReleased, or
// wraps catalog.ErrNotFound if the bucket was dropped meanwhile). A failed
// release is logged: the lease then simply expires.
func (k *Keeper) Release(ctx context.Context, l *Leadership) {
	if l.IsFenced() {
		return
	}
	k.mu.Lock()
	lease := l.Lease // renewals update Expiry under mu
	k.mu.Unlock()
	cause, change := ErrReleased, ChangeReleased
	switch err := k.store.ReleaseLease(ctx, lease); {
	case err == nil, errors.Is(err, catalog.ErrFenced):
	case errors.Is(err, catalog.ErrNotFound):
		// Dropped meanwhile: the holder cleans up as after a renewal
		// found it gone.
		cause, change = fmt.Errorf("lease: bucket %s: %w", l.Lease.Bucket, err), ChangeDropped
	default:
		k.logger.Warn("lease release failed; it expires instead", slog.String("bucket", l.Lease.Bucket.String()), slog.Any("err", err))
	}
	if k.cfg.OnChange != nil {
		k.cfg.OnChange(change)
	}
	k.drop(l, cause)
}

// Held is the number of leaderships this keeper holds.
func (k *Keeper) Held() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.held)
}

func (k *Keeper) drop(l *Leadership, cause error) {
	k.mu.Lock()
	if k.held[l.Lease.Bucket] == l {
		delete(k.held, l.Lease.Bucket)
	}
	k.mu.Unlock()
	l.fence(cause)
}

func (k *Keeper) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range k.snapshot() {
		k.Release(ctx, l)
	}
}
