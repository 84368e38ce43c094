package batch

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
)

// DecodeIPC reads an Arrow IPC stream sent by a client for a table of schema
// s and returns its record batches, each with schema ArrowSchema(s) (so
// field nullability and the TIMESTAMP_LTZ time zone are the table's, not the
// client's). The caller releases every batch; on error none is returned and
// everything allocated from mem has been freed.
//
// The input is untrusted; DecodeIPC never panics and fails with:
//
//   - ErrTooLarge (wrapped) when len(data) > maxBytes, or when the decoded
//     buffers would occupy more than maxBytes of memory (only possible with
//     LZ4- or ZSTD-compressed bodies, which are accepted);
//   - ErrMalformed (wrapped) for bytes that are not an Arrow IPC stream (the
//     streaming format, not the file format), a truncated stream, bytes after
//     the end-of-stream marker, message metadata that is not a well-formed
//     flatbuffer (offsets or vectors beyond the metadata, fields nested more
//     than 64 deep, bodies beyond the input), or a batch that fails array.ValidateFull
//     (buffer sizes, offsets, UTF-8, null counts) or whose columns are longer
//     than the batch;
//   - a *SchemaError when the stream's schema does not pass CheckSchema;
//   - a *RowError for a null in a NOT NULL column or a value outside its
//     type's domain (see the package doc), Row counting across all batches
//     of the stream from zero.
//
// maxBytes must be positive. A stream without batches yields none.
// An error that is none of these means s is invalid.
func DecodeIPC(mem memory.Allocator, s catalog.Schema, data []byte, maxBytes int64) ([]arrow.RecordBatch, error) {
	recs, _, err := DecodeIPCVerbatim(mem, s, data, maxBytes)
	return recs, err
}

// DecodeIPCVerbatim is DecodeIPC, also reporting whether data is, as it
// is, the canonical encoding of its batches for the table: one record
// batch under exactly the schema ArrowSchema(s) (nullability and time zones
// included). Such bytes, once decoded and checked, can be stored and
// forwarded as they came (the WAL, a forwarded write) instead of being
// encoded again.
func DecodeIPCVerbatim(mem memory.Allocator, s catalog.Schema, data []byte, maxBytes int64) (_ []arrow.RecordBatch, verbatim bool, err error) {
	as, err := arrowSchema(s)
	if err != nil {
		return nil, false, err
	}
	if maxBytes <= 0 {
		return nil, false, fmt.Errorf("batch: DecodeIPC maxBytes %d must be positive", maxBytes)
	}
	if int64(len(data)) > maxBytes {
		return nil, false, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), maxBytes)
	}
	// arrow-go trusts the flatbuffer metadata (vector lengths, offsets,
	// nesting), and some of what that lets a client make it do cannot be
	// recovered from (allocating terabytes, endless recursion): check it all
	// before arrow-go sees it.
	if err := checkIPC(data, maxBytes); err != nil {
		return nil, false, err
	}
	lim := NewBudgetAllocator(mem, maxBytes)
	// classify turns a reader failure into ErrTooLarge if the allocation
	// budget caused it, else into ErrMalformed.
	classify := func(cause any) error {
		if lim.Exceeded() {
			return fmt.Errorf("%w: the decoded batches need more than %d bytes of memory", ErrTooLarge, maxBytes)
		}
		return fmt.Errorf("%w: %v", ErrMalformed, cause)
	}
	var recs []arrow.RecordBatch // released here unless returned
	var rdr *ipc.Reader
	defer func() {
		if p := recover(); p != nil {
			err = classify(p)
		}
		if err != nil {
			for _, r := range recs {
				r.Release()
			}
			if rdr != nil {
				rdr.Release()
				rdr = nil
			}
			lim.FreeAll() // what arrow-go had in flight when it panicked
		}
	}()

	in := bytes.NewReader(data)
	limit := ipc.WithBodySizeLimit(int64(len(data)))
	mr := ipc.NewMessageReader(in, ipc.WithAllocator(lim), limit, ipc.WithMetadataSizeLimit(int64(len(data))))
	rdr, err = ipc.NewReaderFromMessageReader(mr, ipc.WithAllocator(lim))
	if err != nil { // the reader has released mr
		return nil, false, classify(err)
	}
	defer func() {
		if rdr != nil {
			rdr.Release()
		}
	}()
	if err := CheckSchema(s, rdr.Schema()); err != nil {
		return nil, false, err
	}
	verbatim = rdr.Schema().Equal(as)
	checks := make([]valueCheck, len(s.Columns))
	for i, c := range s.Columns {
		checks[i] = newValueCheck(c)
	}
	row := 0
	for rdr.Next() {
		rec := rdr.RecordBatch()
		if err := array.ValidateRecordFull(rec); err != nil {
			return nil, false, classify(err)
		}
		n := int(rec.NumRows())
		for i := range s.Columns {
			col := rec.Column(i)
			if col.Len() != n {
				return nil, false, classify(fmt.Sprintf("column %q has %d values in a batch of %d rows", s.Columns[i].Name, col.Len(), n))
			}
			if r, reason := checks[i].check(col); reason != "" {
				return nil, false, &RowError{Row: row + r, Column: s.Columns[i].Name, Reason: reason}
			}
		}
		cols := make([]arrow.Array, len(s.Columns))
		var retyped []arrow.Array
		for i := range cols {
			cols[i] = rec.Column(i)
			if !arrow.TypeEqual(cols[i].DataType(), as.Field(i).Type) { // TIMESTAMP_LTZ in another zone
				cols[i] = retype(cols[i], as.Field(i).Type)
				retyped = append(retyped, cols[i])
			}
		}
		recs = append(recs, array.NewRecordBatch(as, cols, int64(n)))
		for _, a := range retyped {
			a.Release()
		}
		row += n
	}
	if err := rdr.Err(); err != nil {
		return nil, false, classify(err)
	}
	if in.Len() > 0 {
		return nil, false, classify(fmt.Sprintf("%d bytes after the end-of-stream marker", in.Len()))
	}
	return recs, verbatim && len(recs) == 1, nil
}

// retype returns col's data viewed as type dt (same layout); the caller
// releases it.
func retype(col arrow.Array, dt arrow.DataType) arrow.Array {
	d := col.Data()
	nd := array.NewData(dt, d.Len(), d.Buffers(), d.Children(), d.NullN(), d.Offset())
	defer nd.Release()
	return array.MakeFromData(nd)
}

// valueCheck checks that a decoded column holds only values FromJSON could
// have produced for its column.
type valueCheck struct {
	col  catalog.Column
	spec tsSpec
}

func newValueCheck(c catalog.Column) valueCheck {
	v := valueCheck{col: c}
	if c.Type.IsTimestamp() {
		v.spec = tsSpec{unit: timestampUnit(c.Type.Precision), precision: c.Type.Precision, ltz: c.Type.Kind == catalog.KindTimestampLTZ}
	}
	return v
}

// check returns the first row of a (validated) array that breaks its
// column's rules, with the reason.
func (v valueCheck) check(a arrow.Array) (int, string) {
	if !v.col.Nullable && a.NullN() > 0 {
		for r := 0; r < a.Len(); r++ {
			if a.IsNull(r) {
				return r, "null value; the column is NOT NULL"
			}
		}
	}
	t := v.col.Type
	switch a := a.(type) {
	case *array.Decimal128:
		for r := 0; r < a.Len(); r++ {
			if a.IsValid(r) && !a.Value(r).FitsInPrecision(t.Precision) {
				return r, fmt.Sprintf("want %s, got %s: more than %d digits",
					t, formatDecimal(nil, a.Value(r), t.Scale), t.Precision)
			}
		}
	case *array.Date32:
		for r := 0; r < a.Len(); r++ {
			if a.IsValid(r) && !dateInDomain(int64(a.Value(r))) {
				return r, fmt.Sprintf("want DATE, got %d days from 1970-01-01: outside 0000-01-01 .. 9999-12-31", a.Value(r))
			}
		}
	case *array.Time64:
		for r := 0; r < a.Len(); r++ {
			if us := int64(a.Value(r)); a.IsValid(r) && (us < 0 || us >= microsPerDay) {
				return r, fmt.Sprintf("want TIME, got %d microseconds: outside 00:00:00 .. 23:59:59.999999", us)
			}
		}
	case *array.Timestamp:
		for r := 0; r < a.Len(); r++ {
			if ts := int64(a.Value(r)); a.IsValid(r) && !timestampInDomain(ts, v.spec) {
				return r, fmt.Sprintf("want %s, got %d (%s): outside years 0000..9999 or more fractional digits than %d",
					t, ts, a.DataType(), t.Precision)
			}
		}
	}
	return 0, ""
}

// EncodeIPC writes record batches as one Arrow IPC stream (schema message,
// the batches, end-of-stream marker), for responses. Every batch must have
// schema (field names, types, nullability and metadata); opts are passed to
// ipc.NewWriter, e.g. ipc.WithLZ4() or ipc.WithZstd() to compress bodies, or
// ipc.WithAllocator. With no batches the stream holds only the schema.
func EncodeIPC(schema *arrow.Schema, recs []arrow.RecordBatch, opts ...ipc.Option) ([]byte, error) {
	return AppendIPC(nil, schema, recs, opts...)
}

// AppendIPC is EncodeIPC appending the stream to dst, whose spare capacity
// it uses: a caller that encodes one stream after another reuses one
// buffer instead of growing a new one each time.
func AppendIPC(dst []byte, schema *arrow.Schema, recs []arrow.RecordBatch, opts ...ipc.Option) ([]byte, error) {
	if schema == nil {
		return nil, errors.New("batch: EncodeIPC needs a schema")
	}
	// Sized once: growing a buffer of many MiB by doubling copies it over
	// and over (most of the cost of encoding a large read's response).
	size := 1 << 10
	for _, rec := range recs {
		for _, c := range rec.Columns() {
			for _, b := range c.Data().Buffers() {
				if b != nil {
					size += b.Len() + 8
				}
			}
		}
		size += 512 + 64*int(rec.NumCols())
	}
	if cap(dst)-len(dst) < size {
		dst = append(make([]byte, 0, len(dst)+size), dst...)
	}
	buf := bytes.NewBuffer(dst)
	w := ipc.NewWriter(buf, append(opts, ipc.WithSchema(schema))...)
	for i, rec := range recs {
		if !rec.Schema().Equal(schema) {
			w.Close()
			return nil, fmt.Errorf("batch: EncodeIPC: batch %d has schema %s, want %s", i, rec.Schema(), schema)
		}
		if err := w.Write(rec); err != nil {
			w.Close()
			return nil, fmt.Errorf("batch: EncodeIPC: batch %d: %w", i, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("batch: EncodeIPC: %w", err)
	}
	return buf.Bytes(), nil
}
