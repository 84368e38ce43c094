package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// ScanOption configures a Scanner.
type ScanOption func(*scanConfig)

type scanConfig struct {
	req   *stromv1.ScanRequest
	retry RetryPolicy
}

// ScanUnion reads the table as one from the lake and the stream, as of
// offsets fixed when the scan starts (ScanRequest.union): a log table's
// records, a primary-key table's current rows, with _bucket, _offset and
// _timestamp. Without it the scan reads a primary-key table's current
// rows from its KV index.
func ScanUnion() ScanOption { return func(c *scanConfig) { c.req.Union = true } }

// ScanColumns reads only the named columns; the default reads all.
func ScanColumns(columns ...string) ScanOption {
	return func(c *scanConfig) { c.req.Columns = columns }
}

// ScanLimit stops after n rows in all; the default (0) reads every row.
func ScanLimit(n int64) ScanOption { return func(c *scanConfig) { c.req.Limit = n } }

// ScanPageSize sets the rows per page (at most 10000, the default).
func ScanPageSize(n int32) ScanOption { return func(c *scanConfig) { c.req.PageSize = n } }

// ScanArrow asks for pages as Arrow IPC streams (ScanResponse.arrow_ipc)
// instead of JSON rows; Scanner.Rows then refuses to run, read Pages.
func ScanArrow() ScanOption {
	return func(c *scanConfig) { c.req.Format = stromv1.Format_FORMAT_ARROW }
}

// ScanFromToken continues a scan after the page whose next_page_token
// (Scanner.Token) this is. The other options must be those of the scan
// that made it.
func ScanFromToken(token string) ScanOption { return func(c *scanConfig) { c.req.PageToken = token } }

// WithScanRetry sets the retry policy for retryable errors of the stream;
// the default retries for up to 2 minutes.
func WithScanRetry(p RetryPolicy) ScanOption { return func(c *scanConfig) { c.retry = p } }

// Scanner reads a table with ReadService.ScanStream, one page at a time:
// the server holds one page, not the table.
//
// Resumption: a Scanner remembers the token after the last page it
// delivered (Token). A stream that fails with a retryable error is opened
// again from there, with backoff: no row is skipped or repeated, and a
// union scan keeps its fixed offsets. If Pages or Rows ends early (the
// loop breaks, the context ends, an error is yielded), calling it again
// continues from Token; a Scanner that read its last page yields nothing
// more (Done).
//
// Token and Done are safe for concurrent use; only one iteration may run
// at a time.
type Scanner struct {
	client *Client
	cfg    scanConfig

	mu      sync.Mutex
	token   string
	done    bool
	running bool
	// pending are the rows of the last page Rows has not yielded yet.
	pending []*structpb.Struct
}

// Scan prepares a Scanner of database.table; reading starts with Pages or
// Rows.
func (c *Client) Scan(database, table string, opts ...ScanOption) *Scanner {
	cfg := scanConfig{req: &stromv1.ScanRequest{Database: database, Table: table}}
	for _, opt := range opts {
		opt(&cfg)
	}
	cfg.retry = cfg.retry.withDefaults()
	return &Scanner{client: c, cfg: cfg, token: cfg.req.GetPageToken()}
}

// Token returns the token after the last page delivered: pass it to
// ScanFromToken to continue the scan elsewhere. Empty before the first
// page, and once the scan is done.
func (s *Scanner) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// Done reports whether the scan delivered its last page.
func (s *Scanner) Done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Pages returns an iterator over the scan's pages. It ends after the last
// page, or after yielding an error that is not retryable or outlasted the
// retry policy, or ctx's error.
func (s *Scanner) Pages(ctx context.Context) iter.Seq2[*stromv1.ScanResponse, error] {
	return func(yield func(*stromv1.ScanResponse, error) bool) {
		s.mu.Lock()
		if s.running {
			s.mu.Unlock()
			yield(nil, errors.New("client: Scanner is already running"))
			return
		}
		if s.done {
			s.mu.Unlock()
			return
		}
		s.running = true
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
		}()
		p := s.cfg.retry
		start := time.Now()
		for attempt := 1; ; attempt++ {
			progress, stop, err := s.stream(ctx, yield)
			if stop || err == nil {
				return
			}
			if progress {
				attempt, start = 1, time.Now()
			}
			if ctx.Err() != nil {
				yield(nil, errors.Join(ctx.Err(), err))
				return
			}
			wait := p.backoff(attempt)
			if !IsRetryable(err) || (p.MaxAttempts > 0 && attempt >= p.MaxAttempts) ||
				(p.MaxElapsed > 0 && time.Since(start)+wait > p.MaxElapsed) {
				yield(nil, fmt.Errorf("client: scan %s.%s: %w", s.cfg.req.GetDatabase(), s.cfg.req.GetTable(), err))
				return
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				yield(nil, errors.Join(ctx.Err(), err))
				return
			case <-t.C:
			}
		}
	}
}

// stream reads one ScanStream from the token on, yielding its pages. It
// reports whether it delivered a page, whether the caller stopped the
// iteration, and the stream's error (nil once the scan is done).
func (s *Scanner) stream(ctx context.Context, yield func(*stromv1.ScanResponse, error) bool) (progress, stop bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := proto.Clone(s.cfg.req).(*stromv1.ScanRequest)
	req.PageToken = s.Token()
	st, err := s.client.read.ScanStream(ctx, connect.NewRequest(&stromv1.ScanStreamRequest{Scan: req}))
	if err != nil {
		return false, false, err
	}
	defer st.Close()
	for st.Receive() {
		page := st.Msg().GetPage()
		s.mu.Lock()
		s.token = page.GetNextPageToken()
		s.done = s.token == ""
		s.mu.Unlock()
		progress = true
		if !yield(page, nil) {
			return progress, true, nil
		}
	}
	if err := st.Err(); err != nil {
		return progress, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		// The stream ended cleanly before its last page: a frontend
		// that stopped mid-scan. Continue from the token.
		return progress, false, connect.NewError(connect.CodeUnavailable, errors.New("client: the scan stream ended before its last page"))
	}
	return progress, false, nil
}

// Rows returns an iterator over the scan's rows as JSON objects
// (google.protobuf.Value.AsInterface: numbers are float64), page after
// page; see Pages. Called again after it ended early, it continues with
// the row after the last one it yielded. It refuses a scan of ScanArrow.
func (s *Scanner) Rows(ctx context.Context) iter.Seq2[map[string]any, error] {
	return func(yield func(map[string]any, error) bool) {
		if s.cfg.req.GetFormat() == stromv1.Format_FORMAT_ARROW {
			yield(nil, errors.New("client: Scanner.Rows reads JSON rows; a ScanArrow scan has Arrow pages: read Pages"))
			return
		}
		// The rest of the page an earlier iteration stopped in.
		if !s.yieldPending(yield) {
			return
		}
		for page, err := range s.Pages(ctx) {
			if err != nil {
				yield(nil, err)
				return
			}
			s.mu.Lock()
			s.pending = page.GetRows()
			s.mu.Unlock()
			if !s.yieldPending(yield) {
				return
			}
		}
	}
}

// yieldPending yields the pending rows; false when the caller stopped.
func (s *Scanner) yieldPending(yield func(map[string]any, error) bool) bool {
	for {
		s.mu.Lock()
		if len(s.pending) == 0 {
			s.mu.Unlock()
			return true
		}
		r := s.pending[0]
		s.pending = s.pending[1:]
		s.mu.Unlock()
		if !yield(r.AsMap(), nil) {
			return false
		}
	}
}
