package readsvc

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/tiering/lake"
)

// ColumnBucket is the system column of union rows that names the record's
// bucket (with ColumnOffset and ColumnTimestamp).
const ColumnBucket = "_bucket"

// unionSchema is the schema of union rows: the projected columns of full
// (all when columns is empty), then _bucket, _offset and _timestamp.
// full is the table's columns with the stream's Arrow types, for a
// primary-key table with or without the changelog's _change_type.
func unionSchema(t catalog.Table, full *arrow.Schema, columns []string) (*arrow.Schema, error) {
	if err := checkColumns(t, full, columns); err != nil {
		return nil, err
	}
	var fields []arrow.Field
	if len(columns) == 0 {
		fields = slices.Clone(full.Fields())
	}
	for _, c := range columns {
		fields = append(fields, full.Field(full.FieldIndices(c)[0]))
	}
	fields = append(fields,
		arrow.Field{Name: ColumnBucket, Type: arrow.PrimitiveTypes.Int32},
		arrow.Field{Name: ColumnOffset, Type: arrow.PrimitiveTypes.Int64},
		arrow.Field{Name: ColumnTimestamp, Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}})
	return arrow.NewSchema(fields, nil), nil
}

// unionRows collects union rows as batches of one schema, up to a limit.
type unionRows struct {
	mem    memory.Allocator
	schema *arrow.Schema
	recs   []arrow.RecordBatch
	n      int64
	limit  int64 // 0: no limit
}

func (u *unionRows) release() {
	for _, r := range u.recs {
		r.Release()
	}
	u.recs = nil
}

// add adds the rows of rec, cut to the limit (see conform). The caller
// keeps its reference to rec.
func (u *unionRows) add(ctx context.Context, rec arrow.RecordBatch) error {
	n := rec.NumRows()
	if u.limit > 0 {
		n = min(n, u.limit-u.n)
	}
	if n <= 0 {
		return nil
	}
	out, err := conform(ctx, u.mem, u.schema, rec, n)
	if err != nil {
		return err
	}
	u.recs = append(u.recs, out)
	u.n += n
	return nil
}

// conform returns the first n rows of rec as a batch of schema, a union
// schema: rec has columns of the table by name (with the stream's or the
// lake's Arrow types, in any order, more than schema's or fewer) and
// _bucket, _offset and _timestamp (see streamRows and lakeRows). Columns
// of schema that rec lacks are null, except a changelog's _change_type,
// which is "+I": rows without one are current rows. The caller keeps its
// reference to rec and releases the result.
func conform(ctx context.Context, mem memory.Allocator, schema *arrow.Schema, rec arrow.RecordBatch, n int64) (arrow.RecordBatch, error) {
	cols := make([]arrow.Array, 0, schema.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	for _, f := range schema.Fields() {
		idx := rec.Schema().FieldIndices(f.Name)
		switch {
		case len(idx) > 0:
			col, err := castTo(ctx, mem, array.NewSlice(rec.Column(idx[0]), 0, n), f.Type)
			if err != nil {
				return nil, fmt.Errorf("readsvc: column %q: %w", f.Name, err)
			}
			cols = append(cols, col)
		case f.Name == changelog.Column:
			b := array.NewStringBuilder(mem)
			for range n {
				b.Append(changelog.Insert.String())
			}
			cols = append(cols, b.NewArray())
			b.Release()
		default:
			cols = append(cols, array.MakeArrayOfNull(mem, f.Type, int(n)))
		}
	}
	return array.NewRecordBatch(schema, cols, n), nil
}

// castTo returns src as an array of type dst, and releases src: the lake
// widens TINYINT and SMALLINT to int32 and keeps timestamps in
// microseconds, where the stream has int8, int16 and the column's unit.
// A value that does not fit dst is an error, not a wrapped or truncated
// value. The result must be released.
func castTo(ctx context.Context, mem memory.Allocator, src arrow.Array, dst arrow.DataType) (arrow.Array, error) {
	if arrow.TypeEqual(src.DataType(), dst) {
		return src, nil
	}
	defer src.Release()
	return compute.CastToType(compute.WithAllocator(ctx, mem), src, dst)
}

// streamRows returns rec, a batch of the stream of one bucket whose first
// row has offset base and which was committed at ts, with _bucket,
// _offset and _timestamp appended. The result must be released.
func streamRows(mem memory.Allocator, rec arrow.RecordBatch, bucket int32, base int64, ts time.Time) arrow.RecordBatch {
	n := int(rec.NumRows())
	bb := array.NewInt32Builder(mem)
	ob := array.NewInt64Builder(mem)
	tb := array.NewTimestampBuilder(mem, &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"})
	defer bb.Release()
	defer ob.Release()
	defer tb.Release()
	bb.Reserve(n)
	ob.Reserve(n)
	tb.Reserve(n)
	us := arrow.Timestamp(ts.UnixMicro())
	for i := range n {
		bb.UnsafeAppend(bucket)
		ob.UnsafeAppend(base + int64(i))
		tb.UnsafeAppend(us)
	}
	system := []arrow.Array{bb.NewArray(), ob.NewArray(), tb.NewArray()}
	defer func() {
		for _, c := range system {
			c.Release()
		}
	}()
	fields := append(slices.Clone(rec.Schema().Fields()),
		arrow.Field{Name: ColumnBucket, Type: system[0].DataType()},
		arrow.Field{Name: ColumnOffset, Type: system[1].DataType()},
		arrow.Field{Name: ColumnTimestamp, Type: system[2].DataType()})
	cols := append(slices.Clone(rec.Columns()), system...)
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
}

// lakeRows returns rec, a batch of lake.Snapshot.Records or Rows, with the
// lake's system columns named as union rows name them, and releases rec.
// The result must be released.
func lakeRows(rec arrow.RecordBatch) arrow.RecordBatch {
	defer rec.Release()
	fields := slices.Clone(rec.Schema().Fields())
	for i := range fields {
		switch fields[i].Name {
		case lake.ColumnBucket:
			fields[i].Name = ColumnBucket
		case lake.ColumnOffset:
			fields[i].Name = ColumnOffset
		case lake.ColumnTimestamp:
			fields[i].Name = ColumnTimestamp
		}
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), rec.Columns(), rec.NumRows())
}

// filterRows returns the rows of rec where keep is true. The result must
// be released.
func filterRows(ctx context.Context, mem memory.Allocator, rec arrow.RecordBatch, keep []bool) (arrow.RecordBatch, error) {
	b := array.NewBooleanBuilder(mem)
	defer b.Release()
	b.AppendValues(keep, nil)
	mask := b.NewArray()
	defer mask.Release()
	return compute.FilterRecordBatch(compute.WithAllocator(ctx, mem), rec, mask, compute.DefaultFilterOptions())
}

// unionJSON returns union rows as JSON objects: the columns as Fetch
// writes them, plus _bucket, _offset and _timestamp (RFC 3339, UTC).
func unionJSON(recs []arrow.RecordBatch) ([]*structpb.Struct, error) {
	var out []*structpb.Struct
	for _, rec := range recs {
		ncols := int(rec.NumCols()) - 3
		sc := rec.Schema()
		cols := arrow.NewSchema(sc.Fields()[:ncols], nil)
		data := array.NewRecordBatch(cols, rec.Columns()[:ncols], rec.NumRows())
		rows, err := batch.ToJSON(data)
		data.Release()
		if err != nil {
			return nil, err
		}
		buckets := rec.Column(ncols).(*array.Int32)
		offsets := rec.Column(ncols + 1).(*array.Int64)
		stamps := rec.Column(ncols + 2).(*array.Timestamp)
		for i, row := range rows {
			row[ColumnBucket] = int64(buckets.Value(i))
			row[ColumnOffset] = offsets.Value(i)
			row[ColumnTimestamp] = time.UnixMicro(int64(stamps.Value(i))).UTC().Format(time.RFC3339Nano)
			st, err := structpb.NewStruct(row)
			if err != nil {
				return nil, fmt.Errorf("scan: row at offset %d: %w", offsets.Value(i), err)
			}
			out = append(out, st)
		}
	}
	return out, nil
}
