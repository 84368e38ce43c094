package tiering

import (
	"fmt"
	"github.com/strom-io/strom/catalog/changelog"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestCollapse: the last change of a key wins; keys that may have a row in
// the lake (first change not +I) get a delete; -U changes nothing.
func TestCollapse(t *testing.T) {
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "k", Type: arrow.BinaryTypes.String},
		{Name: "v", Type: arrow.PrimitiveTypes.Int64},
		{Name: "__bucket", Type: arrow.PrimitiveTypes.Int32},
	}, nil)
	delSchema := arrow.NewSchema([]arrow.Field{
		{Name: "k", Type: arrow.BinaryTypes.String},
		{Name: "__bucket", Type: arrow.PrimitiveTypes.Int32},
	}, nil)
	// chunk builds a chunk of bucket b from "kind key=value" changes.
	chunk := func(b int, changes ...string) changeChunk {
		rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
		defer rb.Release()
		var kinds []changelog.Kind
		for _, c := range changes {
			var kind, k string
			var v int64
			if _, err := fmt.Sscanf(strings.Replace(c, "=", " ", 1), "%s %s %d", &kind, &k, &v); err != nil {
				t.Fatalf("bad change %q: %v", c, err)
			}
			ck, err := changelog.Parse(kind)
			if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, ck)
			rb.Field(0).(*array.StringBuilder).Append(k)
			rb.Field(1).(*array.Int64Builder).Append(v)
			rb.Field(2).(*array.Int32Builder).Append(int32(b))
		}
		return changeChunk{bucket: b, rec: rb.NewRecordBatch(), kinds: kinds}
	}
	for _, tc := range []struct {
		name        string
		chunks      []changeChunk
		rows, dels  []string // "key=value@bucket", "key@bucket", in chunk order
		nRows, nDel int64
	}{
		{
			name:   "inserts only",
			chunks: []changeChunk{chunk(0, "+I a=1", "+I b=2")},
			rows:   []string{"a=1@0", "b=2@0"},
		},
		{
			name:   "update of an earlier key",
			chunks: []changeChunk{chunk(0, "-U a=1", "+U a=2")},
			rows:   []string{"a=2@0"},
			dels:   []string{"a@0"},
		},
		{
			name:   "delete of an earlier key",
			chunks: []changeChunk{chunk(0, "-D a=1")},
			dels:   []string{"a@0"},
		},
		{
			name:   "insert, update, delete in one round",
			chunks: []changeChunk{chunk(0, "+I a=1", "-U a=1"), chunk(0, "+U a=2", "-D a=2")},
		},
		{
			name:   "delete and insert again",
			chunks: []changeChunk{chunk(0, "-D a=1", "+I a=5"), chunk(0, "-U a=5", "+U a=6")},
			rows:   []string{"a=6@0"},
			dels:   []string{"a@0"},
		},
		{
			name:   "the same key in two buckets is two keys",
			chunks: []changeChunk{chunk(0, "+I a=1"), chunk(1, "-U a=7", "+U a=8")},
			rows:   []string{"a=1@0", "a=8@1"},
			dels:   []string{"a@1"},
		},
		{
			name:   "last change wins across chunks",
			chunks: []changeChunk{chunk(0, "-U a=1", "+U a=2", "+I b=1"), chunk(0, "-U a=2", "+U a=3"), chunk(0, "-D b=1")},
			rows:   []string{"a=3@0"},
			dels:   []string{"a@0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, stats, err := collapse(t.Context(), tc.chunks, []int{0}, delSchema)
			if err != nil {
				t.Fatal(err)
			}
			var rows, dels []string
			for _, r := range d.Rows {
				for i := range int(r.NumRows()) {
					rows = append(rows, fmt.Sprintf("%s=%d@%d", r.Column(0).(*array.String).Value(i),
						r.Column(1).(*array.Int64).Value(i), r.Column(2).(*array.Int32).Value(i)))
				}
			}
			for _, r := range d.Deletes {
				if !r.Schema().Equal(delSchema) {
					t.Fatalf("delete schema %s", r.Schema())
				}
				for i := range int(r.NumRows()) {
					dels = append(dels, fmt.Sprintf("%s@%d", r.Column(0).(*array.String).Value(i), r.Column(1).(*array.Int32).Value(i)))
				}
			}
			if !slices.Equal(rows, tc.rows) || !slices.Equal(dels, tc.dels) {
				t.Fatalf("rows %v deletes %v; want %v and %v", rows, dels, tc.rows, tc.dels)
			}
			if stats.rows != int64(len(tc.rows)) || stats.deletes != int64(len(tc.dels)) {
				t.Fatalf("stats %+v", stats)
			}
		})
	}
}

func TestChangeKinds(t *testing.T) {
	sc := arrow.NewSchema([]arrow.Field{{Name: changelog.Column, Type: arrow.BinaryTypes.String}}, nil)
	rb := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer rb.Release()
	rb.Field(0).(*array.StringBuilder).AppendValues([]string{"+I", "-U", "+U", "-D", "??"}, nil)
	rec := rb.NewRecordBatch()
	defer rec.Release()
	got, err := changeKinds(rec, 0, 4)
	if err != nil || !slices.Equal(got, []changelog.Kind{changelog.Insert, changelog.UpdateBefore, changelog.UpdateAfter, changelog.Delete}) {
		t.Fatalf("changeKinds = %v, %v", got, err)
	}
	if _, err := changeKinds(rec, 1, 5); err == nil || !strings.Contains(err.Error(), `"??"`) {
		t.Fatalf("unknown change type: %v", err)
	}
	noCT := array.NewRecordBatch(arrow.NewSchema(nil, nil), nil, 0)
	if _, err := changeKinds(noCT, 0, 0); err == nil {
		t.Fatal("a batch without the change type column was accepted")
	}
}
