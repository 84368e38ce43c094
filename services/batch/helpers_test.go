package batch_test

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
)

// checkedMem returns an allocator that fails the test if anything allocated
// from it is still live when the test ends.
func checkedMem(t testing.TB) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

// decodeRows decodes a JSON array of objects with UseNumber, as a server
// would.
func decodeRows(t testing.TB, text string) []map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.UseNumber()
	var rows []map[string]any
	if err := dec.Decode(&rows); err != nil {
		t.Fatalf("decode %s: %v", text, err)
	}
	return rows
}

// identical reports whether two batches hold the same schema and the same
// bits (floats compared bit for bit, every NaN equal to every NaN).
func identical(a, b arrow.RecordBatch) bool {
	if !a.Schema().Equal(b.Schema()) || a.NumRows() != b.NumRows() {
		return false
	}
	for i := range int(a.NumCols()) {
		ca, cb := a.Column(i), b.Column(i)
		switch x := ca.(type) {
		case *array.Float32:
			y := cb.(*array.Float32)
			for r := range x.Len() {
				if x.IsNull(r) != y.IsNull(r) {
					return false
				}
				if x.IsValid(r) && !sameFloat(float64(x.Value(r)), float64(y.Value(r))) {
					return false
				}
			}
		case *array.Float64:
			y := cb.(*array.Float64)
			for r := range x.Len() {
				if x.IsNull(r) != y.IsNull(r) {
					return false
				}
				if x.IsValid(r) && !sameFloat(x.Value(r), y.Value(r)) {
					return false
				}
			}
		default:
			if !array.Equal(ca, cb) {
				return false
			}
		}
	}
	return true
}

func sameFloat(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Float64bits(a) == math.Float64bits(b)
}

// allTypes is a schema with one nullable column of every type, plus a
// NOT NULL key.
var allTypes = catalog.Schema{
	Columns: []catalog.Column{
		{Name: "id", Type: catalog.BigInt},
		{Name: "b", Type: catalog.Boolean, Nullable: true},
		{Name: "i8", Type: catalog.TinyInt, Nullable: true},
		{Name: "i16", Type: catalog.SmallInt, Nullable: true},
		{Name: "i32", Type: catalog.Int, Nullable: true},
		{Name: "i64", Type: catalog.BigInt, Nullable: true},
		{Name: "f32", Type: catalog.Float, Nullable: true},
		{Name: "f64", Type: catalog.Double, Nullable: true},
		{Name: "dec", Type: catalog.Decimal(10, 2), Nullable: true},
		{Name: "s", Type: catalog.String, Nullable: true},
		{Name: "bin", Type: catalog.Bytes, Nullable: true},
		{Name: "d", Type: catalog.Date, Nullable: true},
		{Name: "t", Type: catalog.Time, Nullable: true},
		{Name: "ts", Type: catalog.Timestamp(6), Nullable: true},
		{Name: "ltz", Type: catalog.TimestampLTZ(3), Nullable: true},
	},
	PrimaryKey: []string{"id"},
}
