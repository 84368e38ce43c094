package batch_test

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
)

// benchSchema has 10 columns of common types.
var benchSchema = catalog.Schema{Columns: []catalog.Column{
	{Name: "id", Type: catalog.BigInt},
	{Name: "user", Type: catalog.Int, Nullable: true},
	{Name: "flag", Type: catalog.Boolean, Nullable: true},
	{Name: "score", Type: catalog.Double, Nullable: true},
	{Name: "ratio", Type: catalog.Float, Nullable: true},
	{Name: "price", Type: catalog.Decimal(12, 2), Nullable: true},
	{Name: "name", Type: catalog.String, Nullable: true},
	{Name: "day", Type: catalog.Date, Nullable: true},
	{Name: "at", Type: catalog.TimestampLTZ(3), Nullable: true},
	{Name: "payload", Type: catalog.Bytes, Nullable: true},
}}

func benchRows(b *testing.B, n int) []map[string]any {
	text := "["
	for i := range n {
		if i > 0 {
			text += ","
		}
		text += fmt.Sprintf(`{"id": %d, "user": %d, "flag": %t, "score": %d.25, "ratio": 0.5, "price": "%d.99",
			"name": "user-%d", "day": "2024-05-01", "at": "2024-05-01T13:45:00.123+02:00", "payload": "AAECAw=="}`,
			i, i%1000, i%2 == 0, i, i, i)
	}
	return decodeRows(b, text+"]")
}

// BenchmarkFromJSON and BenchmarkToJSON convert 10k rows × 10 columns.
//
//	go test -run '^$' -bench 'JSON' -benchmem ./batch/
func BenchmarkFromJSON(b *testing.B) {
	rows := benchRows(b, 10_000)
	mem := memory.NewGoAllocator()
	b.ReportAllocs()
	for b.Loop() {
		rec, err := batch.FromJSON(mem, benchSchema, rows)
		if err != nil {
			b.Fatal(err)
		}
		rec.Release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}

func BenchmarkToJSON(b *testing.B) {
	rows := benchRows(b, 10_000)
	rec, err := batch.FromJSON(memory.NewGoAllocator(), benchSchema, rows)
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Release()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := batch.ToJSON(rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}
