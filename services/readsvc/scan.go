package readsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/rpcerr"
	"github.com/strom-io/strom/tiering/lake"
)

// MaxScanPageSize is the most rows of one page of Scan or ScanStream, and
// the page size when a request names none.
const MaxScanPageSize = 10000

// Kinds of scans (ScanInfo.Kind).
const (
	ScanKV       = "kv"        // a primary-key table's current rows, from its KV index
	ScanUnionLog = "union_log" // a log table's records from the lake and the stream
	ScanUnionPK  = "union_pk"  // a primary-key table's rows from the lake and the changelog
)

// ScanInfo describes one Scan or ScanStream call when it ends (OnScan).
type ScanInfo struct {
	Kind   string // ScanKV, ScanUnionLog or ScanUnionPK; "" when the request was refused
	Stream bool   // ScanStream, not Scan
	Rows   int64  // rows sent
	Pages  int64  // pages (responses or messages) sent
	// HeldRows is the most rows the scan held at once: those of the page
	// it was filling and of the batch of the stream, the lake or the KV
	// index it was cutting into pages. A page holds at most its page size.
	HeldRows int64
	// TailKeys is, for ScanUnionPK, the most keys of one bucket's
	// changelog tail it held to merge the lake's rows by key.
	TailKeys int64
	Err      error
}

// Option configures a Service.
type Option func(*Service)

// OnScan sets a function called when each Scan or ScanStream call ends,
// for metrics.
func OnScan(fn func(ScanInfo)) Option { return func(s *Service) { s.onScan = fn } }

// errPageSent stops a Scan after its one page.
var errPageSent = errors.New("readsvc: page sent")

// errCannotContinue: a page token's scan cannot go on as of its fixed
// offsets: the lake expired its snapshot, or retention deleted the
// changelog after it.
var errCannotContinue = errors.New("page_token: the scan cannot continue as of its offsets")

// Scan implements ReadService: one page of a scan (scanPages).
func (s *Service) Scan(ctx context.Context, req *connect.Request[stromv1.ScanRequest]) (*connect.Response[stromv1.ScanResponse], error) {
	var out *stromv1.ScanResponse
	err := s.scanPages(ctx, req.Msg, false, func(page *stromv1.ScanResponse) error {
		out = page
		return errPageSent
	})
	if err != nil && !errors.Is(err, errPageSent) {
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// ScanStream implements ReadService: every page of a scan (scanPages),
// one message each.
func (s *Service) ScanStream(ctx context.Context, req *connect.Request[stromv1.ScanStreamRequest], stream *connect.ServerStream[stromv1.ScanStreamResponse]) error {
	m := req.Msg.GetScan()
	if m == nil {
		return rpcerr.Invalid("scan: required")
	}
	if err := requireTable("scan.", m.GetDatabase(), m.GetTable()); err != nil {
		return err
	}
	return s.scanPages(ctx, m, true, func(page *stromv1.ScanResponse) error {
		return stream.Send(&stromv1.ScanStreamResponse{Page: page})
	})
}

// scanPages runs the scan m asks for, from its page_token on, and hands
// its pages to send, each with the token of the next when rows follow it:
// a primary-key table's current rows from the KV index (scanKV), or with
// union the table from the lake and the stream (scanUnion). It stops when
// send fails and returns that error. Its errors are Connect errors.
func (s *Service) scanPages(ctx context.Context, m *stromv1.ScanRequest, stream bool, send func(*stromv1.ScanResponse) error) (err error) {
	info := ScanInfo{Stream: stream}
	var p *pager
	defer func() {
		if p != nil {
			info.Rows, info.Pages, info.HeldRows = p.sent, p.pages, p.held
		}
		if !errors.Is(err, errPageSent) {
			info.Err = err
		}
		if s.onScan != nil {
			s.onScan(info)
		}
	}()
	if err := requireTable("", m.GetDatabase(), m.GetTable()); err != nil {
		return err
	}
	var t catalog.Table
	if m.GetUnion() {
		t, err = s.tables.GetTable(ctx, m.GetDatabase(), m.GetTable())
	} else {
		t, err = s.primaryKeyTable(ctx, m.GetDatabase(), m.GetTable(), "scan")
	}
	if err != nil {
		return rpcerr.Connect(ctx, s.logger, "scan", err)
	}
	if m.GetLimit() < 0 {
		return rpcerr.Invalid("limit: must not be negative")
	}
	size := int64(m.GetPageSize())
	switch {
	case size < 0:
		return rpcerr.Invalid("page_size: must not be negative")
	case size > MaxScanPageSize:
		return rpcerr.Invalid(fmt.Sprintf("page_size: %d is more than the most, %d; read more rows with more pages", size, MaxScanPageSize))
	case size == 0:
		size = MaxScanPageSize
	}
	var cur *cursor
	if m.GetPageToken() != "" {
		if cur, err = decodeCursor(m.GetPageToken()); err != nil {
			return rpcerr.Invalid(err.Error())
		}
		if err := cur.check(t, m); err != nil {
			return rpcerr.Invalid(err.Error())
		}
	}
	var done int64
	if cur != nil {
		done = cur.Done
	}
	left := int64(-1)
	if m.GetLimit() > 0 {
		left = max(m.GetLimit()-done, 0)
	}
	base := cursor{Table: t.ID, Union: m.GetUnion(), Columns: m.GetColumns(), Limit: m.GetLimit()}
	p = &pager{size: size, left: left, send: send, done0: done}
	defer p.release()
	if m.GetUnion() {
		info.Kind = ScanUnionLog
		if t.IsPrimaryKey() {
			info.Kind = ScanUnionPK
		}
		var keys int64
		keys, err = s.scanUnion(ctx, t, m, base, cur, p)
		info.TailKeys = keys
	} else {
		info.Kind = ScanKV
		err = s.scanKV(ctx, t, m, base, cur, p)
	}
	switch {
	case err == nil, errors.Is(err, errPageSent):
		return err
	case errors.Is(err, lake.ErrForeignTable):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, lake.ErrSnapshotGone):
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%w: %w; start the scan again without a page_token", errCannotContinue, err))
	case errors.Is(err, errCannotContinue):
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%w; start the scan again without a page_token", err))
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return connect.NewError(connect.CodeCanceled, err)
	}
	return rpcerr.Connect(ctx, s.logger, "scan", err)
}

// scanKV pages through the current rows of primary-key table t from its
// KV index: bucket by bucket (partition, then bucket number), each in key
// order, read in pieces of at most a page, each piece from one consistent
// snapshot of its bucket.
func (s *Service) scanKV(ctx context.Context, t catalog.Table, m *stromv1.ScanRequest, base cursor, cur *cursor, p *pager) error {
	if err := checkColumns(t, batch.ArrowSchema(t.Schema), m.GetColumns()); err != nil {
		return err
	}
	ids, err := s.bucketIDs(ctx, t)
	if err != nil {
		return err
	}
	slices.SortFunc(ids, catalog.BucketID.Compare)
	first, after := 0, []byte(nil)
	if cur != nil {
		at := catalog.BucketID{TableID: t.ID, Partition: cur.Partition, Bucket: cur.Bucket}
		first, _ = slices.BinarySearchFunc(ids, at, catalog.BucketID.Compare)
		if first < len(ids) && ids[first] == at {
			after = cur.After
		}
	}
	p.encode = kvPageEncoder{s: s, t: t, columns: m.GetColumns(), format: m.GetFormat()}.encode
	p.token = func(next position) cursor {
		c := base
		c.Partition, c.Bucket, c.After = ids[next.bucket].Partition, ids[next.bucket].Bucket, next.key
		return c
	}
	for i := first; i < len(ids) && !p.done(); i++ {
		for !p.done() {
			rows, last, more, err := s.kv.Scan(ctx, t, ids[i], after, int(p.room()))
			if err != nil {
				return err
			}
			if len(rows) > 0 {
				bucket, key := i, last
				p.holding = int64(len(rows))
				err := p.add(ctx, rowChunk(rows), func(int64) position { return position{bucket: bucket, key: key} })
				p.holding = 0
				if err != nil {
					return err
				}
			}
			after = last
			if !more {
				break
			}
			// Rows follow in this bucket: a full page need not wait for
			// the next piece (a Scan reads one page, not two).
			if err := p.flushFull(ctx); err != nil {
				return err
			}
		}
		after = nil
	}
	return p.finish(ctx)
}

// kvPageEncoder encodes pages of KV rows.
type kvPageEncoder struct {
	s       *Service
	t       catalog.Table
	columns []string
	format  stromv1.Format
}

func (e kvPageEncoder) encode(chunks []pageChunk) (*stromv1.ScanResponse, error) {
	var rows []kv.Row
	for _, c := range chunks {
		rows = append(rows, c.(rowChunk)...)
	}
	out := &stromv1.ScanResponse{}
	var err error
	out.Rows, out.ArrowIpc, err = e.s.encodeRows(e.t, rows, e.columns, e.format)
	return out, err
}

// pageChunk is rows a page holds: a slice of a batch of Arrow rows or of
// KV rows.
type pageChunk interface {
	len() int64
	// slice returns rows [i, j); release both.
	slice(i, j int64) pageChunk
	release()
}

type arrowChunk struct{ rec arrow.RecordBatch }

func (c arrowChunk) len() int64 { return c.rec.NumRows() }
func (c arrowChunk) slice(i, j int64) pageChunk {
	if i == 0 && j == c.rec.NumRows() {
		c.rec.Retain()
		return c
	}
	return arrowChunk{c.rec.NewSlice(i, j)}
}
func (c arrowChunk) release() { c.rec.Release() }

type rowChunk []kv.Row

func (c rowChunk) len() int64                 { return int64(len(c)) }
func (c rowChunk) slice(i, j int64) pageChunk { return c[i:j] }
func (rowChunk) release()                     {}

// position is where a scan is: after a row it returned. bucket indexes
// the scan's buckets; the rest depends on the kind of scan.
type position struct {
	bucket int
	// key is the last key read of the bucket (ScanKV).
	key []byte
	// offset is the next offset of the bucket (ScanUnionLog), or the next
	// changelog offset of the tail (ScanUnionPK after its lake rows).
	offset int64
	// lake is the position in the bucket's lake rows (ScanUnionPK, while
	// it returns them), in snapshot snapshot.
	lake     *lake.RowsPos
	snapshot int64
}

// pager cuts the rows of a scan into pages of at most size rows and hands
// each to emit: a full page once a row after it arrives (so that a page
// with a next page token always has rows after it), the last one at
// finish. It holds one page.
type pager struct {
	size int64
	left int64 // rows the limit still allows; -1: no limit
	// encode makes a page of rows; token the cursor of a position (Done
	// is set by the pager); send sends a page.
	encode func(chunks []pageChunk) (*stromv1.ScanResponse, error)
	token  func(next position) cursor
	send   func(*stromv1.ScanResponse) error
	// done0 is the rows the scan returned before this call.
	done0 int64

	chunks []pageChunk
	n      int64    // rows in chunks
	last   position // after the last row of chunks

	// holding is the rows of the batch a source is adding; held the most
	// rows held at once (ScanInfo.HeldRows).
	holding, held int64
	sent, pages   int64
}

// done reports whether the limit is reached: the scan reads no more.
func (p *pager) done() bool { return p.left == 0 }

// room is how many rows the next add fills the page with (or, when the
// page is full, the next page).
func (p *pager) room() int64 {
	r := p.size - p.n
	if r == 0 {
		r = p.size
	}
	if p.left >= 0 {
		r = min(r, p.left)
	}
	return r
}

// add adds the rows of c, up to the limit; at(i) is the position after row
// i of c. The caller keeps its reference to c.
func (p *pager) add(ctx context.Context, c pageChunk, at func(int64) position) error {
	rows := c.len()
	p.held = max(p.held, p.n+max(p.holding, rows))
	for i := int64(0); i < rows && p.left != 0; {
		if p.n == p.size {
			next := p.last
			if err := p.flush(ctx, &next); err != nil {
				return err
			}
		}
		k := min(rows-i, p.size-p.n)
		if p.left > 0 {
			k = min(k, p.left)
			p.left -= k
		}
		p.chunks = append(p.chunks, c.slice(i, i+k))
		p.n += k
		i += k
		p.last = at(i - 1)
	}
	return nil
}

// flushFull sends the page if it is full and the limit allows more rows;
// the caller knows rows follow.
func (p *pager) flushFull(ctx context.Context) error {
	if p.n < p.size || p.done() {
		return nil
	}
	next := p.last
	return p.flush(ctx, &next)
}

// finish sends the last page: the rows held, or an empty page when no
// page was sent.
func (p *pager) finish(ctx context.Context) error {
	if p.n > 0 || p.pages == 0 {
		return p.flush(ctx, nil)
	}
	return nil
}

func (p *pager) flush(ctx context.Context, next *position) error {
	page, err := p.encode(p.chunks)
	for _, c := range p.chunks {
		c.release()
	}
	n := p.n
	p.chunks, p.n = p.chunks[:0], 0
	if err != nil {
		return err
	}
	if next != nil {
		c := p.token(*next)
		c.Done = p.done0 + p.sent + n
		if page.NextPageToken, err = c.encode(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = p.send(page)
	if err == nil || errors.Is(err, errPageSent) {
		p.pages++
		p.sent += n
	}
	return err
}

// release drops what the pager holds (after an error).
func (p *pager) release() {
	for _, c := range p.chunks {
		c.release()
	}
	p.chunks, p.n = nil, 0
}

// logScan logs the end of a union scan at debug level.
func (s *Service) logScan(ctx context.Context, t catalog.Table, attrs ...any) {
	s.logger.DebugContext(ctx, "union scan", append([]any{slog.String("table", t.Database+"."+t.Name)}, attrs...)...)
}
