// Package lease keeps this frontend's bucket leaderships alive: it acquires
// a bucket's lease from the catalog, renews it in the background, and
// reports the moment the catalog says the epoch is gone, so that the writer
// fences itself at once.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
}

// Leadership is one held bucket lease. Fenced is closed when the keeper
// learns that the epoch is no longer current (or the lease could not be
// renewed before it expired); the holder must stop acting as leader at once.
type Leadership struct {
	Lease  catalog.Lease
	fenced chan struct{}
	once   sync.Once
}

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

func (l *Leadership) fence() { l.once.Do(func() { close(l.fenced) }) }

// Keeper acquires and renews leases for one holder.
type Keeper struct {
	store  Store
	holder string
	cfg    Config
	logger *slog.Logger

	mu   sync.Mutex
	held map[catalog.BucketID]*Leadership
}

// NewKeeper returns a keeper acting as holder.
func NewKeeper(store Store, holder string, cfg Config, logger *slog.Logger) *Keeper {
	return &Keeper{store: store, holder: holder, cfg: cfg, logger: logger, held: map[catalog.BucketID]*Leadership{}}
}

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
	lease, err := k.store.AcquireLease(ctx, b, k.holder, k.cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("lease: acquire %s: %w", b, err)
	}
	l := &Leadership{Lease: lease, fenced: make(chan struct{})}
	k.held[b] = l
	k.logger.Info("bucket leadership acquired", slog.String("bucket", b.String()), slog.Int64("epoch", lease.Epoch))
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
		lease, err := k.store.RenewLease(ctx, l.Lease, k.cfg.TTL)
		switch {
		case err == nil:
			k.mu.Lock()
			l.Lease.Expiry = lease.Expiry
			k.mu.Unlock()
		case errors.Is(err, catalog.ErrFenced):
			k.logger.Warn("bucket leadership lost: fenced", slog.String("bucket", l.Lease.Bucket.String()), slog.Int64("epoch", l.Lease.Epoch))
			k.drop(l)
		case ctx.Err() != nil:
			return
		default:
			// Expiry alone does not fence (only a new epoch does), so the
			// leader keeps trying; commits check the epoch anyway.
			k.logger.Warn("lease renewal failed; retrying", slog.String("bucket", l.Lease.Bucket.String()), slog.Any("err", err))
		}
	}
}

// Fence ends a leadership the caller learned is stale (a commit failed with
// catalog.ErrFenced).
func (k *Keeper) Fence(l *Leadership) { k.drop(l) }

func (k *Keeper) drop(l *Leadership) {
	l.fence()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held[l.Lease.Bucket] == l {
		delete(k.held, l.Lease.Bucket)
	}
}

func (k *Keeper) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range k.snapshot() {
		if l.IsFenced() {
			continue
		}
		if err := k.store.ReleaseLease(ctx, l.Lease); err != nil && !errors.Is(err, catalog.ErrFenced) {
			k.logger.Warn("lease release failed", slog.String("bucket", l.Lease.Bucket.String()), slog.Any("err", err))
		}
		k.drop(l)
	}
}
