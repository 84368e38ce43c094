package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// progressMinBytes is the input file size from which produce shows a
// progress bar even when stderr is not a terminal.
const progressMinBytes = 4 << 20

// maxLineBytes bounds one JSON line.
const maxLineBytes = 64 << 20

func (g *globals) client() *client.Client {
	return client.New(g.baseURL(), client.WithHTTPClient(g.withToken(g.httpClient())))
}

func newProduceCommand(g *globals) *cobra.Command {
	var (
		format, durability string
		batchRows          int
	)
	cmd := &cobra.Command{
		Use:   "produce DATABASE.TABLE [FILE]",
		Short: "Append rows from JSON lines or CSV (a file or stdin) to a log table",
		Long: `Append rows to a log table. Input is JSON lines (one object per line, keyed
by column name) or, with --format csv, CSV whose header row names the columns
(values are sent as strings and converted by the server; an empty field is
null). Rows are sent in batches with idempotent retries; the command fails
with the line number of a bad line or the lines of a batch the server rejected.`,
		Example: `  strom produce shop.orders orders.jsonl
  echo '{"id": 1, "amount": "12.50"}' | strom produce shop.orders
  strom produce shop.orders orders.csv --format csv --durability wal`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, table, err := splitTableName(args[0])
			if err != nil {
				return err
			}
			var dur stromv1.Durability
			switch durability {
			case "durable":
				dur = stromv1.Durability_DURABILITY_DURABLE
			case "wal":
				dur = stromv1.Durability_DURABILITY_WAL
			default:
				return fmt.Errorf("--durability: want wal or durable, got %q", durability)
			}
			if format != "json" && format != "csv" {
				return fmt.Errorf("--format: want json or csv, got %q", format)
			}
			if batchRows < 1 {
				return fmt.Errorf("--batch-rows: want at least 1, got %d", batchRows)
			}
			in, size := io.Reader(cmd.InOrStdin()), int64(-1)
			name := "stdin"
			if len(args) == 2 && args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
					size = st.Size()
				}
				in, name = f, args[1]
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
			c := g.client()
			newProducer := func(opts ...client.ProducerOption) *client.Producer {
				return c.NewProducer(db, table, append(opts, client.WithBatchRows(batchRows), client.WithDurability(dur))...)
			}
			st, err := produce(cmd.Context(), newProducer, in, format)
			if bar != nil {
				_ = bar.Finish()
			}
			fmt.Fprintln(cmd.ErrOrStderr(), st.summary())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "json", "Input format: json (JSON lines) or csv (header row = column names).")
	f.IntVar(&batchRows, "batch-rows", client.DefaultBatchRows, "Most rows per request.")
	f.StringVar(&durability, "durability", "durable", "Acknowledge when the rows are in object storage (durable) or in the leader's WAL (wal).")
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

// produceStats counts what produce did.
type produceStats struct {
	rows, failed int64 // rows sent and rows in failed batches
	bytes        int64 // input bytes read
	elapsed      time.Duration
}

func (s produceStats) summary() string {
	secs := max(s.elapsed.Seconds(), 1e-9)
	msg := fmt.Sprintf("produced %d rows (%s) in %s: %.0f rows/s", s.rows-s.failed, formatBytes(s.bytes),
		s.elapsed.Round(time.Millisecond), float64(s.rows-s.failed)/secs)
	if s.failed > 0 {
		msg += fmt.Sprintf("; %d rows failed", s.failed)
	}
	return msg
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

// lineMap maps row numbers (from 0) to input line numbers (from 1). It
// stores only the rows where the distance between the two changes (after
// blank lines, or CSV fields spanning lines), so it stays small.
type lineMap struct {
	mu    sync.Mutex
	rows  []int64
	delta []int64
}

func (m *lineMap) add(row, line int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := line - row; len(m.delta) == 0 || m.delta[len(m.delta)-1] != d {
		m.rows = append(m.rows, row)
		m.delta = append(m.delta, d)
	}
}

func (m *lineMap) line(row int64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.rows), func(i int) bool { return m.rows[i] > row }) - 1
	if i < 0 {
		return row + 1
	}
	return row + m.delta[i]
}

// errStopped ends reading the input after a batch failed.
var errStopped = errors.New("stopped after a failed batch")

// produce sends every row of in through a producer made by newProducer,
// then closes it. It stops at the first bad line or failed batch, and names
// the input lines at fault.
func produce(ctx context.Context, newProducer func(...client.ProducerOption) *client.Producer, in io.Reader, format string) (produceStats, error) {
	start := time.Now()
	var (
		st     produceStats
		lines  lineMap
		failed atomic.Bool
	)
	p := newProducer(client.WithOnResult(func(r client.SendResult) {
		if r.Err != nil {
			failed.Store(true)
		}
	}))
	counter := &countingReader{r: in}
	send := func(line int64, row map[string]any) error {
		if failed.Load() {
			return errStopped
		}
		lines.add(st.rows, line)
		if err := p.Send(ctx, row); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		st.rows++
		return nil
	}
	var readErr error
	switch format {
	case "csv":
		readErr = readCSV(counter, send)
	default:
		readErr = readJSONLines(counter, send)
	}
	if errors.Is(readErr, errStopped) {
		readErr = nil // the batch error comes from Close
	}
	closeErr := p.Close(context.WithoutCancel(ctx))
	st.bytes = counter.n
	st.elapsed = time.Since(start)
	errs := []error{readErr}
	for _, e := range unwrapJoined(closeErr) {
		var be *client.BatchError
		if errors.As(e, &be) {
			st.failed += be.Rows
			e = fmt.Errorf("lines %d to %d: %w", lines.line(be.FirstRow), lines.line(be.FirstRow+be.Rows-1), be.Err)
		}
		errs = append(errs, e)
	}
	return st, errors.Join(errs...)
}

func unwrapJoined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
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

// readJSONLines calls send for every non-blank line, which must hold one
// JSON object.
func readJSONLines(in io.Reader, send func(line int64, row map[string]any) error) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	var line int64
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var row map[string]any
		if err := dec.Decode(&row); err != nil {
			return fmt.Errorf("line %d: invalid JSON: %w", line, err)
		}
		if row == nil {
			return fmt.Errorf("line %d: want a JSON object, got null", line)
		}
		if dec.More() {
			return fmt.Errorf("line %d: invalid JSON: more than one value on the line", line)
		}
		if err := send(line, row); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	return nil
}

// readCSV calls send for every record after the header; fields are strings,
// empty fields null.
func readCSV(in io.Reader, send func(line int64, row map[string]any) error) error {
	r := csv.NewReader(in)
	r.ReuseRecord = true
	header, err := r.Read()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return fmt.Errorf("CSV header: %w", err)
	}
	header = append([]string(nil), header...)
	for i, h := range header {
		if h == "" {
			return fmt.Errorf("line 1: CSV header: column %d has no name", i+1)
		}
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err // a *csv.ParseError names the line
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(header) {
			return fmt.Errorf("line %d: %d fields, want %d as in the header", line, len(rec), len(header))
		}
		row := make(map[string]any, len(rec))
		for i, v := range rec {
			if v == "" {
				row[header[i]] = nil
			} else {
				row[header[i]] = v
			}
		}
		if err := send(int64(line), row); err != nil {
			return err
		}
	}
}
