package kv

import (
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
	"github.com/strom-io/strom/services/batch"
)

// ChangelogSchema returns the Arrow schema of a changelog record of a table
// with schema s (package changelog): batch.ArrowSchema(s) followed by
// changelog.Column (utf8, not nullable).
func ChangelogSchema(s catalog.Schema) *arrow.Schema {
	fields := slices.Clone(batch.ArrowSchema(s).Fields())
	fields = append(fields, arrow.Field{Name: changelog.Column, Type: arrow.BinaryTypes.String})
	return arrow.NewSchema(fields, nil)
}

// RowsToRecord converts rows (valid rows of s, as Lookup returns them) to an
// Arrow record of schema batch.ArrowSchema(s). The caller releases it.
func RowsToRecord(mem memory.Allocator, s catalog.Schema, rows []Row) (arrow.RecordBatch, error) {
	rb := array.NewRecordBuilder(mem, batch.ArrowSchema(s))
	defer rb.Release()
	for r, row := range rows {
		if err := appendRow(rb, s, row); err != nil {
			return nil, fmt.Errorf("row %d: %w", r, err)
		}
	}
	return rb.NewRecordBatch(), nil
}

func appendRow(rb *array.RecordBuilder, s catalog.Schema, row Row) error {
	if len(row) != len(s.Columns) {
		return fmt.Errorf("%w: %d values for %d columns", ErrInvalidOp, len(row), len(s.Columns))
	}
	for i, v := range row {
		if v != nil {
			if why := checkValue(s.Columns[i].Type, v); why != "" {
				return fmt.Errorf("%w: column %q: %s", ErrInvalidOp, s.Columns[i].Name, why)
			}
		}
	}
	for i, v := range row {
		appendValue(rb.Field(i), v)
	}
	return nil
}

// appendValue appends a checked value (nil: NULL) to a builder of the
// column's Arrow type.
func appendValue(b array.Builder, v any) {
	if v == nil {
		b.AppendNull()
		return
	}
	switch b := b.(type) {
	case *array.BooleanBuilder:
		b.Append(v.(bool))
	case *array.Int8Builder:
		b.Append(int8(v.(int64)))
	case *array.Int16Builder:
		b.Append(int16(v.(int64)))
	case *array.Int32Builder:
		b.Append(int32(v.(int64)))
	case *array.Int64Builder:
		b.Append(v.(int64))
	case *array.Float32Builder:
		b.Append(float32(v.(float64)))
	case *array.Float64Builder:
		b.Append(v.(float64))
	case *array.Decimal128Builder:
		b.Append(v.(decimal128.Num))
	case *array.StringBuilder:
		b.Append(v.(string))
	case *array.BinaryBuilder:
		b.Append(v.([]byte))
	case *array.Date32Builder:
		b.Append(arrow.Date32(v.(int64)))
	case *array.Time64Builder:
		b.Append(arrow.Time64(v.(int64)))
	case *array.TimestampBuilder:
		b.Append(arrow.Timestamp(v.(int64)))
	default:
		panic(fmt.Sprintf("kv: unsupported builder %T", b))
	}
}

// valueAt returns row i of a column of one of the table Arrow types as a Row
// value (nil for NULL). Strings and bytes are copied.
func valueAt(a arrow.Array, i int) (any, error) {
	if a.IsNull(i) {
		return nil, nil
	}
	switch a := a.(type) {
	case *array.Boolean:
		return a.Value(i), nil
	case *array.Int8:
		return int64(a.Value(i)), nil
	case *array.Int16:
		return int64(a.Value(i)), nil
	case *array.Int32:
		return int64(a.Value(i)), nil
	case *array.Int64:
		return a.Value(i), nil
	case *array.Float32:
		return float64(a.Value(i)), nil
	case *array.Float64:
		return a.Value(i), nil
	case *array.Decimal128:
		return a.Value(i), nil
	case *array.String:
		return a.Value(i), nil
	case *array.Binary:
		return append([]byte{}, a.Value(i)...), nil
	case *array.Date32:
		return int64(a.Value(i)), nil
	case *array.Time64:
		return int64(a.Value(i)), nil
	case *array.Timestamp:
		return int64(a.Value(i)), nil
	}
	return nil, fmt.Errorf("%w: unsupported Arrow type %s", ErrInvalidOp, a.DataType())
}

// rowAt reads row i of the first n columns of rec.
func rowAt(rec arrow.RecordBatch, n, i int) (Row, error) {
	row := make(Row, n)
	for c := range n {
		v, err := valueAt(rec.Column(c), i)
		if err != nil {
			return nil, err
		}
		row[c] = v
	}
	return row, nil
}

// TargetColumns maps the column names of a partial update to column indexes
// of s. An unknown or repeated name is an error (wrapping ErrInvalidOp)
// naming it. A nil or empty names gives nil: a whole-row upsert.
func TargetColumns(s catalog.Schema, names []string) ([]int, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make([]int, 0, len(names))
	for _, n := range names {
		i := columnIndex(s, n)
		if i < 0 {
			return nil, fmt.Errorf("%w: target column %q is not a column of the table", ErrInvalidOp, n)
		}
		if slices.Contains(out, i) {
			return nil, fmt.Errorf("%w: target column %q appears twice", ErrInvalidOp, n)
		}
		out = append(out, i)
	}
	return out, nil
}

// OpsFromRecord turns each row of rec into an Op of the given kind with the
// given target columns (nil: whole rows). rec must have the table's columns
// (batch.CheckSchema(s, rec.Schema())), as DecodeIPC or FromJSON produce;
// for a partial update the non-target columns are ignored (send NULLs). The
// ops are checked by Prepare, not here.
func OpsFromRecord(s catalog.Schema, rec arrow.RecordBatch, kind OpKind, targetColumns []int) ([]Op, error) {
	if err := batch.CheckSchema(s, rec.Schema()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOp, err)
	}
	ops := make([]Op, rec.NumRows())
	for i := range ops {
		row, err := rowAt(rec, len(s.Columns), i)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		ops[i] = Op{Kind: kind, Row: row, TargetColumns: targetColumns}
	}
	return ops, nil
}
