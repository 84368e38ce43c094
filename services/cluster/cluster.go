// Package cluster makes the frontends that share one catalog a cluster:
// each announces itself in the catalog's member list, sees the others and
// every bucket's leader, spreads bucket leaderships evenly over the live
// write members (taking over the buckets of a member that died once their
// leases expire, and handing buckets to members that joined), and tells the
// request path where a bucket's leader is, so that any frontend can accept
// any request and forward it.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strom-io/strom/catalog"
)

// ErrNoLeader: the bucket has no reachable leader right now (its leader
// died and its lease has not expired yet, or no write frontend runs). The
// request may be retried.
var ErrNoLeader = errors.New("cluster: no leader for the bucket right now")

// Store is the part of the catalog the cluster uses.
type Store interface {
	Heartbeat(ctx context.Context, m catalog.Member, ttl time.Duration) (catalog.Member, error)
	ListMembers(ctx context.Context) ([]catalog.Member, error)
	RemoveMember(ctx context.Context, id string) error
	ListAllBuckets(ctx context.Context) ([]catalog.BucketState, error)
}

// Leader is this process's write path (writer.Writer); nil for a process
// without the write role.
type Leader interface {
	Leads(b catalog.BucketID) bool
	Led() []catalog.BucketID
	Lead(ctx context.Context, b catalog.BucketID) error
	Handoff(ctx context.Context, b catalog.BucketID, keepSnapshots int) error
}

// Config configures the cluster membership of this process.
type Config struct {
	// Self is this process as others see it: ID (its lease holder id),
	// Address (its internal API, where others forward; "" without the
	// write role), APIAddress and Roles.
	Self catalog.Member
	// TTL is how long this process counts as a member without a heartbeat;
	// the lease TTL.
	TTL time.Duration
	// Interval is how often this process heartbeats, re-reads the members
	// and bucket leaders, and rebalances.
	Interval time.Duration
	// KeepSnapshots is passed to Handoff.
	KeepSnapshots int
	// MaxConcurrentLeads bounds the buckets recovered at once.
	MaxConcurrentLeads int
}

// Cluster is this process's view of and part in the cluster.
type Cluster struct {
	cfg    Config
	store  Store
	leader Leader
	logger *slog.Logger

	view atomic.Pointer[view]
	left atomic.Bool

	// heartbeatMu orders heartbeats with Leave and Depart, so that no
	// heartbeat begun before either lands after it (and lists this
	// process as it was).
	heartbeatMu sync.Mutex
	departed    bool // guarded by heartbeatMu

	refreshMu   sync.Mutex
	refreshedAt time.Time

	mu      sync.Mutex
	seen    map[string]int // member id -> consecutive rounds seen
	leading map[catalog.BucketID]bool
	moving  map[catalog.BucketID]bool
	leadSem chan struct{}
	wg      sync.WaitGroup
}

// view is one reading of the catalog's members and bucket rows.
type view struct {
	members []catalog.Member
	byID    map[string]catalog.Member
	writers []string // ids of live write members that accept forwarding
	tierers []string // ids of live tiering members
	buckets map[catalog.BucketID]catalog.BucketState
	assign  map[catalog.BucketID]string
}

// New returns the cluster membership of a process; leader is nil without
// the write role. Call Start, then Run.
func New(cfg Config, store Store, leader Leader, logger *slog.Logger) *Cluster {
	if cfg.MaxConcurrentLeads <= 0 {
		cfg.MaxConcurrentLeads = 4
	}
	c := &Cluster{
		cfg: cfg, store: store, leader: leader, logger: logger,
		seen: map[string]int{}, leading: map[catalog.BucketID]bool{}, moving: map[catalog.BucketID]bool{},
		leadSem: make(chan struct{}, cfg.MaxConcurrentLeads),
	}
	c.view.Store(&view{byID: map[string]catalog.Member{}, buckets: map[catalog.BucketID]catalog.BucketState{}, assign: map[catalog.BucketID]string{}})
	return c
}

// SetAddresses sets where this process's public and internal APIs listen;
// call it before Start.
func (c *Cluster) SetAddresses(api, internal string) {
	c.cfg.Self.APIAddress, c.cfg.Self.Address = api, internal
}

// Self is this process's member id.
func (c *Cluster) Self() string { return c.cfg.Self.ID }

// Start announces this process and reads the cluster once, so that Locate
// answers from the first request on.
func (c *Cluster) Start(ctx context.Context) error {
	if _, err := c.store.Heartbeat(ctx, c.cfg.Self, c.cfg.TTL); err != nil {
		return fmt.Errorf("cluster: announce %s: %w", c.cfg.Self.ID, err)
	}
	return c.refresh(ctx)
}

// Run heartbeats, refreshes the view and rebalances every Interval until
// ctx ends, then waits for the takeovers and handoffs it started.
func (c *Cluster) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	defer c.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		c.round(ctx)
	}
}

func (c *Cluster) round(ctx context.Context) {
	if err := c.heartbeat(ctx); err != nil && ctx.Err() == nil {
		c.logger.Warn("cluster heartbeat failed", slog.Any("err", err))
	}
	if err := c.refresh(ctx); err != nil {
		if ctx.Err() == nil {
			c.logger.Warn("reading the cluster's members and leaders failed", slog.Any("err", err))
		}
		return
	}
	if c.leader != nil && !c.left.Load() {
		c.balance(ctx)
	}
}

// heartbeat renews this process's member entry: as Self until Leave,
// without roles from Leave on, not at all after Depart.
func (c *Cluster) heartbeat(ctx context.Context) error {
	c.heartbeatMu.Lock()
	defer c.heartbeatMu.Unlock()
	if c.departed {
		return nil
	}
	m := c.cfg.Self
	if c.left.Load() {
		m.Roles = nil
	}
	_, err := c.store.Heartbeat(ctx, m, c.cfg.TTL)
	return err
}

// Leave is the first step of a drain: this process stops taking buckets
// over and balancing, and stays in the member list without roles (Run
// keeps renewing the entry), so that others stop assigning it buckets and
// tables, but still reach it at its internal address for the buckets it
// leads until it has handed them over: requests for a bucket being handed
// over wait there for the handoff to end. Depart removes the entry once
// the buckets are handed over.
func (c *Cluster) Leave(ctx context.Context) {
	c.left.Store(true)
	if err := c.heartbeat(ctx); err != nil {
		c.logger.Warn("announcing the drain failed; other members assign this one buckets until its entry expires", slog.Any("err", err))
	}
	if err := c.refresh(ctx); err != nil {
		c.logger.Warn("reading the cluster after leaving failed", slog.Any("err", err))
	}
}

// Depart removes this process from the member list, after Leave and the
// handoff of its buckets: the last step of a drain.
func (c *Cluster) Depart(ctx context.Context) {
	c.left.Store(true)
	c.heartbeatMu.Lock()
	defer c.heartbeatMu.Unlock()
	c.departed = true
	if err := c.store.RemoveMember(ctx, c.cfg.Self.ID); err != nil {
		c.logger.Warn("leaving the member list failed; the entry expires instead", slog.Any("err", err))
	}
}

// Refresh re-reads the view unless a read that began after this call
// finished meanwhile (concurrent callers share one read); the request path
// calls it when a forward found the view stale.
func (c *Cluster) Refresh(ctx context.Context) error {
	asked := time.Now()
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if c.refreshedAt.After(asked) {
		return nil
	}
	return c.refreshLocked(ctx)
}

func (c *Cluster) refresh(ctx context.Context) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	return c.refreshLocked(ctx)
}

func (c *Cluster) refreshLocked(ctx context.Context) error {
	started := time.Now()
	members, err := c.store.ListMembers(ctx)
	if err != nil {
		return err
	}
	states, err := c.store.ListAllBuckets(ctx)
	if err != nil {
		return err
	}
	v := &view{
		members: members,
		byID:    make(map[string]catalog.Member, len(members)),
		buckets: make(map[catalog.BucketID]catalog.BucketState, len(states)),
	}
	self := c.cfg.Self
	for _, m := range members {
		if m.ID == self.ID && c.left.Load() {
			continue
		}
		v.byID[m.ID] = m
		if slices.Contains(m.Roles, RoleWrite) && m.Address != "" {
			v.writers = append(v.writers, m.ID)
		}
		if slices.Contains(m.Roles, RoleTiering) {
			v.tierers = append(v.tierers, m.ID)
		}
	}
	if _, ok := v.byID[self.ID]; !ok && !c.left.Load() {
		// Not visible yet (or its heartbeat lapsed): it is a member anyway.
		v.byID[self.ID] = self
		if slices.Contains(self.Roles, RoleWrite) && self.Address != "" {
			v.writers = append(v.writers, self.ID)
			slices.Sort(v.writers)
		}
		if slices.Contains(self.Roles, RoleTiering) {
			v.tierers = append(v.tierers, self.ID)
			slices.Sort(v.tierers)
		}
	}
	ids := make([]catalog.BucketID, 0, len(states))
	for _, s := range states {
		v.buckets[s.BucketID] = s
		ids = append(ids, s.BucketID)
	}
	v.assign = Assign(ids, v.writers)
	c.view.Store(v)
	c.refreshedAt = started

	c.mu.Lock()
	seen := make(map[string]int, len(v.byID))
	for id := range v.byID {
		seen[id] = c.seen[id] + 1
	}
	c.seen = seen
	c.mu.Unlock()
	return nil
}

// balance leads the buckets assigned to this process that are free (or
// whose lease this process still holds from before a restart), and hands
// over, a few per round, the buckets it leads that are assigned to another
// member which has been live for two rounds.
func (c *Cluster) balance(ctx context.Context) {
	v := c.view.Load()
	self := c.cfg.Self.ID
	now := time.Now()
	for b, st := range v.buckets {
		if c.leader.Leads(b) {
			continue
		}
		held := st.Leader != "" && st.LeaseExpiry.After(now)
		switch {
		case held && st.Leader == self:
			// Held by this id but not loaded: a restart with a stable id.
			// Lead it (taking back its WAL records); a later round hands it
			// over if it belongs elsewhere.
			c.startLead(ctx, b)
		case !held && v.assign[b] == self:
			c.startLead(ctx, b)
		}
	}
	led := c.leader.Led()
	maxMoves := max(1, len(led)/4)
	c.mu.Lock()
	moves := len(c.moving)
	c.mu.Unlock()
	for _, b := range led {
		if moves >= maxMoves {
			break
		}
		owner, ok := v.assign[b]
		if !ok || owner == self || owner == "" {
			continue
		}
		c.mu.Lock()
		stable := c.seen[owner] >= 2
		busy := c.moving[b]
		if stable && !busy {
			c.moving[b] = true
		}
		c.mu.Unlock()
		if !stable || busy {
			continue
		}
		moves++
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() {
				c.mu.Lock()
				delete(c.moving, b)
				c.mu.Unlock()
			}()
			c.logger.Info("handing bucket over to rebalance", slog.String("bucket", b.String()), slog.String("to", owner))
			if err := c.leader.Handoff(ctx, b, c.cfg.KeepSnapshots); err != nil && ctx.Err() == nil {
				c.logger.Warn("handoff failed; still leading", slog.String("bucket", b.String()), slog.Any("err", err))
			}
		}()
	}
}

// startLead takes over b in the background unless that is under way.
func (c *Cluster) startLead(ctx context.Context, b catalog.BucketID) {
	c.mu.Lock()
	if c.leading[b] {
		c.mu.Unlock()
		return
	}
	c.leading[b] = true
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.leading, b)
			c.mu.Unlock()
		}()
		select {
		case c.leadSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-c.leadSem }()
		if c.left.Load() || c.leader.Leads(b) {
			return
		}
		start := time.Now()
		err := c.leader.Lead(ctx, b)
		switch {
		case err == nil:
			c.logger.Info("bucket taken over", slog.String("bucket", b.String()), slog.Duration("took", time.Since(start)))
		case ctx.Err() != nil:
		default:
			// Usually another member was quicker; the next round
			// re-reads the leaders.
			c.logger.Debug("taking a bucket over failed", slog.String("bucket", b.String()), slog.Any("err", err))
		}
	}()
}

// Target is where a bucket's requests go.
type Target struct {
	// Local: this process leads the bucket, or should lead it and may
	// acquire it now.
	Local bool
	// Member and Address name the leader (or the member that should lead
	// it) to forward to.
	Member  string
	Address string
}

// Locate says where requests for b go, from the last view.
func (c *Cluster) Locate(b catalog.BucketID) (Target, error) {
	if c.leader != nil && c.leader.Leads(b) {
		return Target{Local: true}, nil
	}
	v := c.view.Load()
	self := c.cfg.Self.ID
	if st, ok := v.buckets[b]; ok && st.Leader != "" && st.Leader != self && st.LeaseExpiry.After(time.Now()) {
		if m, ok := v.byID[st.Leader]; ok && m.Address != "" {
			return Target{Member: m.ID, Address: m.Address}, nil
		}
		return Target{}, fmt.Errorf("%w: bucket %s: its leader %s left or stopped answering; its lease expires within %s",
			ErrNoLeader, b, st.Leader, time.Until(st.LeaseExpiry).Round(time.Millisecond))
	}
	owner, ok := v.assign[b]
	if !ok {
		owner = Owner(b, v.writers)
	}
	switch {
	case owner == "":
		return Target{}, fmt.Errorf("%w: bucket %s: no frontend with the write role is running", ErrNoLeader, b)
	case owner == self && c.leader != nil && !c.left.Load():
		return Target{Local: true}, nil
	}
	m := v.byID[owner]
	if m.Address == "" {
		return Target{}, fmt.Errorf("%w: bucket %s: member %s has no internal address", ErrNoLeader, b, owner)
	}
	return Target{Member: m.ID, Address: m.Address}, nil
}

// OwnsTable reports whether this process should tier table id: tables are
// spread over the live tiering members by rendezvous hashing, so every
// member agrees without coordination once their views agree. Two tierers
// that briefly both think they own a table are harmless: lake commits are
// optimistic and carry the tiered offsets.
func (c *Cluster) OwnsTable(id int64) bool {
	if c.left.Load() {
		return false
	}
	return Owner(catalog.BucketID{TableID: id, Bucket: -1}, c.view.Load().tierers) == c.cfg.Self.ID
}

// Members returns the live members of the last view, ordered by id.
func (c *Cluster) Members() []catalog.Member {
	return slices.Clone(c.view.Load().members)
}
