package readsvc

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/kv"
)

// lookupTable is a primary-key table of the lookup benchmark and tests:
// a two-column key of a string and a BIGINT, and a column of every other
// kind.
func lookupTable() catalog.Table {
	return catalog.Table{ID: 7, TableSpec: catalog.TableSpec{
		Database: "shop", Name: "items", Buckets: 4,
		Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "region", Type: catalog.String},
				{Name: "id", Type: catalog.BigInt},
				{Name: "name", Type: catalog.String, Nullable: true},
				{Name: "price", Type: catalog.Type{Kind: catalog.KindDecimal, Precision: 10, Scale: 2}, Nullable: true},
				{Name: "score", Type: catalog.Double, Nullable: true},
				{Name: "ratio", Type: catalog.Type{Kind: catalog.KindFloat}, Nullable: true},
				{Name: "small", Type: catalog.Type{Kind: catalog.KindTinyInt}, Nullable: true},
				{Name: "flag", Type: catalog.Type{Kind: catalog.KindBoolean}, Nullable: true},
				{Name: "day", Type: catalog.Type{Kind: catalog.KindDate}, Nullable: true},
				{Name: "at", Type: catalog.Type{Kind: catalog.KindTimestamp, Precision: 3}, Nullable: true},
				{Name: "blob", Type: catalog.Type{Kind: catalog.KindBytes}, Nullable: true},
			},
			PrimaryKey: []string{"region", "id"},
		},
	}}
}

// lookupRow is the row of key (region, id) of lookupTable.
func lookupRow(region string, id int64) kv.Row {
	row := kv.Row{region, id, fmt.Sprintf("item %d", id), decimal128.FromI64(id * 125), float64(id) / 3, float64(float32(id) / 7),
		id % 100, id%2 == 0, int64(19000 + id), time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id) * time.Millisecond).UnixMilli(), []byte{byte(id), 0, 0xff}}
	if id%5 == 0 {
		row[2], row[4], row[10] = nil, nil, nil
	}
	return row
}

// mapKV is a KV of the rows of lookupTable whose id is below n (in every
// region), answering Lookup from memory.
type mapKV struct{ n int64 }

func (m mapKV) Lookup(_ context.Context, t catalog.Table, _ catalog.BucketID, keys []kv.Row) ([]kv.Row, error) {
	out := make([]kv.Row, len(keys))
	for i, k := range keys {
		if id := k[1].(int64); id < m.n {
			out[i] = lookupRow(k[0].(string), id)
		}
	}
	return out, nil
}

func (mapKV) PrefixLookup(context.Context, catalog.Table, catalog.BucketID, []any) ([]kv.Row, error) {
	return nil, nil
}

func (mapKV) Scan(context.Context, catalog.Table, catalog.BucketID, []byte, int) ([]kv.Row, []byte, bool, error) {
	return nil, nil, false, nil
}

func (mapKV) Count(context.Context, catalog.Table, catalog.BucketID) (int64, error) { return 0, nil }

// oneTable is a catalog of one table.
type oneTable struct{ t catalog.Table }

func (o oneTable) GetTable(_ context.Context, db, name string) (catalog.Table, error) {
	if db != o.t.Database || name != o.t.Name {
		return catalog.Table{}, fmt.Errorf("%w: table %s.%s", catalog.ErrNotFound, db, name)
	}
	return o.t, nil
}

func (oneTable) ListBuckets(context.Context, int64) ([]catalog.BucketState, error) { return nil, nil }

func newLookupService(n int64) *Service {
	t := oneTable{lookupTable()}
	return New(t, t, nil, mapKV{n: n}, nil, slog.New(slog.DiscardHandler))
}

// lookupKeys returns n keys as JSON objects, every tenth one without a
// row (id past the table's).
func lookupKeys(n int) []*structpb.Struct {
	keys := make([]*structpb.Struct, n)
	for i := range keys {
		id := i * 3
		if i%10 == 9 {
			id = 1 << 20
		}
		keys[i], _ = structpb.NewStruct(map[string]any{"region": []string{"eu", "us"}[i%2], "id": id})
	}
	return keys
}

// BenchmarkLookup: Lookup of 100 keys (90 found) of a table of eleven
// columns of every kind, in JSON and in Arrow, against a KV in memory:
// the cost of decoding the keys, routing them to buckets and encoding the
// rows.
//
//	cd services && go test -run '^$' -bench BenchmarkLookup -benchmem ./readsvc/
func BenchmarkLookup(b *testing.B) {
	s := newLookupService(1000)
	ctx := context.Background()
	for _, f := range []stromv1.Format{stromv1.Format_FORMAT_JSON, stromv1.Format_FORMAT_ARROW} {
		b.Run(f.String(), func(b *testing.B) {
			req := connect.NewRequest(&stromv1.LookupRequest{Database: "shop", Table: "items", Keys: lookupKeys(100), Format: f})
			b.ReportAllocs()
			for b.Loop() {
				resp, err := s.Lookup(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if n := len(resp.Msg.GetRows()); f == stromv1.Format_FORMAT_JSON && n != 90 {
					b.Fatalf("%d rows, want 90", n)
				}
			}
		})
	}
}
