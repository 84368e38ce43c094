package readsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/writer"
)

// routeViaArrow is the bucket the writer routes row (values of t's
// columns) to: through an Arrow batch of kv.KeySchema(t), as Lookup did.
func routeViaArrow(t *testing.T, tbl catalog.Table, row kv.Row) (catalog.BucketID, error) {
	t.Helper()
	rec, err := kv.RowsToRecord(memory.DefaultAllocator, kv.KeySchema(tbl), []kv.Row{row})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	var r writer.Router
	parts, err := r.Route(memory.DefaultAllocator, tbl, rec, "", 0)
	if err != nil {
		return catalog.BucketID{}, err
	}
	for _, p := range parts {
		p.Record.Release()
	}
	return parts[0].Bucket, nil
}

// TestKeyBucketAsRoute: for keys of every column type, one column or two,
// and partitioned tables of every partition type, keyBucket gives the
// bucket and partition writer.Router.Route gives the same row as an Arrow
// batch, and Route's errors.
func TestKeyBucketAsRoute(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	types := []catalog.Type{
		{Kind: catalog.KindBoolean}, {Kind: catalog.KindTinyInt}, {Kind: catalog.KindSmallInt}, {Kind: catalog.KindInt}, catalog.BigInt,
		{Kind: catalog.KindFloat}, catalog.Double, {Kind: catalog.KindDecimal, Precision: 20, Scale: 3}, catalog.String,
		{Kind: catalog.KindBytes}, {Kind: catalog.KindDate}, {Kind: catalog.KindTime}, {Kind: catalog.KindTimestamp, Precision: 3},
		{Kind: catalog.KindTimestampLTZ, Precision: 9},
	}
	value := func(typ catalog.Type) any {
		n := rng.Int64N(2000) - 1000
		switch typ.Kind {
		case catalog.KindBoolean:
			return n%2 == 0
		case catalog.KindTinyInt:
			return n % 128
		case catalog.KindFloat:
			return float64(float32(n) / 3)
		case catalog.KindDouble:
			return float64(n) / 7
		case catalog.KindDecimal:
			return decimal128.FromI64(n * 1234567)
		case catalog.KindString:
			return fmt.Sprintf("k%d\x00é", n)
		case catalog.KindBytes:
			return []byte{byte(n), 0, byte(n >> 8)}
		case catalog.KindTime:
			return (n + 1000) * 1e6
		}
		return n
	}
	check := func(name string, tbl catalog.Table, row kv.Row) {
		t.Helper()
		want, werr := routeViaArrow(t, tbl, row)
		got, gerr := keyBucket(tbl, row)
		if fmt.Sprint(werr) != fmt.Sprint(gerr) || werr == nil && got != want {
			t.Fatalf("%s: row %v: keyBucket = %v, %v; Route = %v, %v", name, row, got, gerr, want, werr)
		}
	}
	for _, typ := range types {
		one := catalog.Table{ID: 3, TableSpec: catalog.TableSpec{Buckets: 7, Schema: catalog.Schema{
			Columns:    []catalog.Column{{Name: "k", Type: typ}, {Name: "v", Type: catalog.String, Nullable: true}},
			PrimaryKey: []string{"k"},
		}}}
		two := catalog.Table{ID: 4, TableSpec: catalog.TableSpec{Buckets: 5, Schema: catalog.Schema{
			Columns:    []catalog.Column{{Name: "a", Type: catalog.BigInt}, {Name: "k", Type: typ}},
			PrimaryKey: []string{"k", "a"},
		}}}
		for range 50 {
			check(typ.String(), one, kv.Row{value(typ), nil})
			check(typ.String()+" and BIGINT", two, kv.Row{value(catalog.BigInt), value(typ)})
		}
	}
	for _, typ := range []catalog.Type{catalog.String, {Kind: catalog.KindInt}, catalog.BigInt, {Kind: catalog.KindDate}} {
		tbl := catalog.Table{ID: 5, TableSpec: catalog.TableSpec{Buckets: 3, PartitionKey: "p", BucketKey: []string{"id"}, Schema: catalog.Schema{
			Columns:    []catalog.Column{{Name: "p", Type: typ}, {Name: "id", Type: catalog.BigInt}},
			PrimaryKey: []string{"p", "id"},
		}}}
		for range 50 {
			p := value(typ)
			if typ.Kind == catalog.KindDate {
				p = p.(int64) + 19000
			}
			check("partition "+typ.String(), tbl, kv.Row{p, value(catalog.BigInt)})
		}
		if typ.Kind == catalog.KindString {
			check("empty partition", tbl, kv.Row{"", int64(1)})
		}
	}
}

// lookupViaArrow answers req as Lookup did before it took values
// straight from JSON: keys through FromJSON, OpsFromRecord and the
// writer's router; rows through RowsToRecord, ToJSON and NewStruct.
func lookupViaArrow(t *testing.T, s *Service, req *stromv1.LookupRequest) (*stromv1.LookupResponse, error) {
	t.Helper()
	ctx := context.Background()
	tbl, err := s.primaryKeyTable(ctx, req.GetDatabase(), req.GetTable(), "lookup")
	if err != nil {
		t.Fatal(err)
	}
	maps := make([]map[string]any, len(req.GetKeys()))
	for i, k := range req.GetKeys() {
		maps[i] = k.AsMap()
	}
	rec, err := batch.FromJSON(memory.DefaultAllocator, kv.KeySchema(tbl), maps)
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	ops, err := kv.OpsFromRecord(tbl.Schema, rec, kv.OpDelete, nil)
	if err != nil {
		return nil, err
	}
	var rows []kv.Row
	for i, op := range ops {
		key := make(kv.Row, len(tbl.Schema.PrimaryKey))
		for j, c := range tbl.Schema.PrimaryKey {
			key[j] = op.Row[columnIndex(tbl.Schema, c)]
		}
		one := rec.NewSlice(int64(i), int64(i+1))
		var r writer.Router
		parts, err := r.Route(memory.DefaultAllocator, tbl, one, "", 0)
		one.Release()
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			p.Record.Release()
		}
		got, err := s.kv.Lookup(ctx, tbl, parts[0].Bucket, []kv.Row{key})
		if err != nil {
			return nil, err
		}
		if got[0] != nil {
			rows = append(rows, got[0])
		}
	}
	out := &stromv1.LookupResponse{}
	all, err := kv.RowsToRecord(memory.DefaultAllocator, tbl.Schema, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer all.Release()
	if req.GetFormat() == stromv1.Format_FORMAT_ARROW {
		out.ArrowIpc, err = batch.EncodeIPC(all.Schema(), []arrow.RecordBatch{all})
		return out, err
	}
	objs, err := batch.ToJSON(all)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		st, err := structpb.NewStruct(o)
		if err != nil {
			t.Fatal(err)
		}
		out.Rows = append(out.Rows, st)
	}
	return out, nil
}

// sameIPC reports whether two Arrow IPC streams hold equal batches.
func sameIPC(t *testing.T, a, b []byte) bool {
	t.Helper()
	ra, err := ipc.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Release()
	rb, err := ipc.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Release()
	for ra.Next() {
		if !rb.Next() || !array.RecordEqual(ra.RecordBatch(), rb.RecordBatch()) {
			return false
		}
	}
	return !rb.Next() && ra.Schema().Equal(rb.Schema())
}

// TestLookupAsArrow: Lookup answers what it answered through Arrow, rows
// and errors alike: keys of every kind of value (found and not, in both
// formats), and keys that are refused (a missing, null or mistyped key
// column, an unknown column, a bad value of another column) with the same
// message.
func TestLookupAsArrow(t *testing.T) {
	s := newLookupService(1000)
	ctx := context.Background()
	for _, f := range []stromv1.Format{stromv1.Format_FORMAT_JSON, stromv1.Format_FORMAT_ARROW} {
		req := &stromv1.LookupRequest{Database: "shop", Table: "items", Keys: lookupKeys(100), Format: f}
		want, err := lookupViaArrow(t, s, req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Lookup(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		if f == stromv1.Format_FORMAT_JSON && (len(got.Msg.GetRows()) != 90 || !proto.Equal(got.Msg, want)) {
			t.Fatalf("JSON: %d rows, through Arrow %d; first %v, through Arrow %v", len(got.Msg.GetRows()), len(want.GetRows()), got.Msg.GetRows()[0], want.GetRows()[0])
		}
		if f == stromv1.Format_FORMAT_ARROW && !sameIPC(t, got.Msg.GetArrowIpc(), want.GetArrowIpc()) {
			t.Fatal("Arrow: not the batches of the lookup through Arrow")
		}
	}
	for _, key := range []string{
		`{"region": "eu"}`,
		`{"region": "eu", "id": null}`,
		`{"region": "eu", "id": "x"}`,
		`{"region": "eu", "id": 1.5}`,
		`{"region": 7, "id": 1}`,
		`{"region": "eu", "id": 1, "nope": 2}`,
		`{"region": "eu", "id": 1, "Name": "x"}`,
		`{"region": "eu", "id": 1, "price": "1.234"}`,
		`{"region": "eu", "id": 1, "day": "2024-02-30"}`,
		`{"region": "eu", "id": 9007199254740993}`,
	} {
		k := &structpb.Struct{}
		if err := k.UnmarshalJSON([]byte(key)); err != nil {
			t.Fatal(err)
		}
		req := &stromv1.LookupRequest{Database: "shop", Table: "items", Keys: append(lookupKeys(3), k)}
		_, want := lookupViaArrow(t, s, req)
		_, got := s.Lookup(ctx, connect.NewRequest(req))
		var ce *connect.Error
		if want == nil || !errors.As(got, &ce) || ce.Code() != connect.CodeInvalidArgument || ce.Message() != want.Error() {
			t.Errorf("key %s: %v; through Arrow %v", key, got, want)
		}
	}
}
