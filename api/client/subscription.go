package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// Subscription defaults.
const (
	DefaultFetchMaxBytes = 1 << 20
	DefaultFetchMaxWait  = 5 * time.Second
)

// BucketID names one bucket of a table: a partition value ("" when the
// table is not partitioned) and a bucket number.
type BucketID struct {
	Partition string
	Bucket    int32
}

func (b BucketID) String() string {
	if b.Partition == "" {
		return fmt.Sprintf("bucket %d", b.Bucket)
	}
	return fmt.Sprintf("partition %q bucket %d", b.Partition, b.Bucket)
}

// Row is one record of a log table.
type Row struct {
	// BucketID is where the row lives.
	BucketID
	// Offset is the row's offset in its bucket.
	Offset int64
	// Timestamp is the commit time of the row (zero if the server sent none).
	Timestamp time.Time
	// Values holds the columns read, without _offset and _timestamp, as
	// google.protobuf.Value.AsInterface gives them (numbers are float64).
	Values map[string]any
}

// SubscribeOption configures a Subscription.
type SubscribeOption func(*subscribeConfig)

type startKind int

const (
	startEarliest startKind = iota
	startLatest
	startOffset
	startTimestamp
)

type subscribeConfig struct {
	start      startKind
	offset     int64
	timestamp  time.Time
	positions  map[BucketID]int64
	columns    []string
	buckets    []int32
	partitions []string
	stopAtEnd  bool
	maxWait    time.Duration
	maxBytes   int64
	retry      RetryPolicy
}

// FromEarliest starts every bucket at its first retained offset (the
// default).
func FromEarliest() SubscribeOption { return func(c *subscribeConfig) { c.start = startEarliest } }

// FromLatest starts every bucket after its last committed record: only new
// records are read.
func FromLatest() SubscribeOption { return func(c *subscribeConfig) { c.start = startLatest } }

// FromOffset starts every bucket at offset n.
func FromOffset(n int64) SubscribeOption {
	return func(c *subscribeConfig) { c.start, c.offset = startOffset, n }
}

// FromTimestamp starts every bucket at its first record committed at or
// after t.
func FromTimestamp(t time.Time) SubscribeOption {
	return func(c *subscribeConfig) { c.start, c.timestamp = startTimestamp, t }
}

// FromPositions starts the named buckets at the given offsets, e.g. the
// Positions of an earlier Subscription saved as a checkpoint; the other
// buckets start as the other From options say.
func FromPositions(pos map[BucketID]int64) SubscribeOption {
	return func(c *subscribeConfig) { c.positions = maps.Clone(pos) }
}

// WithColumns reads only the named columns (the server prunes the others);
// the default reads all.
func WithColumns(columns ...string) SubscribeOption {
	return func(c *subscribeConfig) { c.columns = columns }
}

// WithBuckets reads only the given bucket numbers; the default reads all.
func WithBuckets(buckets ...int32) SubscribeOption {
	return func(c *subscribeConfig) { c.buckets = buckets }
}

// WithPartitions reads only the given partitions; the default reads all
// that exist when Subscribe is called.
func WithPartitions(partitions ...string) SubscribeOption {
	return func(c *subscribeConfig) { c.partitions = partitions }
}

// StopAtEnd ends the subscription once every bucket has been read up to the
// latest offset listed when Subscribe was called; without it the
// subscription follows the table for new records until its context ends.
func StopAtEnd() SubscribeOption { return func(c *subscribeConfig) { c.stopAtEnd = true } }

// WithMaxWait sets how long one fetch waits on the server for new records
// (default DefaultFetchMaxWait).
func WithMaxWait(d time.Duration) SubscribeOption {
	return func(c *subscribeConfig) { c.maxWait = d }
}

// WithMaxBytes sets the approximate most bytes one fetch returns (default
// DefaultFetchMaxBytes).
func WithMaxBytes(n int64) SubscribeOption { return func(c *subscribeConfig) { c.maxBytes = n } }

// WithSubscribeRetry sets the retry policy for retryable errors of fetches
// and of the calls Subscribe makes. The default retries without an attempt
// limit for up to 5 minutes.
func WithSubscribeRetry(p RetryPolicy) SubscribeOption {
	return func(c *subscribeConfig) { c.retry = p }
}

// Subscription reads the records of a log table from all (or the chosen)
// buckets, with one long-polling Fetch loop per bucket, merged.
//
// Ordering: rows of one bucket arrive in offset order, without duplicates or
// gaps; rows of different buckets interleave in no fixed order.
//
// Resumption: a Subscription remembers, per bucket, the offset after the last
// row it delivered (Positions). Retryable errors are retried with backoff
// from the current fetch offset, which never skips or repeats a row. If Rows
// ends early (the loop breaks, its context ends, or a non-retryable error or
// exhausted retries are yielded), calling Rows again continues from
// Positions.
//
// Positions and Buckets are safe for concurrent use; only one Rows
// iteration may run at a time.
type Subscription struct {
	client          *Client
	database, table string
	cfg             subscribeConfig
	buckets         []BucketID

	mu      sync.Mutex
	pos     map[BucketID]int64 // next offset to deliver
	end     map[BucketID]int64 // nil unless StopAtEnd
	running bool
}

// Subscribe prepares a Subscription to database.table: it looks up the
// table's buckets (AdminService.GetTable) and the start offsets (and, with
// StopAtEnd, the end offsets) with ReadService.ListOffsets. ctx bounds
// these calls only; reading starts with Rows.
func (c *Client) Subscribe(ctx context.Context, database, table string, opts ...SubscribeOption) (*Subscription, error) {
	cfg := subscribeConfig{
		maxWait:  DefaultFetchMaxWait,
		maxBytes: DefaultFetchMaxBytes,
		retry:    RetryPolicy{MaxAttempts: -1, MaxElapsed: 5 * time.Minute},
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	cfg.retry = cfg.retry.withDefaults()
	s := &Subscription{client: c, database: database, table: table, cfg: cfg, pos: map[BucketID]int64{}}
	if err := s.init(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Subscription) init(ctx context.Context) error {
	var tresp *stromv1.GetTableResponse
	_, err := retry(ctx, s.cfg.retry, func(ctx context.Context) error {
		resp, err := s.client.admin.GetTable(ctx, connect.NewRequest(&stromv1.GetTableRequest{Database: s.database, Name: s.table}))
		if err == nil {
			tresp = resp.Msg
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("client: subscribe to %s.%s: %w", s.database, s.table, err)
	}
	var all []BucketID
	for _, b := range tresp.GetBuckets() {
		all = append(all, BucketID{Partition: b.GetPartition(), Bucket: b.GetBucket()})
	}
	if len(all) == 0 && tresp.GetTable().GetPartitionKey() == "" {
		for b := range max(tresp.GetTable().GetBuckets(), 1) {
			all = append(all, BucketID{Bucket: b})
		}
	}
	for _, b := range all {
		if len(s.cfg.buckets) > 0 && !slices.Contains(s.cfg.buckets, b.Bucket) {
			continue
		}
		if len(s.cfg.partitions) > 0 && !slices.Contains(s.cfg.partitions, b.Partition) {
			continue
		}
		if !slices.Contains(s.buckets, b) {
			s.buckets = append(s.buckets, b)
		}
	}
	slices.SortFunc(s.buckets, func(a, b BucketID) int {
		if a.Partition != b.Partition {
			if a.Partition < b.Partition {
				return -1
			}
			return 1
		}
		return int(a.Bucket - b.Bucket)
	})
	if len(s.buckets) == 0 {
		return fmt.Errorf("client: subscribe to %s.%s: no bucket matches (table has %d buckets, partitions %v asked)",
			s.database, s.table, len(all), s.cfg.partitions)
	}

	var spec stromv1.OffsetSpec
	switch s.cfg.start {
	case startEarliest:
		spec = stromv1.OffsetSpec_OFFSET_SPEC_EARLIEST
	case startLatest:
		spec = stromv1.OffsetSpec_OFFSET_SPEC_LATEST
	case startTimestamp:
		spec = stromv1.OffsetSpec_OFFSET_SPEC_TIMESTAMP
	}
	var need bool
	for _, b := range s.buckets {
		if off, ok := s.cfg.positions[b]; ok {
			s.pos[b] = off
		} else if s.cfg.start == startOffset {
			s.pos[b] = s.cfg.offset
		} else {
			need = true
		}
	}
	if need {
		start, err := s.listOffsets(ctx, spec)
		if err != nil {
			return err
		}
		for _, b := range s.buckets {
			if _, ok := s.pos[b]; !ok {
				s.pos[b] = start[b]
			}
		}
	}
	if s.cfg.stopAtEnd {
		end, err := s.listOffsets(ctx, stromv1.OffsetSpec_OFFSET_SPEC_LATEST)
		if err != nil {
			return err
		}
		s.end = end
	}
	return nil
}

// listOffsets lists an offset for every subscribed bucket, one call per
// partition.
func (s *Subscription) listOffsets(ctx context.Context, spec stromv1.OffsetSpec) (map[BucketID]int64, error) {
	out := map[BucketID]int64{}
	var partitions []string
	for _, b := range s.buckets {
		if !slices.Contains(partitions, b.Partition) {
			partitions = append(partitions, b.Partition)
		}
	}
	for _, part := range partitions {
		req := &stromv1.ListOffsetsRequest{Database: s.database, Table: s.table, Spec: spec, Partition: part}
		if spec == stromv1.OffsetSpec_OFFSET_SPEC_TIMESTAMP {
			req.Timestamp = timestamppb.New(s.cfg.timestamp)
		}
		_, err := retry(ctx, s.cfg.retry, func(ctx context.Context) error {
			resp, err := s.client.read.ListOffsets(ctx, connect.NewRequest(req))
			if err != nil {
				return err
			}
			for _, o := range resp.Msg.GetOffsets() {
				out[BucketID{Partition: o.GetPartition(), Bucket: o.GetBucket()}] = o.GetOffset()
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("client: list %s offsets of %s.%s: %w", spec, s.database, s.table, err)
		}
	}
	for _, b := range s.buckets {
		if _, ok := out[b]; !ok {
			return nil, fmt.Errorf("client: list %s offsets of %s.%s: no offset for %v", spec, s.database, s.table, b)
		}
	}
	return out, nil
}

// Buckets returns the buckets the subscription reads, sorted.
func (s *Subscription) Buckets() []BucketID { return slices.Clone(s.buckets) }

// Positions returns, per bucket, the offset after the last delivered row:
// where reading continues. Save it to resume later with FromPositions.
func (s *Subscription) Positions() map[BucketID]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.pos)
}

// Ends returns the offsets at which StopAtEnd stops, or nil without it.
func (s *Subscription) Ends() map[BucketID]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.end)
}

// fetched is what a bucket's fetch loop hands to Rows.
type fetched struct {
	bucket BucketID
	rows   []Row
	next   int64 // offset to fetch after rows
	done   bool  // the bucket reached its end (StopAtEnd)
	err    error
}

// Rows returns an iterator over the subscription's rows. The iteration ends
// when ctx ends (yielding a Connect error with code deadline_exceeded or
// canceled that wraps ctx's error, as a call cut off by ctx fails), with
// StopAtEnd when every bucket is
// read to its end (without an error), or after yielding a non-retryable
// error or one that outlasted the retry policy. Rows may be called again to
// continue from Positions; a second concurrent iteration yields an error.
func (s *Subscription) Rows(ctx context.Context) iter.Seq2[Row, error] {
	return func(yield func(Row, error) bool) {
		s.mu.Lock()
		if s.running {
			s.mu.Unlock()
			yield(Row{}, errors.New("client: Subscription.Rows is already running"))
			return
		}
		s.running = true
		type start struct {
			b        BucketID
			off, end int64
		}
		var starts []start
		for _, b := range s.buckets {
			end, hasEnd := s.end[b]
			if !hasEnd {
				end = -1
			} else if s.pos[b] >= end {
				continue
			}
			starts = append(starts, start{b, s.pos[b], end})
		}
		s.mu.Unlock()

		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
		}()
		ch := make(chan fetched, len(starts))
		for _, st := range starts {
			wg.Go(func() { s.fetchLoop(ctx, st.b, st.off, st.end, ch) })
		}
		for active := len(starts); active > 0; {
			var f fetched
			select {
			case f = <-ch:
			case <-ctx.Done():
				yield(Row{}, ended(ctx))
				return
			}
			if f.err != nil {
				yield(Row{}, f.err)
				return
			}
			for _, r := range f.rows {
				s.advance(f.bucket, r.Offset+1)
				if !yield(r, nil) {
					return
				}
			}
			s.advance(f.bucket, f.next)
			if f.done {
				active--
			}
		}
	}
}

// ended is the error Rows yields when ctx ended: a Connect error with the
// code of ctx's error, wrapping it.
func ended(ctx context.Context) error {
	code := connect.CodeCanceled
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded
	}
	return connect.NewError(code, fmt.Errorf("client: subscription ended: %w", ctx.Err()))
}

// advance moves a bucket's position forward (never back).
func (s *Subscription) advance(b BucketID, next int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if next > s.pos[b] {
		s.pos[b] = next
	}
}

// fetchLoop long-polls one bucket from off, handing batches to ch, until ctx
// ends, the bucket reaches end (when end ≥ 0), or an error outlasts retries.
// A retried fetch asks for the same offset, so no row is skipped or
// repeated.
func (s *Subscription) fetchLoop(ctx context.Context, b BucketID, off, end int64, ch chan<- fetched) {
	send := func(f fetched) bool {
		f.bucket = b
		select {
		case ch <- f:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		if end >= 0 && off >= end {
			send(fetched{next: off, done: true})
			return
		}
		req := &stromv1.FetchRequest{
			Database:  s.database,
			Table:     s.table,
			Partition: b.Partition,
			Bucket:    b.Bucket,
			Offset:    off,
			MaxBytes:  s.cfg.maxBytes,
			MaxWaitMs: int32(s.cfg.maxWait / time.Millisecond),
			Columns:   s.cfg.columns,
			Format:    stromv1.Format_FORMAT_JSON,
		}
		var resp *stromv1.FetchResponse
		_, err := retry(ctx, s.cfg.retry, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, s.cfg.maxWait+DefaultRequestTimeout)
			defer cancel()
			r, err := s.client.read.Fetch(ctx, connect.NewRequest(req))
			if err == nil {
				resp = r.Msg
			}
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				send(fetched{err: fmt.Errorf("client: fetch %s.%s %v from offset %d: %w", s.database, s.table, b, off, err)})
			}
			return
		}
		rows := make([]Row, 0, len(resp.GetRows()))
		next := off
		for i, st := range resp.GetRows() {
			r, err := parseRow(b, st)
			if err != nil {
				send(fetched{err: fmt.Errorf("client: fetch %s.%s %v from offset %d: row %d: %w", s.database, s.table, b, off, i, err)})
				return
			}
			if r.Offset < next {
				continue // never deliver a row twice
			}
			if end >= 0 && r.Offset >= end {
				break
			}
			rows = append(rows, r)
			next = r.Offset + 1
		}
		if resp.GetNextOffset() > next {
			next = resp.GetNextOffset()
		}
		if end >= 0 {
			next = min(next, end)
		}
		if next == off {
			continue // long poll ended without data
		}
		if !send(fetched{rows: rows, next: next, done: end >= 0 && next >= end}) {
			return
		}
		if end >= 0 && next >= end {
			return
		}
		off = next
	}
}

// parseRow splits a fetched JSON row into its system columns and values.
func parseRow(b BucketID, st *structpb.Struct) (Row, error) {
	r := Row{BucketID: b, Values: make(map[string]any, len(st.GetFields()))}
	var hasOffset bool
	for k, v := range st.GetFields() {
		switch k {
		case "_offset":
			off, ok := asInt64(v)
			if !ok {
				return Row{}, fmt.Errorf("_offset: want an integer, got %v", v.AsInterface())
			}
			r.Offset, hasOffset = off, true
		case "_timestamp":
			ts, err := parseTimestamp(v)
			if err != nil {
				return Row{}, err
			}
			r.Timestamp = ts
		default:
			r.Values[k] = v.AsInterface()
		}
	}
	if !hasOffset {
		return Row{}, errors.New("no _offset")
	}
	return r, nil
}

// parseTimestamp reads _timestamp: an RFC 3339 string or milliseconds since
// the Unix epoch.
func parseTimestamp(v *structpb.Value) (time.Time, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		t, err := time.Parse(time.RFC3339Nano, k.StringValue)
		if err == nil {
			return t, nil
		}
		if ms, ok := asInt64(v); ok {
			return time.UnixMilli(ms).UTC(), nil
		}
		return time.Time{}, fmt.Errorf("_timestamp: want RFC 3339 or epoch milliseconds, got %q", k.StringValue)
	case *structpb.Value_NullValue:
		return time.Time{}, nil
	}
	if ms, ok := asInt64(v); ok {
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("_timestamp: want RFC 3339 or epoch milliseconds, got %v", v.AsInterface())
}
