package segment_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/segment"
)

var ctx = context.Background()

func TestRoundTrip(t *testing.T) {
	for _, codec := range []segment.Codec{segment.CodecZstd, segment.CodecLZ4, segment.CodecNone} {
		t.Run(codec.String(), func(t *testing.T) {
			wmem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			// Given out of object order on purpose.
			secs := []segment.Section{
				makeSection(t, wmem, allTypes, 7, "2025-03-01", 2, codec, 100, 3, 50),
				makeSection(t, wmem, allTypes, 3, "", 0, codec, 0, 2, 17),
				makeSection(t, wmem, allTypes, 7, "2025-03-01", 1, codec, 5, 4, 1),
				makeSection(t, wmem, allTypes, 7, "2025-02-28", 9, codec, 1000, 1, 200),
			}
			obj, infos := encode(t, secs)
			defer func() { releaseSections(secs); wmem.AssertSize(t, 0) }()

			metas, err := segment.DecodeObjectFooter(obj)
			if err != nil {
				t.Fatalf("DecodeObjectFooter: %v", err)
			}
			if len(metas) != len(secs) || len(infos) != len(secs) {
				t.Fatalf("got %d metas, %d infos, want %d", len(metas), len(infos), len(secs))
			}
			// Object order: (3,"",0), (7,"2025-02-28",9), (7,"2025-03-01",1), (7,"2025-03-01",2).
			wantOrder := []int{1, 3, 2, 0}
			for k, i := range wantOrder {
				m, in := metas[k], infos[i]
				if m.TableID != in.TableID || m.Partition != in.Partition || m.Bucket != in.Bucket ||
					m.ByteOffset != in.ByteOffset || m.ByteLength != in.ByteLength ||
					m.BaseOffset != in.BaseOffset || m.EndOffset != in.EndOffset || m.RowCount != in.RowCount ||
					!m.MinTimestamp.Equal(in.MinTimestamp) || !m.MaxTimestamp.Equal(in.MaxTimestamp) {
					t.Errorf("footer section %d = %+v, info = %+v", k, m, in)
				}
			}

			r := &memReader{data: obj}
			for i, sec := range secs {
				in := infos[i]
				if in.TableID != sec.TableID || in.Partition != sec.Partition || in.Bucket != sec.Bucket {
					t.Fatalf("info %d is for another section: %+v", i, in)
				}
				last := sec.Batches[len(sec.Batches)-1]
				if in.BaseOffset != sec.Batches[0].BaseOffset || in.EndOffset != last.BaseOffset+last.Record.NumRows() ||
					in.RowCount != in.EndOffset-in.BaseOffset {
					t.Errorf("info %d offsets: %+v", i, in)
				}
				if !in.MinTimestamp.Equal(t0) || !in.MaxTimestamp.Equal(last.Timestamp) {
					t.Errorf("info %d timestamps %v..%v", i, in.MinTimestamp, in.MaxTimestamp)
				}
				sr := in.SegmentRange("seg/x", 4)
				if sr.ByteOffset != in.ByteOffset || sr.ByteLength != in.ByteLength || sr.Bucket.Bucket != sec.Bucket || sr.Epoch != 4 {
					t.Errorf("SegmentRange: %+v", sr)
				}

				idx, err := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
				if err != nil {
					t.Fatalf("DecodeSectionIndex: %v", err)
				}
				if idx.Codec != codec || idx.TableID != sec.TableID || idx.Partition != sec.Partition || idx.Bucket != sec.Bucket {
					t.Errorf("index header: %+v", idx)
				}

				rmem := memory.NewCheckedAllocator(memory.DefaultAllocator)
				got, _, err := segment.ReadSection(ctx, r, "k", in.ByteOffset, in.ByteLength,
					segment.ReadOptions{Schema: allTypes, Allocator: rmem})
				if err != nil {
					t.Fatalf("ReadSection: %v", err)
				}
				if len(got) != len(sec.Batches) {
					t.Fatalf("got %d batches, want %d", len(got), len(sec.Batches))
				}
				for j, b := range got {
					want := sec.Batches[j]
					if b.BaseOffset != want.BaseOffset || !b.Timestamp.Equal(want.Timestamp) || b.SchemaVersion != 1 {
						t.Errorf("batch %d: offset %d ts %v", j, b.BaseOffset, b.Timestamp)
					}
					if !b.Record.Schema().Equal(allTypes) {
						t.Errorf("batch %d schema %v", j, b.Record.Schema())
					}
					if !array.RecordEqual(b.Record, want.Record) {
						t.Errorf("batch %d differs:\n got %v\nwant %v", j, b.Record, want.Record)
					}
				}
				releaseBatches(got)
				rmem.AssertSize(t, 0)
			}
		})
	}
}

// TestChunkIsStandaloneArrowIPC reads every chunk the encoder writes, of
// every column type, codec, with and without nulls, and of sliced records
// (which take arrow-go's writer), with stock arrow-go's ipc.NewReader: the
// values must be those written.
func TestChunkIsStandaloneArrowIPC(t *testing.T) {
	for _, codec := range []segment.Codec{segment.CodecZstd, segment.CodecLZ4, segment.CodecNone} {
		for _, rows := range []int{1, 4, 30, 5000} { // rows < 5: no nulls (every 5th row is null)
			t.Run(fmt.Sprintf("%s/%d", codec, rows), func(t *testing.T) { checkChunksStandalone(t, codec, rows, false) })
		}
		t.Run(codec.String()+"/sliced", func(t *testing.T) { checkChunksStandalone(t, codec, 40, true) })
	}
}

func checkChunksStandalone(t *testing.T, codec segment.Codec, rows int, sliced bool) {
	mem := memory.NewGoAllocator()
	secs := []segment.Section{makeSection(t, mem, allTypes, 1, "", 0, codec, 0, 2, rows)}
	if sliced {
		off := int64(0)
		for i, b := range secs[0].Batches {
			s := b.Record.NewSlice(3, b.Record.NumRows()-1)
			b.Record.Release()
			secs[0].Batches[i].Record, secs[0].Batches[i].BaseOffset = s, off
			off += s.NumRows()
		}
	}
	defer releaseSections(secs)
	obj, infos := encode(t, secs)
	in := infos[0]
	idx, err := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
	if err != nil {
		t.Fatal(err)
	}
	for bi, b := range idx.Batches {
		for ci, c := range b.Columns {
			chunk := obj[in.ByteOffset+c.Offset : in.ByteOffset+c.Offset+c.Length]
			// Stock arrow-go, nothing from package segment.
			rdr, err := ipc.NewReader(bytes.NewReader(chunk))
			if err != nil {
				t.Fatalf("batch %d column %q: ipc.NewReader: %v", bi, c.Name, err)
			}
			if !rdr.Next() {
				t.Fatalf("batch %d column %q: no record: %v", bi, c.Name, rdr.Err())
			}
			rec := rdr.RecordBatch()
			want := secs[0].Batches[bi].Record.Column(ci)
			if rec.NumCols() != 1 || rec.ColumnName(0) != c.Name || !array.Equal(rec.Column(0), want) {
				t.Errorf("batch %d column %q: got %v want %v", bi, c.Name, rec.Column(0), want)
			}
			if rdr.Next() || rdr.Err() != nil {
				t.Errorf("batch %d column %q: extra record or error %v", bi, c.Name, rdr.Err())
			}
			rdr.Release()
		}
	}
}

// wideSchema has n int64 columns c00.. and n/2 string columns.
func wideRecord(t testing.TB, mem memory.Allocator, rows, ints, strs int, seed int) arrow.RecordBatch {
	var fields []arrow.Field
	for i := 0; i < ints; i++ {
		fields = append(fields, arrow.Field{Name: "i" + itoa(i), Type: arrow.PrimitiveTypes.Int64, Nullable: true})
	}
	for i := 0; i < strs; i++ {
		fields = append(fields, arrow.Field{Name: "s" + itoa(i), Type: arrow.BinaryTypes.String, Nullable: true})
	}
	return makeRecord(t, mem, arrow.NewSchema(fields, nil), rows, seed)
}

func itoa(i int) string { return string([]byte{byte('0' + i/10), byte('0' + i%10)}) }

func TestProjectionFetchesOnlyItsChunks(t *testing.T) {
	mem := memory.NewGoAllocator()
	var sec segment.Section
	for i := 0; i < 3; i++ {
		rec := wideRecord(t, mem, 5000, 10, 10, i)
		sec.Batches = append(sec.Batches, segment.Batch{BaseOffset: int64(i * 5000), Timestamp: t0, Record: rec})
	}
	secs := []segment.Section{sec}
	defer releaseSections(secs)
	obj, infos := encode(t, secs)
	in := infos[0]
	idx, err := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
	if err != nil {
		t.Fatal(err)
	}
	r := &memReader{data: obj}
	read := func(cols []string, gap int64) segment.ReadStats {
		t.Helper()
		got, st, err := segment.ReadSection(ctx, r, "k", in.ByteOffset, in.ByteLength,
			segment.ReadOptions{Columns: cols, TailSize: 1, CoalesceGap: gap})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("got %d batches", len(got))
		}
		for i, b := range got {
			want := projectRecord(sec.Batches[i].Record, cols...)
			if !array.RecordEqual(b.Record, want) {
				t.Errorf("batch %d: projection differs", i)
			}
			want.Release()
		}
		releaseBatches(got)
		return st
	}
	var all []string
	for _, f := range sec.Batches[0].Record.Schema().Fields() {
		all = append(all, f.Name)
	}
	one := read([]string{"i03"}, -1)
	var chunks int64
	for _, b := range idx.Batches {
		c, _ := b.Column("i03")
		chunks += c.Length
	}
	wantIndex := in.ByteLength - idx.IndexOffset
	if one.IndexBytes != wantIndex || one.ChunkBytes != chunks || one.BytesFetched != wantIndex+chunks {
		t.Errorf("1 column: stats %+v, want index %d + chunks %d", one, wantIndex, chunks)
	}
	if one.Gets != 2+3 { // trailer, index, one chunk per batch
		t.Errorf("1 column without coalescing: %d GETs, want 5", one.Gets)
	}
	full := read(all, -1)
	t.Logf("1 of 20 columns: %d bytes in %d GETs; all: %d bytes in %d GETs; section %d bytes",
		one.BytesFetched, one.Gets, full.BytesFetched, full.Gets, in.ByteLength)
	if one.BytesFetched*10 > full.BytesFetched {
		t.Errorf("1 column fetched %d bytes, all 20 %d: want < 1/10", one.BytesFetched, full.BytesFetched)
	}
	if full.BytesFetched != in.ByteLength {
		t.Errorf("all columns fetched %d bytes, section is %d", full.BytesFetched, in.ByteLength)
	}

	// Coalescing: all columns are contiguous, so one GET for all chunks.
	co := read(all, segment.DefaultCoalesceGap)
	if co.Gets != 3 || full.Gets != 2+60 {
		t.Errorf("GETs: coalesced %d (want 3), uncoalesced %d (want 62)", co.Gets, full.Gets)
	}
	// Chunks are stored column by column: the chunks of i00 in the three
	// batches are contiguous, so are those of i01, and the two columns are
	// neighbours: one GET for both, whatever the number of batches.
	adjacent := read([]string{"i00", "i01"}, segment.DefaultCoalesceGap)
	if adjacent.Gets != 2+1 {
		t.Errorf("2 adjacent columns of 3 batches: %d GETs, want 3 (trailer, index, one range)", adjacent.Gets)
	}
	// i00 and i02 lie i01's three chunks (~40 KB) apart: one GET each.
	two := read([]string{"i00", "i02"}, segment.DefaultCoalesceGap)
	twoApart := read([]string{"i00", "i02"}, -1)
	if two.Gets != 2+2 || twoApart.Gets != 2+6 || two.ChunkBytes != twoApart.ChunkBytes {
		t.Errorf("2 columns of 3 batches: %+v coalesced, %+v not", two, twoApart)
	}
	// Default tail: a section under 64 KiB comes in one GET.
	_, st, err := segment.ReadSection(ctx, r, "k", in.ByteOffset, in.ByteLength, segment.ReadOptions{Columns: []string{"i00"}, TailSize: in.ByteLength})
	if err != nil {
		t.Fatal(err)
	}
	if st.Gets != 1 {
		t.Errorf("tail covering the section: %d GETs, want 1", st.Gets)
	}
}

func TestFromOffsetAndMaxBytes(t *testing.T) {
	mem := memory.NewGoAllocator()
	s := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}}, nil)
	sec := segment.Section{TableID: 1, Codec: segment.CodecNone}
	for i := 0; i < 4; i++ { // batches [10,20) [20,30) [30,40) [40,50)
		sec.Batches = append(sec.Batches, segment.Batch{BaseOffset: int64(10 + 10*i), Timestamp: t0, Record: makeRecord(t, mem, s, 10, i)})
	}
	secs := []segment.Section{sec}
	defer releaseSections(secs)
	obj, infos := encode(t, secs)
	r := &memReader{data: obj}
	in := infos[0]
	bases := func(opts segment.ReadOptions) []int64 {
		t.Helper()
		got, _, err := segment.ReadSection(ctx, r, "k", in.ByteOffset, in.ByteLength, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer releaseBatches(got)
		var out []int64
		for _, b := range got {
			out = append(out, b.BaseOffset)
		}
		return out
	}
	for _, tc := range []struct {
		from, maxBytes int64
		want           []int64
	}{
		{0, 0, []int64{10, 20, 30, 40}},
		{19, 0, []int64{10, 20, 30, 40}},
		{20, 0, []int64{20, 30, 40}},
		{35, 0, []int64{30, 40}},
		{49, 0, []int64{40}},
		{50, 0, nil},
		{1000, 0, nil},
		{20, 1, []int64{20}}, // at least one batch
		{0, 1e9, []int64{10, 20, 30, 40}},
	} {
		got := bases(segment.ReadOptions{FromOffset: tc.from, MaxBytes: tc.maxBytes})
		if !equalInts(got, tc.want) {
			t.Errorf("FromOffset %d MaxBytes %d: batches %v, want %v", tc.from, tc.maxBytes, got, tc.want)
		}
	}
	// MaxBytes of exactly two chunks returns two batches.
	idx, _ := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
	two := idx.Batches[0].Columns[0].Length + idx.Batches[1].Columns[0].Length
	if got := bases(segment.ReadOptions{MaxBytes: two}); !equalInts(got, []int64{10, 20}) {
		t.Errorf("MaxBytes %d: %v", two, got)
	}
	// One byte less is an upper bound the second batch would break.
	if got := bases(segment.ReadOptions{MaxBytes: two - 1}); !equalInts(got, []int64{10}) {
		t.Errorf("MaxBytes %d: %v, want [10]", two-1, got)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSchemaEvolution(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	v1 := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	v2 := arrow.NewSchema(append(v1.Fields(), arrow.Field{Name: "price", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true}), nil)
	r1 := makeRecord(t, mem, v1, 6, 1)
	r2 := makeRecord(t, mem, v2, 3, 2)
	secs := []segment.Section{{TableID: 1, Batches: []segment.Batch{
		{BaseOffset: 0, Timestamp: t0, SchemaVersion: 1, Record: r1},
		{BaseOffset: 6, Timestamp: t0.Add(time.Second), SchemaVersion: 2, Record: r2},
	}}}
	defer func() { releaseSections(secs); mem.AssertSize(t, 0) }()
	obj, infos := encode(t, secs)
	r := &memReader{data: obj}
	in := infos[0]
	rmem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	read := func(opts segment.ReadOptions) ([]segment.ReadBatch, error) {
		opts.Allocator = rmem
		got, _, err := segment.ReadSection(ctx, r, "k", in.ByteOffset, in.ByteLength, opts)
		return got, err
	}

	got, err := read(segment.ReadOptions{Schema: v2, Columns: []string{"price", "id"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := got[0].Record.Column(0).NullN(); n != 6 || got[0].Record.NumRows() != 6 {
		t.Errorf("old batch: price has %d nulls in %d rows, want all 6 null", n, got[0].Record.NumRows())
	}
	if got[0].SchemaVersion != 1 || got[1].SchemaVersion != 2 {
		t.Errorf("schema versions %d, %d", got[0].SchemaVersion, got[1].SchemaVersion)
	}
	if !array.Equal(got[1].Record.Column(0), r2.Column(2)) || !array.Equal(got[0].Record.Column(1), r1.Column(0)) {
		t.Errorf("values differ")
	}
	releaseBatches(got)
	rmem.AssertSize(t, 0)

	// Without a schema, each batch has its stored columns.
	got, err = read(segment.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Record.NumCols() != 2 || got[1].Record.NumCols() != 3 {
		t.Errorf("stored columns: %d, %d", got[0].Record.NumCols(), got[1].Record.NumCols())
	}
	releaseBatches(got)

	for _, tc := range []struct {
		name string
		opts segment.ReadOptions
		want error
	}{
		{"unknown column", segment.ReadOptions{Schema: v2, Columns: []string{"nope"}}, segment.ErrUnknownColumn},
		{"absent without schema", segment.ReadOptions{Columns: []string{"price"}}, segment.ErrUnknownColumn},
		{"duplicate", segment.ReadOptions{Schema: v2, Columns: []string{"id", "id"}}, segment.ErrInvalidOptions},
		{"not null added", segment.ReadOptions{Schema: arrow.NewSchema([]arrow.Field{{Name: "price", Type: v2.Field(2).Type}}, nil)}, segment.ErrSchemaMismatch},
		{"type changed", segment.ReadOptions{Schema: arrow.NewSchema([]arrow.Field{{Name: "name", Type: arrow.BinaryTypes.Binary, Nullable: true}}, nil)}, segment.ErrSchemaMismatch},
		{"nulls in not null", segment.ReadOptions{Schema: arrow.NewSchema([]arrow.Field{{Name: "name", Type: arrow.BinaryTypes.String}}, nil)}, segment.ErrSchemaMismatch},
	} {
		got, err := read(tc.opts)
		if !errors.Is(err, tc.want) || got != nil {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		t.Logf("%s: %v", tc.name, err)
		releaseBatches(got)
		if n := rmem.CurrentAlloc(); n != 0 {
			t.Errorf("%s: %d bytes still allocated", tc.name, n)
		}
	}
}

// MaxBytes ends a read also when the projection names only a column the
// batches lack (added to the schema after they were written): each such
// column counts as its validity bitmap, never as nothing.
func TestMaxBytesCountsMissingColumns(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	v1 := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}}, nil)
	v2 := arrow.NewSchema(append(v1.Fields(), arrow.Field{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true}), nil)
	// Batches [0,2) [2,3) [3,20) of v1, then [20,21) [21,23) of v2.
	sec := segment.Section{TableID: 1, Codec: segment.CodecNone}
	base := int64(0)
	for i, rows := range []int{2, 1, 17} {
		sec.Batches = append(sec.Batches, segment.Batch{BaseOffset: base, Timestamp: t0, SchemaVersion: 1, Record: makeRecord(t, mem, v1, rows, i)})
		base += int64(rows)
	}
	for i, rows := range []int{1, 2} {
		sec.Batches = append(sec.Batches, segment.Batch{BaseOffset: base, Timestamp: t0, SchemaVersion: 2, Record: makeRecord(t, mem, v2, rows, 10+i)})
		base += int64(rows)
	}
	secs := []segment.Section{sec}
	defer func() { releaseSections(secs); mem.AssertSize(t, 0) }()
	obj, infos := encode(t, secs)
	r := &memReader{data: obj}
	in := infos[0]
	idx, err := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
	if err != nil {
		t.Fatal(err)
	}
	noteBytes := func(i int) int64 {
		c, ok := idx.Batches[i].Column("note")
		if !ok {
			t.Fatalf("batch %d lacks note", i)
		}
		return c.Length
	}
	// What each batch counts projected to note: a bitmap byte per 8 rows
	// for the v1 batches, the stored chunk for the v2 ones.
	want := []int64{1, 1, 3, noteBytes(3), noteBytes(4)}
	for _, maxBytes := range []int64{1, 0} {
		var got [][2]int64 // base offset and Bytes of each batch read
		for from, n := int64(0), 0; from < base; n++ {
			if n == len(want) {
				t.Fatalf("MaxBytes %d: more reads than batches: %v", maxBytes, got)
			}
			bs, _, err := segment.ReadSection(ctx, r, "k", in.ByteOffset, in.ByteLength, segment.ReadOptions{
				Schema: v2, Columns: []string{"note"}, FromOffset: from, MaxBytes: maxBytes,
			})
			if err != nil {
				t.Fatal(err)
			}
			if maxBytes > 0 && len(bs) != 1 {
				t.Errorf("MaxBytes %d from %d: %d batches, want 1", maxBytes, from, len(bs))
			}
			for _, b := range bs {
				got = append(got, [2]int64{b.BaseOffset, b.Bytes})
				from = b.BaseOffset + b.Record.NumRows()
			}
			releaseBatches(bs)
		}
		wantPairs := [][2]int64{{0, want[0]}, {2, want[1]}, {3, want[2]}, {20, want[3]}, {21, want[4]}}
		if fmt.Sprint(got) != fmt.Sprint(wantPairs) {
			t.Errorf("MaxBytes %d: batches (base, bytes) %v, want %v", maxBytes, got, wantPairs)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	mem := memory.NewGoAllocator()
	s := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int64}}, nil)
	rec := makeRecord(t, mem, s, 3, 0)
	defer rec.Release()
	empty := makeRecord(t, mem, s, 0, 0)
	defer empty.Release()
	dupSchema := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int64}, {Name: "a", Type: arrow.PrimitiveTypes.Int64}}, nil)
	dup := array.NewRecordBatch(dupSchema, []arrow.Array{rec.Column(0), rec.Column(0)}, 3)
	defer dup.Release()
	b := func(off int64, r arrow.RecordBatch) segment.Batch {
		return segment.Batch{BaseOffset: off, Timestamp: t0, Record: r}
	}
	for _, tc := range []struct {
		name string
		secs []segment.Section
	}{
		{"no batches", []segment.Section{{TableID: 1}}},
		{"gap", []segment.Section{{TableID: 1, Batches: []segment.Batch{b(0, rec), b(4, rec)}}}},
		{"overlap", []segment.Section{{TableID: 1, Batches: []segment.Batch{b(0, rec), b(2, rec)}}}},
		{"negative offset", []segment.Section{{TableID: 1, Batches: []segment.Batch{b(-3, rec)}}}},
		{"empty batch", []segment.Section{{TableID: 1, Batches: []segment.Batch{b(0, empty)}}}},
		{"nil record", []segment.Section{{TableID: 1, Batches: []segment.Batch{b(0, nil)}}}},
		{"zero timestamp", []segment.Section{{TableID: 1, Batches: []segment.Batch{{Record: rec}}}}},
		{"duplicate column", []segment.Section{{TableID: 1, Batches: []segment.Batch{b(0, dup)}}}},
		{"bad codec", []segment.Section{{TableID: 1, Codec: 9, Batches: []segment.Batch{b(0, rec)}}}},
		{"duplicate section", []segment.Section{{TableID: 1, Batches: []segment.Batch{b(0, rec)}}, {TableID: 1, Batches: []segment.Batch{b(3, rec)}}}},
	} {
		_, _, err := segment.Encode(tc.secs)
		if !errors.Is(err, segment.ErrInvalidSection) {
			t.Errorf("%s: err %v, want ErrInvalidSection", tc.name, err)
		}
	}
}

func TestCorruption(t *testing.T) {
	mem := memory.NewGoAllocator()
	secs := []segment.Section{
		makeSection(t, mem, allTypes, 1, "", 0, segment.CodecZstd, 0, 2, 20),
		makeSection(t, mem, allTypes, 2, "", 0, segment.CodecLZ4, 0, 2, 20),
	}
	defer releaseSections(secs)
	obj, infos := encode(t, secs)
	in := infos[0]
	idx, err := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
	if err != nil {
		t.Fatal(err)
	}
	flip := func(pos int64) []byte {
		c := bytes.Clone(obj)
		c[pos] ^= 0x40
		return c
	}
	readErr := func(data []byte, off, length int64) error {
		got, _, err := segment.ReadSection(ctx, &memReader{data: data}, "k", off, length, segment.ReadOptions{Schema: allTypes})
		releaseBatches(got)
		return err
	}
	end := in.ByteOffset + in.ByteLength
	chunk := idx.Batches[1].Columns[3]
	for _, tc := range []struct {
		name        string
		data        []byte
		off, length int64
	}{
		{"index byte", flip(in.ByteOffset + idx.IndexOffset + 3), in.ByteOffset, in.ByteLength},
		{"index crc", flip(end - 1), in.ByteOffset, in.ByteLength},
		{"index length", flip(end - 6), in.ByteOffset, in.ByteLength},
		{"chunk byte", flip(in.ByteOffset + chunk.Offset + chunk.Length/2), in.ByteOffset, in.ByteLength},
		{"wrong range", obj, in.ByteOffset + 1, in.ByteLength - 1},
		{"truncated range", obj, in.ByteOffset, in.ByteLength - 1},
	} {
		if err := readErr(tc.data, tc.off, tc.length); !errors.Is(err, segment.ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", tc.name, err)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}

	n := int64(len(obj))
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"leading magic", flip(0)},
		{"version", flip(8)},
		{"trailing magic", flip(n - 1)},
		{"footer crc", flip(n - 12)},
		{"footer length", flip(n - 16)},
		{"footer byte", flip(n - 20)},
		{"truncated", obj[:n-1]},
		{"extra byte", append(bytes.Clone(obj[:10]), obj[9:]...)},
	} {
		if _, err := segment.DecodeObjectFooter(tc.data); !errors.Is(err, segment.ErrCorrupt) {
			t.Errorf("footer %s: err %v, want ErrCorrupt", tc.name, err)
		} else {
			t.Logf("footer %s: %v", tc.name, err)
		}
	}
}

func TestStats(t *testing.T) {
	mem := memory.NewGoAllocator()
	secs := []segment.Section{makeSection(t, mem, allTypes, 1, "", 0, segment.CodecZstd, 0, 1, 12)}
	defer releaseSections(secs)
	// A column with NaN, an all-null column and a long string.
	s := arrow.NewSchema([]arrow.Field{
		{Name: "nan", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "nulls", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "long", Type: arrow.BinaryTypes.String},
	}, nil)
	bld := array.NewRecordBuilder(mem, s)
	bld.Field(0).(*array.Float64Builder).AppendValues([]float64{1, nanf(), 2}, nil)
	bld.Field(1).(*array.Int32Builder).AppendNulls(3)
	long := string(bytes.Repeat([]byte{'z'}, 100))
	bld.Field(2).(*array.StringBuilder).AppendValues([]string{"b", long, "a"}, nil)
	rec := bld.NewRecordBatch()
	bld.Release()
	secs = append(secs, segment.Section{TableID: 2, Batches: []segment.Batch{{Timestamp: t0, Record: rec}}})
	obj, infos := encode(t, secs)
	get := func(sec int, name string) segment.ColumnMeta {
		in := infos[sec]
		idx, err := segment.DecodeSectionIndex(obj[in.ByteOffset : in.ByteOffset+in.ByteLength])
		if err != nil {
			t.Fatal(err)
		}
		c, ok := idx.Batches[0].Column(name)
		if !ok {
			t.Fatalf("no column %q", name)
		}
		return c
	}
	le := func(v uint64, n int) []byte { return binary.LittleEndian.AppendUint64(nil, v)[:n] }
	// Rows 0..11 with seed 10: k = 1_000_000+i; rows 4 and 9 null.
	for _, tc := range []struct {
		col      string
		min, max []byte
		stats    bool
	}{
		{"id", le(uint64(1_000_000*1000-3), 8), le(uint64(1_000_011*1000-3), 8), true},
		{"b", []byte{0}, []byte{1}, true},
		{"i32", le(uint64(1_000_000-7), 4), le(uint64(1_000_011-7), 4), true},
		{"s", []byte("value-1000000-s"), []byte("value-1000011-s"), true},
		{"bin", nil, nil, false},
		{"d", le(uint64(19000), 4), le(uint64(19011), 4), true},
	} {
		c := get(0, tc.col)
		if c.HasStats != tc.stats || !bytes.Equal(c.Min, tc.min) || !bytes.Equal(c.Max, tc.max) {
			t.Errorf("column %q: stats %v min %x max %x, want %v %x %x", tc.col, c.HasStats, c.Min, c.Max, tc.stats, tc.min, tc.max)
		}
		if tc.col != "id" && c.NullCount != 2 {
			t.Errorf("column %q: null count %d, want 2", tc.col, c.NullCount)
		}
	}
	if c := get(1, "nan"); c.HasStats {
		t.Errorf("NaN column has stats")
	}
	if c := get(1, "nulls"); c.HasStats || c.NullCount != 3 {
		t.Errorf("all-null column: %+v", c)
	}
	c := get(1, "long")
	if !bytes.Equal(c.Min, []byte("a")) || len(c.Max) != 64 || c.Max[63] != 'z'+1 {
		t.Errorf("long string: min %q max %q", c.Min, c.Max)
	}
}

func nanf() float64 { z := 0.0; return z / z }

// TestObjstoreFS reads through a real objstore.FS.
func TestObjstoreFS(t *testing.T) {
	fs, err := objstore.NewFS(objstore.FSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	mem := memory.NewGoAllocator()
	secs := []segment.Section{
		makeSection(t, mem, allTypes, 1, "p", 0, segment.CodecZstd, 0, 3, 400),
		makeSection(t, mem, allTypes, 1, "p", 1, segment.CodecZstd, 9, 2, 300),
	}
	defer releaseSections(secs)
	obj, infos := encode(t, secs)
	const key = "segments/0001/abc.seg"
	if err := fs.Put(ctx, key, bytes.NewReader(obj), int64(len(obj))); err != nil {
		t.Fatal(err)
	}
	var _ segment.RangeReader = objstore.BucketReader(fs)
	for i, in := range infos {
		sr := in.SegmentRange(key, 1)
		got, st, err := segment.ReadSection(ctx, fs, sr.ObjectKey, sr.ByteOffset, sr.ByteLength,
			segment.ReadOptions{Schema: allTypes, Columns: []string{"s", "tsz"}, FromOffset: sr.BaseOffset + 400})
		if err != nil {
			t.Fatal(err)
		}
		wantFirst := 1
		if i == 1 {
			wantFirst = 1 // 9+300 <= 409
		}
		if len(got) != len(secs[i].Batches)-wantFirst {
			t.Fatalf("section %d: %d batches", i, len(got))
		}
		for j, b := range got {
			want := projectRecord(secs[i].Batches[j+wantFirst].Record, "s", "tsz")
			if !array.RecordEqual(b.Record, want) {
				t.Errorf("section %d batch %d differs", i, j)
			}
			want.Release()
		}
		releaseBatches(got)
		t.Logf("section %d: %+v", i, st)
	}
	if _, _, err := segment.ReadSection(ctx, fs, "missing", 10, 100, segment.ReadOptions{}); !objstore.IsNotExist(err) {
		t.Errorf("missing object: %v", err)
	}
}

// TestReadsFormatVersion1 reads an object written by the version 1 encoder
// (chunks batch by batch; testdata/v1-object.seg, written before version 2
// existed from the sections below): existing data stays readable.
func TestReadsFormatVersion1(t *testing.T) {
	obj, err := os.ReadFile("testdata/v1-object.seg")
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewGoAllocator()
	secs := []segment.Section{
		makeSection(t, mem, allTypes, 3, "", 0, segment.CodecZstd, 0, 3, 17),
		makeSection(t, mem, allTypes, 7, "p", 1, segment.CodecLZ4, 40, 2, 9),
	}
	defer releaseSections(secs)
	metas, err := segment.DecodeObjectFooter(obj)
	if err != nil || len(metas) != 2 {
		t.Fatalf("footer: %v, %v", metas, err)
	}
	r := &memReader{data: obj}
	for i, m := range metas {
		sec := secs[i]
		if m.TableID != sec.TableID || m.Bucket != sec.Bucket {
			t.Fatalf("section %d is %+v", i, m)
		}
		for _, cols := range [][]string{nil, {"s", "id"}, {"tsz"}} {
			got, _, err := segment.ReadSection(ctx, r, "v1", m.ByteOffset, m.ByteLength, segment.ReadOptions{Schema: allTypes, Columns: cols})
			if err != nil {
				t.Fatalf("section %d columns %v: %v", i, cols, err)
			}
			if len(got) != len(sec.Batches) {
				t.Fatalf("section %d: %d batches, want %d", i, len(got), len(sec.Batches))
			}
			for j, b := range got {
				want := sec.Batches[j].Record
				if cols != nil {
					want = projectRecord(want, cols...)
					defer want.Release()
				}
				if !array.RecordEqual(b.Record, want) {
					t.Errorf("section %d batch %d columns %v differ", i, j, cols)
				}
			}
			releaseBatches(got)
		}
	}
}
