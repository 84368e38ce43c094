package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/services/rpcerr"
)

// progressMinBytes is the input file size from which produce shows a
// progress bar even when stderr is not a terminal.
const progressMinBytes = 4 << 20

// maxLineBytes bounds one JSON line.
const maxLineBytes = 64 << 20

// produceBatchBytes ends a batch once its rows take this many input bytes
// (besides --batch-rows). Like --batch-rows it depends only on the input, so
// every run of a load cuts the same batches.
const produceBatchBytes = 1 << 20

func (g *globals) client() *client.Client {
	return client.New(g.baseURL(), client.WithHTTPClient(g.withToken(g.httpClient())))
}

const produceLong = `Append rows to a log table. Input is JSON lines (one object per line, keyed
by column name) or, with --format csv, CSV whose header row names the columns
(values are sent as strings and converted by the server; an empty field is
null). FILE '-' or no FILE reads stdin.

Loads are exact and resumable. Rows go in batches (--batch-rows rows, or
fewer once a batch holds 1 MiB of input), cut the same way on every run of
the same input. A batch is read and checked completely before it is sent,
and it is sent only after the server acknowledged the one before it, so at
the first failing batch (a bad line, a value the server refuses, retries
exhausted) the command stops with every line before that batch written and
nothing from it or after it. It exits 1 and prints which line or batch
failed, why, how many rows were written, and the line to resume from:
--from-line N skips the input's lines before N (blank lines and, for CSV,
the header count as lines).

Every batch carries an idempotent writer id and, as its sequence, the line
number of its first row. The writer id is --writer-id, or else derived from
the table, --format, --batch-rows and the content of FILE (which is read
twice: once to hash it); for stdin it is random and printed. The server
keeps, per bucket, the latest sequence of each writer: a batch sent again
is not written again (its bucket has that sequence, or a later one). Hence
with the same input, --format and --batch-rows:
  - re-running a load (from line 1, or from any line this command printed)
    writes nothing twice, also after a crash or kill at any moment; the rows
    it finds written are counted as "already written";
  - loading a file that was loaded completely before writes nothing: pass a
    new --writer-id to load the same rows again on purpose;
  - when resuming after fixing the failing line, pass the printed
    --writer-id (the fix changes the content, hence the derived id); lines
    before the resume line must stay as they were.
Lines skipped with --from-line may be taken as written by later runs with
the same writer id, and a writer id must never be reused for other rows
(they would be taken as already written). Do not run a load twice at once.`

func newProduceCommand(g *globals) *cobra.Command {
	var (
		format, durability, writerID string
		batchRows                    int
		fromLine                     int64
	)
	cmd := &cobra.Command{
		Use:   "produce DATABASE.TABLE [FILE]",
		Short: "Append rows from JSON lines or CSV (a file or stdin) to a log table, exactly once",
		Long:  produceLong,
		Example: `  strom produce shop.orders orders.jsonl
  echo '{"id": 1, "amount": "12.50"}' | strom produce shop.orders
  strom produce shop.orders orders.csv --format csv --durability wal
  strom produce shop.orders orders.jsonl --from-line 5001 --writer-id produce-5f0c…`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			cfg := produceConfig{database: db, table: table, format: format, batchRows: batchRows, fromLine: fromLine, writerID: writerID}
			switch durability {
			case "durable":
				cfg.durability = stromv1.Durability_DURABILITY_DURABLE
			case "wal":
				cfg.durability = stromv1.Durability_DURABILITY_WAL
			default:
				return fmt.Errorf("--durability: want wal or durable, got %q", durability)
			}
			if format != "json" && format != "csv" {
				return fmt.Errorf("--format: want json or csv, got %q", format)
			}
			if batchRows < 1 {
				return fmt.Errorf("--batch-rows: want at least 1, got %d", batchRows)
			}
			if fromLine < 1 {
				return fmt.Errorf("--from-line: want a line number from 1, got %d", fromLine)
			}
			in, size := io.Reader(cmd.InOrStdin()), int64(-1)
			name := "stdin"
			if len(args) == 2 && args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				st, err := f.Stat()
				if err != nil {
					return err
				}
				if st.Mode().IsRegular() {
					size = st.Size()
					if cfg.writerID == "" {
						if cfg.writerID, err = loadWriterID(cfg, f); err != nil {
							return fmt.Errorf("%s: %w", args[1], err)
						}
						if _, err := f.Seek(0, io.SeekStart); err != nil {
							return fmt.Errorf("%s: %w", args[1], err)
						}
					}
				}
				in, name = f, args[1]
			}
			if cfg.writerID == "" {
				// Not a file that can be hashed before it is sent.
				cfg.writerID = "produce-" + strings.ReplaceAll(uuid.NewString(), "-", "")
			}
			var bar *progressbar.ProgressBar
			if size > progressMinBytes || isTerminal(cmd.ErrOrStderr()) {
				bar = progressbar.NewOptions64(size,
					progressbar.OptionSetDescription("producing "+name),
					progressbar.OptionSetWriter(cmd.ErrOrStderr()),
					progressbar.OptionShowBytes(true),
					progressbar.OptionShowTotalBytes(true),
					progressbar.OptionSetWidth(20),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionSpinnerType(14),
					progressbar.OptionClearOnFinish(),
				)
				r := progressbar.NewReader(in, bar)
				in = &r
			}
			st, err := produce(cmd.Context(), g.client(), in, cfg)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), st.summary())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "json", "Input format: json (JSON lines) or csv (header row = column names).")
	f.IntVar(&batchRows, "batch-rows", client.DefaultBatchRows, "Most rows per request; keep it when re-running or resuming a load.")
	f.StringVar(&durability, "durability", "durable", "Acknowledge when the rows are in object storage (durable) or in the leader's WAL (wal).")
	f.Int64Var(&fromLine, "from-line", 1, "Skip the input's lines before this one (from 1): resume a load from the line a failed run printed.")
	f.StringVar(&writerID, "writer-id", "", "Idempotent writer id of the load (default: derived from the table, --format, --batch-rows and FILE's content; random for stdin). Resume with the one a failed run printed.")
	return cmd
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// produceConfig is one load.
type produceConfig struct {
	database, table string
	format          string // json or csv
	batchRows       int
	fromLine        int64 // first input line sent (from 1)
	writerID        string
	durability      stromv1.Durability
	retry           client.RetryPolicy // zero: the client's defaults
	requestTimeout  time.Duration      // per attempt; zero: client.DefaultRequestTimeout
	// afterBatch, if set, sees every batch's outcome before the next batch
	// is sent (tests use it to stop a load at a given batch).
	afterBatch func(batchOutcome)
}

// loadWriterID derives a load's writer id from everything that defines its
// batches and their sequences: the table, the format, the batch limits and
// the input's content.
func loadWriterID(cfg produceConfig, content io.Reader) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "strom produce v1\x00%s\x00%s\x00%s\x00%d\x00%d\x00", cfg.database, cfg.table, cfg.format, cfg.batchRows, produceBatchBytes)
	if _, err := io.Copy(h, content); err != nil {
		return "", fmt.Errorf("hashing the input for the writer id: %w", err)
	}
	return "produce-" + hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// rowBatch is one Append request. Batches are cut from the first row of
// the input on, whatever --from-line is, so a batch's sequence (the line of
// its first row) is the same on every run; rows before --from-line are left
// out of it.
type rowBatch struct {
	seq         int64 // line of the batch's first row: the request's sequence
	first, last int64 // lines of the first and last row sent
	rows        []*structpb.Struct
}

// batchOutcome is what became of one batch.
type batchOutcome struct {
	batch    *rowBatch
	written  int64 // rows written by this request
	already  int64 // rows an earlier request of the writer had written
	attempts int
	err      error // the batch failed: nothing after it is sent
}

// produceStats counts what produce did.
type produceStats struct {
	writerID    string
	written     int64 // rows written by this run
	already     int64 // rows found written by an earlier run of the load
	first, last int64 // lines of the first and last row produced; 0 if none
	fromLine    int64
	bytes       int64 // input bytes read
	elapsed     time.Duration
}

func (s *produceStats) add(o batchOutcome) {
	if s.first == 0 {
		s.first = o.batch.first
	}
	s.last = o.batch.last
	s.written += o.written
	s.already += o.already
}

func (s produceStats) rows() int64 { return s.written + s.already }

// lines says which lines the produced rows came from.
func (s produceStats) lines() string {
	if s.first == 0 {
		return "no lines"
	}
	if s.first == s.last {
		return fmt.Sprintf("line %d", s.first)
	}
	return fmt.Sprintf("lines %d–%d", s.first, s.last)
}

// alreadyNote explains rows found written, or is empty.
func (s produceStats) alreadyNote() string {
	if s.already == 0 {
		return ""
	}
	return fmt.Sprintf("; %d of them were already written by an earlier run of this load (writer id %s) and were not written again", s.already, s.writerID)
}

func (s produceStats) summary() string {
	secs := max(s.elapsed.Seconds(), 1e-9)
	return fmt.Sprintf("produced %s (%s) in %s (%s, %.0f rows/s)%s", plural(s.rows(), "row"), s.lines(),
		s.elapsed.Round(time.Millisecond), formatBytes(s.bytes), float64(s.rows())/secs, s.alreadyNote())
}

// produceError is a load that stopped at a failing batch or line. Every
// line before resume is written (by this run or an earlier one of the same
// writer id); nothing from it on was sent.
type produceError struct {
	where     string // the failing batch; empty when err names its line
	err       error
	ambiguous bool // the batch may or may not have been written
	stats     produceStats
	resume    int64
}

func (e *produceError) Error() string {
	var b strings.Builder
	if e.where != "" {
		fmt.Fprintf(&b, "%s: ", e.where)
	}
	fmt.Fprintf(&b, "%v\n", e.err)
	if e.ambiguous {
		b.WriteString("the batch may or may not have been written; resuming as below writes it exactly once\n")
	}
	if n := e.stats.rows(); n == 0 {
		b.WriteString("0 rows written")
	} else {
		fmt.Fprintf(&b, "%s written (%s)%s, nothing after them", plural(n, "row"), e.stats.lines(), e.stats.alreadyNote())
	}
	fmt.Fprintf(&b, "; resume with --from-line %d --writer-id %s", e.resume, e.stats.writerID)
	return b.String()
}

func (e *produceError) Unwrap() error { return e.err }

// produce sends the rows of in from cfg.fromLine on, batch after batch, each
// once the previous one is acknowledged, and stops at the first bad line or
// failed batch with a *produceError.
func produce(ctx context.Context, c *client.Client, in io.Reader, cfg produceConfig) (produceStats, error) {
	start := time.Now()
	st := produceStats{writerID: cfg.writerID, fromLine: cfg.fromLine}
	if cfg.requestTimeout <= 0 {
		cfg.requestTimeout = client.DefaultRequestTimeout
	}
	counter := &countingReader{r: in}
	var rr recordReader
	switch cfg.format {
	case "csv":
		rr = newCSVReader(counter)
	default:
		rr = newJSONReader(counter)
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	batches := make(chan batchItem, 1) // the next batch is read while one is in flight
	go readBatches(readCtx, rr, cfg, batches)

	var failure *produceError
	for it := range batches {
		if it.err != nil { // the error names its line
			failure = &produceError{err: it.err, resume: it.resume}
			break
		}
		o := sendBatch(ctx, c, cfg, it.batch)
		if cfg.afterBatch != nil {
			cfg.afterBatch(o)
		}
		if o.err != nil {
			failure = &produceError{where: batchName(it.batch), err: o.err, resume: it.batch.first, ambiguous: !notWritten(o.err)}
			break
		}
		st.add(o)
	}
	stopReading()
	for range batches { // wait for the reader to stop
	}
	if failure == nil && ctx.Err() != nil {
		// Interrupted while the reader waited: every batch sent was
		// acknowledged, the next starts after the last row produced.
		failure = &produceError{err: fmt.Errorf("interrupted: %w", ctx.Err()), resume: max(cfg.fromLine, st.last+1)}
	}
	st.bytes = counter.n
	st.elapsed = time.Since(start)
	if failure != nil {
		failure.stats = st
		return st, failure
	}
	return st, nil
}

// batchName names a batch by its lines and sequence.
func batchName(b *rowBatch) string {
	if b.first == b.last {
		return fmt.Sprintf("line %d (batch %d)", b.first, b.seq)
	}
	return fmt.Sprintf("lines %d–%d (batch %d)", b.first, b.last, b.seq)
}

// notWritten reports whether a failed Append certainly wrote nothing: the
// server answered that the request is wrong. After other failures (retries
// exhausted, interrupted) the outcome is unknown.
func notWritten(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodeFailedPrecondition,
		connect.CodePermissionDenied, connect.CodeUnauthenticated:
		var ce *connect.Error
		return errors.As(err, &ce) && connect.IsWireError(ce)
	}
	return false
}

// sendBatch appends one batch with retries; every attempt carries the same
// writer id and sequence, so the batch is written at most once.
func sendBatch(ctx context.Context, c *client.Client, cfg produceConfig, b *rowBatch) batchOutcome {
	o := batchOutcome{batch: b}
	req := &stromv1.AppendRequest{
		Database:   cfg.database,
		Table:      cfg.table,
		Rows:       b.rows,
		Durability: cfg.durability,
		WriterId:   cfg.writerID,
		Sequence:   b.seq,
	}
	var offsets []*stromv1.BucketOffsets
	attempts, err := client.Retry(ctx, cfg.retry, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.requestTimeout)
		defer cancel()
		resp, err := c.Write().Append(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		offsets = resp.Msg.GetOffsets()
		return nil
	})
	o.attempts = attempts
	n := int64(len(b.rows))
	switch {
	case err == nil:
		for _, off := range offsets {
			if !off.GetDuplicate() {
				o.written += off.GetCount()
			}
		}
		o.written = min(o.written, n)
		o.already = n - o.written
	case rpcerr.HasReason(err, rpcerr.ReasonStaleSequence):
		// The writer has written a later batch in one of the buckets:
		// batches go one after the other, so this one was written before.
		o.already = n
	case ctx.Err() != nil:
		o.err = fmt.Errorf("interrupted: %w", err)
	default:
		o.err = err
	}
	return o
}

// batchItem is what the reader hands the sender: a batch, or the error that
// ended the input, at line (0 if unknown), with the line to resume from.
type batchItem struct {
	batch        *rowBatch
	err          error
	line, resume int64
}

// readBatches cuts the input into batches and sends them to out, which it
// closes at the end. Rows are decoded only from cfg.fromLine on.
func readBatches(ctx context.Context, rr recordReader, cfg produceConfig, out chan<- batchItem) {
	defer close(out)
	put := func(it batchItem) bool {
		select {
		case out <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var (
		cur      *rowBatch
		rows     int
		size     int64
		lastLine int64 // of the last record read
	)
	fail := func(line int64, err error) {
		resume := max(cfg.fromLine, lastLine+1)
		if cur != nil && cur.first != 0 {
			resume = cur.first
		} else if line > 0 {
			resume = max(cfg.fromLine, line)
		}
		put(batchItem{err: err, line: line, resume: resume})
	}
	for {
		line, n, err := rr.next()
		if err == io.EOF {
			if cur != nil && len(cur.rows) > 0 {
				put(batchItem{batch: cur})
			}
			return
		}
		if err != nil {
			fail(errLine(err), err)
			return
		}
		lastLine = line
		if cur == nil {
			cur, rows, size = &rowBatch{seq: line}, 0, 0
		}
		rows++
		size += n
		if line >= cfg.fromLine {
			row, err := rr.row()
			var s *structpb.Struct
			if err == nil {
				if s, err = client.NewRow(row); err != nil {
					err = fmt.Errorf("line %d: %w", line, err)
				}
			}
			if err != nil {
				fail(line, err)
				return
			}
			if cur.first == 0 {
				cur.first = line
			}
			cur.last = line
			cur.rows = append(cur.rows, s)
		}
		if rows >= cfg.batchRows || size >= produceBatchBytes {
			if len(cur.rows) > 0 && !put(batchItem{batch: cur}) {
				return
			}
			cur = nil
		}
	}
}

// lineError is an input error at a known line.
type lineError struct {
	line int64
	err  error
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e *lineError) Unwrap() error { return e.err }

// errLine returns the line an input error names, or 0.
func errLine(err error) int64 {
	var le *lineError
	if errors.As(err, &le) {
		return le.line
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return int64(pe.StartLine)
	}
	return 0
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// recordReader reads input rows one at a time.
type recordReader interface {
	// next advances to the next row and returns the line it starts on and
	// the input bytes it takes, or io.EOF after the last row.
	next() (line, size int64, err error)
	// row decodes the current row (not done by next, so that skipped
	// lines cost no decoding).
	row() (map[string]any, error)
}

// jsonReader reads JSON lines: every non-blank line holds one object.
type jsonReader struct {
	sc   *bufio.Scanner
	line int64
	cur  []byte
}

func newJSONReader(in io.Reader) *jsonReader {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	return &jsonReader{sc: sc}
}

func (r *jsonReader) next() (int64, int64, error) {
	for r.sc.Scan() {
		r.line++
		raw := r.sc.Bytes()
		if b := bytes.TrimSpace(raw); len(b) > 0 {
			r.cur = b
			return r.line, int64(len(raw)) + 1, nil
		}
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("longer than %d MiB", maxLineBytes>>20)
		}
		return 0, 0, &lineError{line: r.line + 1, err: err}
	}
	return 0, 0, io.EOF
}

func (r *jsonReader) row() (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(r.cur))
	dec.UseNumber()
	var row map[string]any
	if err := dec.Decode(&row); err != nil {
		return nil, fmt.Errorf("line %d: invalid JSON: %w", r.line, err)
	}
	if row == nil {
		return nil, fmt.Errorf("line %d: want a JSON object, got null", r.line)
	}
	if dec.More() {
		return nil, fmt.Errorf("line %d: invalid JSON: more than one value on the line", r.line)
	}
	return row, nil
}

// csvReader reads CSV whose first record, the header, names the columns;
// fields are strings, empty fields null.
type csvReader struct {
	r       *csv.Reader
	header  []string
	started bool
	eof     bool
	rec     []string
	line    int64
}

func newCSVReader(in io.Reader) *csvReader {
	r := csv.NewReader(in)
	r.ReuseRecord = true
	r.FieldsPerRecord = -1 // checked in row, for the rows sent
	return &csvReader{r: r}
}

func (c *csvReader) next() (int64, int64, error) {
	if !c.started {
		c.started = true
		header, err := c.r.Read()
		if err == io.EOF {
			c.eof = true
		} else if err != nil {
			return 0, 0, fmt.Errorf("CSV header: %w", err)
		}
		c.header = append([]string(nil), header...)
		for i, h := range c.header {
			if h == "" {
				return 0, 0, &lineError{line: 1, err: fmt.Errorf("CSV header: column %d has no name", i+1)}
			}
		}
	}
	if c.eof {
		return 0, 0, io.EOF
	}
	before := c.r.InputOffset()
	rec, err := c.r.Read()
	if err == io.EOF {
		c.eof = true
		return 0, 0, io.EOF
	}
	if err != nil {
		return 0, 0, err // a *csv.ParseError names the line
	}
	line, _ := c.r.FieldPos(0)
	c.rec, c.line = rec, int64(line)
	return c.line, c.r.InputOffset() - before, nil
}

func (c *csvReader) row() (map[string]any, error) {
	if len(c.rec) != len(c.header) {
		return nil, fmt.Errorf("line %d: %d fields, want %d as in the header", c.line, len(c.rec), len(c.header))
	}
	row := make(map[string]any, len(c.rec))
	for i, v := range c.rec {
		if v == "" {
			row[c.header[i]] = nil
		} else {
			row[c.header[i]] = v
		}
	}
	return row, nil
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// plural is "1 row", "2 rows".
func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
