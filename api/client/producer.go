package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/util"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// ErrProducerClosed is returned by Send and SendArrow after Close.
var ErrProducerClosed = errors.New("client: producer closed")

// Producer defaults.
const (
	DefaultBatchRows        = 5000
	DefaultBatchBytes       = 1 << 20
	DefaultLinger           = 10 * time.Millisecond
	DefaultMaxBufferedBytes = 64 << 20
	DefaultRequestTimeout   = 30 * time.Second
)

// SendResult reports the outcome of one Append request (one batch).
//
// Rows are numbered from 0 in the order Send and SendArrow accepted them
// (an Arrow record counts as its number of rows), so a batch covers rows
// FirstRow to FirstRow+Rows-1. A caller that needs to know what happened to a
// given row counts its own Send calls.
type SendResult struct {
	// Sequence is the request's sequence number for the producer's writer id.
	Sequence int64
	// FirstRow is the producer-wide number of the batch's first row.
	FirstRow int64
	// Rows is the number of rows in the batch.
	Rows int64
	// Bytes is the batch's approximate encoded size.
	Bytes int64
	// Attempts is how many times the request was sent.
	Attempts int
	// Offsets are the offsets the server assigned, per bucket, when Err is
	// nil. Within a bucket the batch's rows got consecutive offsets in the
	// order they were sent.
	Offsets []*stromv1.BucketOffsets
	// Err is nil on success, else a *BatchError. The rows of a failed batch
	// were not written, except after an ambiguous error (see BatchError).
	Err error
}

// BatchError is the failure of one batch of rows. Err is the last error,
// typically a *connect.Error (use connect.CodeOf): invalid_argument means the
// server rejected the batch and wrote none of it; a retryable code means
// retries ran out and the outcome is unknown: the rows may or may not have
// been written (exactly once if at all, thanks to the writer id and
// sequence).
type BatchError struct {
	// Sequence is the request's sequence number.
	Sequence int64
	// FirstRow and Rows say which rows failed (see SendResult).
	FirstRow, Rows int64
	// Attempts is how many times the request was sent.
	Attempts int
	// Err is the last error.
	Err error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("client: append rows %d to %d (sequence %d, %d attempts): %v",
		e.FirstRow, e.FirstRow+e.Rows-1, e.Sequence, e.Attempts, e.Err)
}

// Unwrap returns Err.
func (e *BatchError) Unwrap() error { return e.Err }

// ProducerOption configures a Producer.
type ProducerOption func(*producerConfig)

type producerConfig struct {
	batchRows      int
	batchBytes     int64
	linger         time.Duration
	maxBuffered    int64
	requestTimeout time.Duration
	durability     stromv1.Durability
	idempotent     bool
	retry          *RetryPolicy
	onResult       func(SendResult)
}

// WithBatchRows sets the most rows in one request (default
// DefaultBatchRows).
func WithBatchRows(n int) ProducerOption { return func(c *producerConfig) { c.batchRows = n } }

// WithBatchBytes sets the approximate most bytes in one request (default
// DefaultBatchBytes). A row or Arrow record larger than that is sent alone.
func WithBatchBytes(n int64) ProducerOption { return func(c *producerConfig) { c.batchBytes = n } }

// WithLinger sets how long a batch waits for more rows before it is sent
// (default DefaultLinger). Zero closes a batch at once; only rows that
// arrive concurrently share it.
func WithLinger(d time.Duration) ProducerOption { return func(c *producerConfig) { c.linger = d } }

// WithMaxBufferedBytes bounds the bytes accepted but not yet acknowledged
// (default DefaultMaxBufferedBytes); Send blocks while the bound is reached.
func WithMaxBufferedBytes(n int64) ProducerOption {
	return func(c *producerConfig) { c.maxBuffered = n }
}

// WithRequestTimeout bounds each attempt of an Append request (default
// DefaultRequestTimeout); an attempt that times out is retried.
func WithRequestTimeout(d time.Duration) ProducerOption {
	return func(c *producerConfig) { c.requestTimeout = d }
}

// WithDurability sets when the server acknowledges: DURABILITY_DURABLE (the
// server default: in a committed object) or DURABILITY_WAL (fsynced in the
// leader's WAL; lower latency, lost if the leader's disk is lost).
func WithDurability(d stromv1.Durability) ProducerOption {
	return func(c *producerConfig) { c.durability = d }
}

// WithRetry sets the retry policy for retryable errors.
func WithRetry(p RetryPolicy) ProducerOption { return func(c *producerConfig) { c.retry = &p } }

// WithIdempotence turns idempotent writes on (the default) or off. Off, the
// requests carry no writer id, a retry may write rows twice, and so retries
// are off too unless WithRetry is given.
func WithIdempotence(on bool) ProducerOption { return func(c *producerConfig) { c.idempotent = on } }

// WithOnResult sets a function called once per batch, from one goroutine, in
// sequence order, after the batch succeeded or failed for good. It must not
// block for long (it delays the next request) and must not call Flush or
// Close (they wait for it).
func WithOnResult(f func(SendResult)) ProducerOption {
	return func(c *producerConfig) { c.onResult = f }
}

// Producer appends rows to one table. Send and SendArrow buffer rows into
// batches; a batch is sent when it holds BatchRows rows or BatchBytes bytes,
// when it has waited Linger, or on Flush and Close.
//
// Ordering and idempotence: batches are sent in the order their rows were
// accepted, one request at a time, so rows of one bucket get offsets in Send
// order. Each request carries the producer's writer id (a random UUID) and a
// sequence number that increases with every batch; a retry reuses the
// sequence, so the server writes a batch at most once however often it is
// retried (on unavailable, resource_exhausted, deadline_exceeded or aborted,
// with capped exponential backoff and jitter).
//
// Failures: a batch that fails for good (a non-retryable error such as
// invalid_argument, or retries exhausted) is reported to the WithOnResult
// callback and by the next Flush or Close as a *BatchError; the producer
// goes on with the following batches.
//
// A Producer is safe for concurrent use; concurrent Sends are ordered as
// they take the producer's lock. Close must be called to stop its goroutine.
type Producer struct {
	client          *Client
	database, table string
	cfg             producerConfig
	writerID        string

	ctx    context.Context // the sender's lifetime; cancelled by Close on timeout
	cancel context.CancelFunc
	exited chan struct{}

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every state change
	cur      *batch        // accumulating; nil when empty
	queue    []*batch      // sealed, waiting to be sent
	nextSeq  int64         // last sequence assigned
	nextRow  int64         // number of rows accepted so far
	sealed   int64         // sequence of the last sealed batch
	done     int64         // sequence of the last finished batch
	buffered int64         // bytes accepted and not finished
	errs     []error       // failures not yet returned by Flush or Close
	closed   bool
}

// batch is one future Append request: JSON rows or Arrow records, never both.
type batch struct {
	seq      int64
	firstRow int64
	rows     int64
	bytes    int64
	json     []*structpb.Struct
	records  []arrow.RecordBatch // retained until sent
	timer    *time.Timer
}

// NewProducer returns a Producer appending to database.table. It starts one
// goroutine, stopped by Close.
func (c *Client) NewProducer(database, table string, opts ...ProducerOption) *Producer {
	cfg := producerConfig{
		batchRows:      DefaultBatchRows,
		batchBytes:     DefaultBatchBytes,
		linger:         DefaultLinger,
		maxBuffered:    DefaultMaxBufferedBytes,
		requestTimeout: DefaultRequestTimeout,
		idempotent:     true,
	}
	for _, opt := range opts {
		opt(&cfg)
	}
	cfg.batchRows = max(cfg.batchRows, 1)
	cfg.batchBytes = max(cfg.batchBytes, 1)
	cfg.linger = max(cfg.linger, 0)
	cfg.maxBuffered = max(cfg.maxBuffered, cfg.batchBytes)
	if cfg.retry == nil {
		p := RetryPolicy{}
		if !cfg.idempotent {
			p.MaxAttempts = 1
		}
		cfg.retry = &p
	}
	*cfg.retry = cfg.retry.withDefaults()
	p := &Producer{
		client:   c,
		database: database,
		table:    table,
		cfg:      cfg,
		exited:   make(chan struct{}),
		changed:  make(chan struct{}),
	}
	if cfg.idempotent {
		p.writerID = uuid.NewString()
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p
}

// WriterID returns the writer id the producer's requests carry, or "" when
// idempotence is off.
func (p *Producer) WriterID() string { return p.writerID }

// Send adds one row, keyed by column name, to the current batch. It returns
// once the row is buffered, not when it is written: the outcome arrives
// through WithOnResult and Flush. It blocks while WithMaxBufferedBytes is
// reached, until ctx ends.
//
// Values are converted to google.protobuf.Value: nil, bool, numbers, string,
// []byte (base64), []any and map[string]any; time.Time becomes an RFC 3339
// string; integers beyond ±2^53 (which a JSON number, a float64, would
// round), and json.Number values beyond float64's range, become decimal
// strings, which the server parses into the column's type. An unsupported value is an error and the row is not added.
func (p *Producer) Send(ctx context.Context, row map[string]any) error {
	s, err := newStruct(row)
	if err != nil {
		return err
	}
	size := int64(proto.Size(s))
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.waitRoomLocked(ctx); err != nil {
		return err
	}
	if p.cur != nil && (p.cur.records != nil || p.cur.bytes+size > p.cfg.batchBytes) {
		p.sealLocked()
	}
	b := p.batchLocked()
	b.json = append(b.json, s)
	p.addLocked(b, 1, size)
	return nil
}

// SendArrow adds the rows of an Arrow record batch, whose schema must match
// the table's; the producer retains rec until it is sent. Records with equal
// schemas share a request (one Arrow IPC stream); JSON rows and Arrow
// records never do. Otherwise it behaves as Send.
func (p *Producer) SendArrow(ctx context.Context, rec arrow.RecordBatch) error {
	if rec.NumRows() == 0 {
		return nil
	}
	size := util.TotalRecordSize(rec)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.waitRoomLocked(ctx); err != nil {
		return err
	}
	if p.cur != nil && (p.cur.records == nil ||
		!p.cur.records[0].Schema().Equal(rec.Schema()) ||
		p.cur.bytes+size > p.cfg.batchBytes) {
		p.sealLocked()
	}
	rec.Retain()
	b := p.batchLocked()
	b.records = append(b.records, rec)
	p.addLocked(b, rec.NumRows(), size)
	return nil
}

// Flush sends the buffered rows and waits until every batch accepted before
// the call has finished. It returns the failures (*BatchError, joined) of
// batches that finished since the previous Flush or Close, or ctx's error if
// ctx ends first (the batches go on).
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sealLocked()
	target := p.sealed
	for p.done < target {
		if err := p.waitLocked(ctx); err != nil {
			return err
		}
	}
	return p.takeErrsLocked()
}

// Close sends the buffered rows, waits for every batch to finish, and stops
// the producer; later Sends fail with ErrProducerClosed. If ctx ends first,
// the remaining batches are abandoned and reported as failed. Close returns
// the failures not yet returned by Flush. Calling Close again returns nil.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.exited
		return nil
	}
	p.closed = true
	p.sealLocked()
	p.broadcastLocked()
	p.mu.Unlock()
	var ctxErr error
	select {
	case <-p.exited:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		p.cancel()
		<-p.exited
	}
	p.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(ctxErr, p.takeErrsLocked())
}

func (p *Producer) takeErrsLocked() error {
	err := errors.Join(p.errs...)
	p.errs = nil
	return err
}

func (p *Producer) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitLocked releases the lock until the state changes or ctx ends.
func (p *Producer) waitLocked(ctx context.Context) error {
	ch := p.changed
	p.mu.Unlock()
	defer p.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Producer) waitRoomLocked(ctx context.Context) error {
	for {
		if p.closed {
			return ErrProducerClosed
		}
		if p.buffered < p.cfg.maxBuffered {
			return nil
		}
		if err := p.waitLocked(ctx); err != nil {
			return err
		}
	}
}

// batchLocked returns the accumulating batch, starting one (and its linger
// timer) if needed.
func (p *Producer) batchLocked() *batch {
	if p.cur == nil {
		b := &batch{firstRow: p.nextRow}
		b.timer = time.AfterFunc(p.cfg.linger, func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.cur == b {
				p.sealLocked()
			}
		})
		p.cur = b
	}
	return p.cur
}

func (p *Producer) addLocked(b *batch, rows, size int64) {
	b.rows += rows
	b.bytes += size
	p.nextRow += rows
	p.buffered += size
	if b.rows >= int64(p.cfg.batchRows) || b.bytes >= p.cfg.batchBytes {
		p.sealLocked()
	}
}

// sealLocked closes the accumulating batch, gives it the next sequence and
// queues it for the sender.
func (p *Producer) sealLocked() {
	b := p.cur
	if b == nil {
		return
	}
	p.cur = nil
	b.timer.Stop()
	p.nextSeq++
	b.seq = p.nextSeq
	p.sealed = b.seq
	p.queue = append(p.queue, b)
	p.broadcastLocked()
}

// run is the sender: one request in flight, batches in sequence order.
func (p *Producer) run() {
	defer close(p.exited)
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for len(p.queue) == 0 {
			if p.closed {
				return
			}
			_ = p.waitLocked(context.Background())
		}
		b := p.queue[0]
		p.queue = p.queue[1:]
		p.mu.Unlock()
		res := p.send(b)
		if p.cfg.onResult != nil {
			p.cfg.onResult(res)
		}
		p.mu.Lock()
		p.done = b.seq
		p.buffered -= b.bytes
		if res.Err != nil {
			p.errs = append(p.errs, res.Err)
		}
		p.broadcastLocked()
	}
}

// send sends one batch with retries; every attempt carries the same
// sequence.
func (p *Producer) send(b *batch) SendResult {
	res := SendResult{Sequence: b.seq, FirstRow: b.firstRow, Rows: b.rows, Bytes: b.bytes}
	req := &stromv1.AppendRequest{
		Database:   p.database,
		Table:      p.table,
		Rows:       b.json,
		Durability: p.cfg.durability,
		WriterId:   p.writerID,
	}
	if p.writerID != "" {
		req.Sequence = b.seq
	}
	var err error
	if b.records != nil {
		req.ArrowIpc, err = encodeIPC(b.records)
		for _, r := range b.records {
			r.Release()
		}
		b.records = nil
	}
	if err == nil {
		res.Attempts, err = retry(p.ctx, *p.cfg.retry, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, p.cfg.requestTimeout)
			defer cancel()
			resp, err := p.client.write.Append(ctx, connect.NewRequest(req))
			if err != nil {
				return err
			}
			res.Offsets = resp.Msg.GetOffsets()
			return nil
		})
	}
	if err != nil {
		res.Offsets = nil
		res.Err = &BatchError{Sequence: b.seq, FirstRow: b.firstRow, Rows: b.rows, Attempts: res.Attempts, Err: err}
	}
	return res
}

// encodeIPC writes records with one schema as one Arrow IPC stream.
func encodeIPC(records []arrow.RecordBatch) ([]byte, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(records[0].Schema()))
	for _, r := range records {
		if err := w.Write(r); err != nil {
			return nil, fmt.Errorf("client: encode Arrow IPC: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("client: encode Arrow IPC: %w", err)
	}
	return buf.Bytes(), nil
}
