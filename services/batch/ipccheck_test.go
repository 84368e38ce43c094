package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/strom-io/strom/catalog"
)

// everyType is one column of every Arrow type arrow-go writes, nested ones
// included, with a JSON value for array.FromJSON.
var everyType = []struct {
	name string
	dt   arrow.DataType
	json string
}{
	{"null", arrow.Null, `[null, null]`},
	{"bool", arrow.FixedWidthTypes.Boolean, `[true, null]`},
	{"i8", arrow.PrimitiveTypes.Int8, `[-1, null]`},
	{"u8", arrow.PrimitiveTypes.Uint8, `[1, null]`},
	{"i16", arrow.PrimitiveTypes.Int16, `[-1, null]`},
	{"u16", arrow.PrimitiveTypes.Uint16, `[1, null]`},
	{"i32", arrow.PrimitiveTypes.Int32, `[-1, null]`},
	{"u32", arrow.PrimitiveTypes.Uint32, `[1, null]`},
	{"i64", arrow.PrimitiveTypes.Int64, `[-1, null]`},
	{"u64", arrow.PrimitiveTypes.Uint64, `[1, null]`},
	{"f16", arrow.FixedWidthTypes.Float16, `[1.5, null]`},
	{"f32", arrow.PrimitiveTypes.Float32, `[1.5, null]`},
	{"f64", arrow.PrimitiveTypes.Float64, `[1.5, null]`},
	{"dec32", &arrow.Decimal32Type{Precision: 5, Scale: 2}, `["1.23", null]`},
	{"dec64", &arrow.Decimal64Type{Precision: 12, Scale: 2}, `["1.23", null]`},
	{"dec128", &arrow.Decimal128Type{Precision: 30, Scale: 2}, `["1.23", null]`},
	{"dec256", &arrow.Decimal256Type{Precision: 60, Scale: 2}, `["1.23", null]`},
	{"str", arrow.BinaryTypes.String, `["日本", null]`},
	{"bin", arrow.BinaryTypes.Binary, `["eA==", null]`},
	{"lstr", arrow.BinaryTypes.LargeString, `["x", null]`},
	{"lbin", arrow.BinaryTypes.LargeBinary, `["eA==", null]`},
	{"strview", arrow.BinaryTypes.StringView, `["a string longer than twelve bytes", null]`},
	{"binview", arrow.BinaryTypes.BinaryView, `["YSBzdHJpbmcgbG9uZ2VyIHRoYW4gdHdlbHZlIGJ5dGVz", null]`},
	{"fsb", &arrow.FixedSizeBinaryType{ByteWidth: 3}, `["YWJj", null]`},
	{"date32", arrow.FixedWidthTypes.Date32, `[1, null]`},
	{"date64", arrow.FixedWidthTypes.Date64, `[86400000, null]`},
	{"time32", arrow.FixedWidthTypes.Time32ms, `[1, null]`},
	{"time64", arrow.FixedWidthTypes.Time64ns, `[1, null]`},
	{"ts", &arrow.TimestampType{Unit: arrow.Microsecond}, `[1, null]`},
	{"tstz", &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "Europe/Berlin"}, `[1, null]`},
	{"dur", arrow.FixedWidthTypes.Duration_s, `[1, null]`},
	{"ivl_m", arrow.FixedWidthTypes.MonthInterval, `[{"months": 1}, null]`},
	{"ivl_dt", arrow.FixedWidthTypes.DayTimeInterval, `[{"days": 1, "milliseconds": 2}, null]`},
	{"ivl_mdn", arrow.FixedWidthTypes.MonthDayNanoInterval, `[{"months": 1, "days": 2, "nanoseconds": 3}, null]`},
	{"list", arrow.ListOf(arrow.PrimitiveTypes.Int32), `[[1, null, 3], null]`},
	{"llist", arrow.LargeListOf(arrow.BinaryTypes.String), `[["a"], null]`},
	{"listview", arrow.ListViewOf(arrow.PrimitiveTypes.Int32), `[[1, 2], null]`},
	{"llistview", arrow.LargeListViewOf(arrow.PrimitiveTypes.Int32), `[[1, 2], null]`},
	{"fsl", arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Int16), `[[1, 2], null]`},
	{"struct", arrow.StructOf(
		arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		arrow.Field{Name: "b", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true,
			Metadata: arrow.NewMetadata([]string{"k"}, []string{"v"})},
	), `[{"a": 1, "b": ["x", "y"]}, null]`},
	{"map", arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int32), `[[{"key": "k", "value": 1}], null]`},
	{"sparse", arrow.SparseUnionOf([]arrow.Field{
		{Name: "i", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	}, []arrow.UnionTypeCode{5, 7}), `[[5, 1], [7, "x"]]`},
	{"dense", arrow.DenseUnionOf([]arrow.Field{
		{Name: "i", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	}, []arrow.UnionTypeCode{0, 1}), `[[0, 1], [1, "x"]]`},
	{"dict", &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}, `["a", "b"]`},
	{"ree", arrow.RunEndEncodedOf(arrow.PrimitiveTypes.Int32, arrow.BinaryTypes.String), `["a", "a"]`},
}

// everyTypeStream encodes two batches with a column of every type (and
// schema and field metadata) as an IPC stream.
func everyTypeStream(t testing.TB, opts ...ipc.Option) (*arrow.Schema, []arrow.RecordBatch, []byte) {
	t.Helper()
	mem := memory.NewGoAllocator()
	fields := make([]arrow.Field, len(everyType))
	cols := make([]arrow.Array, len(everyType))
	for i, c := range everyType {
		fields[i] = arrow.Field{Name: c.name, Type: c.dt, Nullable: true}
		a, _, err := array.FromJSON(mem, c.dt, strings.NewReader(c.json))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		defer a.Release()
		cols[i] = a
	}
	fields[0].Metadata = arrow.NewMetadata([]string{"field-key"}, []string{"field-value"})
	md := arrow.NewMetadata([]string{"schema-key"}, []string{"schema-value"})
	schema := arrow.NewSchema(fields, &md)
	rec := array.NewRecordBatch(schema, cols, 2)
	t.Cleanup(rec.Release)
	// The second batch has message metadata.
	withMD := array.NewRecordBatchWithMetadata(schema, cols, 2, arrow.NewMetadata([]string{"batch-key"}, []string{"batch-value"}))
	t.Cleanup(withMD.Release)
	recs := []arrow.RecordBatch{rec, withMD}
	data, err := EncodeIPC(schema, recs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return schema, recs, data
}

// frame is one message of a stream: where its metadata and body lie.
type frame struct{ meta, metaLen, body, bodyLen int }

// frames splits a well-formed stream (current framing) into its messages,
// up to the end-of-stream marker.
func frames(t testing.TB, data []byte) []frame {
	t.Helper()
	var fs []frame
	for pos := 0; pos < len(data); {
		if binary.LittleEndian.Uint32(data[pos:]) != ipcContinuation {
			t.Fatalf("no continuation marker at %d", pos)
		}
		metaLen := int(binary.LittleEndian.Uint32(data[pos+4:]))
		if metaLen == 0 {
			break
		}
		f := frame{meta: pos + 8, metaLen: metaLen}
		m := flatbuffers.Table{Bytes: data[f.meta : f.meta+metaLen]}
		m.Pos = flatbuffers.GetUOffsetT(m.Bytes)
		f.body = f.meta + metaLen
		if o := m.Offset(4 + 2*slotMessageBodyLength); o != 0 {
			f.bodyLen = int(m.GetInt64(m.Pos + flatbuffers.UOffsetT(o)))
		}
		fs = append(fs, f)
		pos = f.body + f.bodyLen
	}
	return fs
}

// fbNav finds things in one message's metadata, to corrupt them.
type fbNav struct {
	t   testing.TB
	buf []byte
}

func navOf(t testing.TB, data []byte, f frame) fbNav {
	return fbNav{t, data[f.meta : f.meta+f.metaLen]}
}

func (n fbNav) root() flatbuffers.Table {
	return flatbuffers.Table{Bytes: n.buf, Pos: flatbuffers.GetUOffsetT(n.buf)}
}

// slot returns the position of the value of tab's field slot.
func (n fbNav) slot(tab flatbuffers.Table, slot int) flatbuffers.UOffsetT {
	n.t.Helper()
	o := tab.Offset(flatbuffers.VOffsetT(4 + 2*slot))
	if o == 0 {
		n.t.Fatalf("slot %d of the table at %d is absent", slot, tab.Pos)
	}
	return tab.Pos + flatbuffers.UOffsetT(o)
}

// sub returns the table tab's field slot points to.
func (n fbNav) sub(tab flatbuffers.Table, slot int) flatbuffers.Table {
	n.t.Helper()
	return flatbuffers.Table{Bytes: n.buf, Pos: tab.Indirect(n.slot(tab, slot))}
}

// vec returns the position of the length of the vector in tab's slot.
func (n fbNav) vec(tab flatbuffers.Table, slot int) flatbuffers.UOffsetT {
	n.t.Helper()
	return tab.Indirect(n.slot(tab, slot))
}

// elem returns the position of element i (an offset) of the vector of
// tables in tab's slot, and the table it points to.
func (n fbNav) elem(tab flatbuffers.Table, slot, i int) (flatbuffers.UOffsetT, flatbuffers.Table) {
	n.t.Helper()
	e := n.vec(tab, slot) + flatbuffers.SizeUOffsetT*flatbuffers.UOffsetT(1+i)
	return e, flatbuffers.Table{Bytes: n.buf, Pos: tab.Indirect(e)}
}

func (n fbNav) put32(pos flatbuffers.UOffsetT, v uint32) {
	binary.LittleEndian.PutUint32(n.buf[pos:], v)
}
func (n fbNav) put64(pos flatbuffers.UOffsetT, v uint64) {
	binary.LittleEndian.PutUint64(n.buf[pos:], v)
}

// Streams arrow-go writes, with every type it has, pass the check, and
// the check leaves them unchanged.
func TestCheckIPCAcceptsEveryType(t *testing.T) {
	for name, opts := range map[string][]ipc.Option{"plain": nil, "lz4": {ipc.WithLZ4()}, "zstd": {ipc.WithZstd()}} {
		t.Run(name, func(t *testing.T) {
			schema, recs, data := everyTypeStream(t, opts...)
			orig := bytes.Clone(data)
			if err := checkIPC(data, int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, orig) {
				t.Fatal("checkIPC changed its input")
			}
			// What arrow-go reads back is what was written.
			rdr, err := ipc.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			defer rdr.Release()
			if !rdr.Schema().Equal(schema) {
				t.Fatalf("schema %v, want %v", rdr.Schema(), schema)
			}
			n := 0
			for rdr.Next() {
				if !array.RecordEqual(rdr.RecordBatch(), recs[n]) {
					t.Fatalf("batch %d differs", n)
				}
				n++
			}
			if rdr.Err() != nil || n != len(recs) {
				t.Fatalf("%d batches, %v", n, rdr.Err())
			}
		})
	}
	t.Run("schema only", func(t *testing.T) {
		schema, _, _ := everyTypeStream(t)
		data, err := EncodeIPC(schema, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkIPC(data, int64(len(data))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("delta dictionaries", func(t *testing.T) {
		mem := memory.NewGoAllocator()
		dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}
		schema := arrow.NewSchema([]arrow.Field{{Name: "d", Type: dt}}, nil)
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithDictionaryDeltas(true))
		for _, js := range []string{`["a", "b"]`, `["a", "b", "c"]`} {
			a, _, err := array.FromJSON(mem, dt, strings.NewReader(js))
			if err != nil {
				t.Fatal(err)
			}
			rec := array.NewRecordBatch(schema, []arrow.Array{a}, int64(a.Len()))
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
			rec.Release()
			a.Release()
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := checkIPC(buf.Bytes(), 1<<20); err != nil {
			t.Fatal(err)
		}
	})
}

// The check takes the pre-0.15 framing (no continuation marker) as
// arrow-go does, and so does DecodeIPC.
func TestCheckIPCLegacyFraming(t *testing.T) {
	mem := memory.NewGoAllocator()
	rec, err := FromJSON(mem, ipcTestSchema, []map[string]any{{"id": int64(1), "s": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	data, err := EncodeIPC(rec.Schema(), []arrow.RecordBatch{rec, rec})
	if err != nil {
		t.Fatal(err)
	}
	var legacy []byte
	for _, f := range frames(t, data) {
		legacy = binary.LittleEndian.AppendUint32(legacy, uint32(f.metaLen))
		legacy = append(legacy, data[f.meta:f.body+f.bodyLen]...)
	}
	legacy = append(legacy, 0, 0, 0, 0)
	if err := checkIPC(legacy, 1<<20); err != nil {
		t.Fatal(err)
	}
	recs, err := DecodeIPC(mem, ipcTestSchema, legacy, 1<<20)
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d batches, %v", len(recs), err)
	}
	for _, r := range recs {
		r.Release()
	}
}

var ipcTestSchema = catalog.Schema{Columns: []catalog.Column{
	{Name: "id", Type: catalog.BigInt},
	{Name: "s", Type: catalog.String, Nullable: true},
}}

// Every proper prefix of a stream fails the check unless it ends between
// two messages (arrow-go takes the end of the input for the end of the
// stream there); none panics.
func TestCheckIPCTruncated(t *testing.T) {
	_, _, data := everyTypeStream(t, ipc.WithZstd())
	boundary := map[int]bool{0: true}
	for _, f := range frames(t, data) {
		boundary[f.body+f.bodyLen] = true
	}
	for k := range len(data) {
		err := checkIPC(data[:k], int64(len(data)))
		if boundary[k] != (err == nil) {
			t.Fatalf("prefix of %d bytes (boundary %t): %v", k, boundary[k], err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: %v is not ErrMalformed", k, err)
		}
	}
}

// Corrupted metadata fails with ErrMalformed naming what is wrong.
func TestCheckIPCRejects(t *testing.T) {
	// Message 0 is the schema, 1 the dictionary of column "dict", 2 and 3
	// the batches.
	const (
		schemaMsg = 0
		batchMsg  = 2
	)
	col := func(name string) int {
		for i, c := range everyType {
			if c.name == name {
				return i
			}
		}
		panic(name)
	}
	cases := []struct {
		name    string
		corrupt func(data []byte, fs []frame) []byte
		want    string
	}{
		{"Schema.fields too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			n.put32(n.vec(n.sub(n.root(), slotMessageHeader), slotSchemaFields), 0xC0000000)
			return data
		}, "Schema.fields: vector of 3221225472 elements of 4 bytes"},
		{"Schema.fields one too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			p := n.vec(n.sub(n.root(), slotMessageHeader), slotSchemaFields)
			n.put32(p, uint32(fs[schemaMsg].metaLen-int(p)-4)/4+1)
			return data
		}, "Schema.fields: vector of"},
		{"Schema.custom_metadata too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			n.put32(n.vec(n.sub(n.root(), slotMessageHeader), slotSchemaCustomMetadata), 1<<30)
			return data
		}, "Schema.custom_metadata: vector of 1073741824"},
		{"Field.children too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			_, f := n.elem(n.sub(n.root(), slotMessageHeader), slotSchemaFields, col("struct"))
			n.put32(n.vec(f, slotFieldChildren), 0xFFFFFFFF)
			return data
		}, "].children: vector of 4294967295"},
		{"Field.custom_metadata too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			_, f := n.elem(n.sub(n.root(), slotMessageHeader), slotSchemaFields, 0)
			n.put32(n.vec(f, slotFieldCustomMetadata), 1000)
			return data
		}, "Schema.fields[0].custom_metadata: vector of 1000"},
		{"Field.name beyond the metadata", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			_, f := n.elem(n.sub(n.root(), slotMessageHeader), slotSchemaFields, 1)
			n.put32(n.vec(f, slotFieldName), 1<<20)
			return data
		}, "Schema.fields[1].name: vector of 1048576 elements of 1 bytes"},
		{"Field offset wraps around to its parent", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			_, f := n.elem(n.sub(n.root(), slotMessageHeader), slotSchemaFields, col("struct"))
			e, _ := n.elem(f, slotFieldChildren, 0)
			n.put32(e, uint32(f.Pos-e)) // e + offset ≡ f.Pos (mod 2³²): a cycle for the runtime
			return data
		}, "].children[0]: offset at metadata byte"},
		{"unknown type", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			_, f := n.elem(n.sub(n.root(), slotMessageHeader), slotSchemaFields, 1)
			n.buf[n.slot(f, slotFieldTypeType)] = 99
			return data
		}, "type_type: invalid value 99"},
		{"vtable outside the metadata", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[schemaMsg])
			h := n.sub(n.root(), slotMessageHeader)
			n.put32(h.Pos, 0x80000000)
			return data
		}, "Schema: vtable at metadata byte"},
		{"root outside the metadata", func(data []byte, fs []frame) []byte {
			navOf(t, data, fs[schemaMsg]).put32(0, 1<<20)
			return data
		}, "Message: table at metadata byte 1048576 lies outside"},
		{"Message.custom_metadata too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[len(fs)-1])
			n.put32(n.vec(n.root(), slotMessageCustomMetadata), 1<<24)
			return data
		}, "Message.custom_metadata: vector of 16777216 elements of 4 bytes"},
		{"KeyValue.value beyond the metadata", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[len(fs)-1])
			_, kv := n.elem(n.root(), slotMessageCustomMetadata, 0)
			n.put32(n.vec(kv, slotKeyValueValue), 0x7FFFFFFF)
			return data
		}, "Message.custom_metadata[0].value: vector of 2147483647"},
		{"RecordBatch.nodes too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			n.put32(n.vec(n.sub(n.root(), slotMessageHeader), slotRecordBatchNodes), 1<<28)
			return data
		}, "RecordBatch.nodes: vector of 268435456 elements of 16 bytes"},
		{"RecordBatch.buffers too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			n.put32(n.vec(n.sub(n.root(), slotMessageHeader), slotRecordBatchBuffers), 1<<28)
			return data
		}, "RecordBatch.buffers: vector of 268435456 elements of 16 bytes"},
		{"RecordBatch.variadicBufferCounts too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			n.put32(n.vec(n.sub(n.root(), slotMessageHeader), slotRecordBatchVariadic), 1<<29)
			return data
		}, "RecordBatch.variadicBufferCounts: vector of 536870912 elements of 8 bytes"},
		{"variadic buffer count beyond the buffers", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			p := n.vec(n.sub(n.root(), slotMessageHeader), slotRecordBatchVariadic)
			n.put64(p+4, 1<<40)
			return data
		}, "RecordBatch.variadicBufferCounts[0]: 1099511627776 buffers"},
		{"negative variadic buffer count", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			p := n.vec(n.sub(n.root(), slotMessageHeader), slotRecordBatchVariadic)
			n.put64(p+4, ^uint64(0))
			return data
		}, "RecordBatch.variadicBufferCounts[0]: -1 buffers"},
		{"buffer beyond the body", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			p := n.vec(n.sub(n.root(), slotMessageHeader), slotRecordBatchBuffers)
			n.put64(p+4+16+8, uint64(fs[batchMsg].bodyLen)+1) // buffers[1].length
			return data
		}, "RecordBatch.buffers[1]:"},
		{"negative node length", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			p := n.vec(n.sub(n.root(), slotMessageHeader), slotRecordBatchNodes)
			n.put64(p+4, ^uint64(0))
			return data
		}, "RecordBatch.nodes[0]: length -1"},
		{"DictionaryBatch nodes too long", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[1])
			d := n.sub(n.sub(n.root(), slotMessageHeader), slotDictBatchData)
			n.put32(n.vec(d, slotRecordBatchNodes), 1<<28)
			return data
		}, "DictionaryBatch.data.nodes: vector of 268435456"},
		{"body beyond the input", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			n.put64(n.slot(n.root(), slotMessageBodyLength), uint64(len(data)))
			return data
		}, "Message.bodyLength: "},
		{"negative body length", func(data []byte, fs []frame) []byte {
			n := navOf(t, data, fs[batchMsg])
			n.put64(n.slot(n.root(), slotMessageBodyLength), 1<<63)
			return data
		}, "Message.bodyLength: negative"},
		{"metadata beyond the input", func(data []byte, fs []frame) []byte {
			binary.LittleEndian.PutUint32(data[fs[batchMsg].meta-4:], 1<<30)
			return data
		}, "message 2 (at byte"},
		{"negative metadata length", func(data []byte, fs []frame) []byte {
			binary.LittleEndian.PutUint32(data[fs[batchMsg].meta-4:], 0xFFFFFFF0)
			return data
		}, "invalid metadata length -16"},
		{"no schema first", func(data []byte, fs []frame) []byte {
			return data[fs[batchMsg].meta-8:]
		}, "the stream starts with a RecordBatch message, not a Schema"},
		{"a second schema", func(data []byte, fs []frame) []byte {
			return append(bytes.Clone(data[:fs[batchMsg].meta-8]), data[:fs[schemaMsg].body]...)
		}, "a Schema message after the schema"},
		{"bytes after the end-of-stream marker", func(data []byte, fs []frame) []byte {
			return append(data, 0)
		}, "1 bytes after the end-of-stream marker"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, data := everyTypeStream(t)
			data = c.corrupt(data, frames(t, data))
			err := checkIPC(data, 1<<30)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrMalformed with %q", err, c.want)
			}
		})
	}
}

// nestedStructs returns a field of depth levels of struct, each holding
// the next and an int column.
func nestedStructs(depth int) arrow.Field {
	f := arrow.Field{Name: "leaf", Type: arrow.PrimitiveTypes.Int32, Nullable: true}
	for range depth - 1 {
		f = arrow.Field{Name: "s", Type: arrow.StructOf(f, arrow.Field{Name: "i", Type: arrow.PrimitiveTypes.Int8}), Nullable: true}
	}
	return f
}

func TestCheckIPCNesting(t *testing.T) {
	stream := func(depth int) []byte {
		data, err := EncodeIPC(arrow.NewSchema([]arrow.Field{nestedStructs(depth)}, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if err := checkIPC(stream(maxFieldDepth), 1<<20); err != nil {
		t.Fatalf("%d levels: %v", maxFieldDepth, err)
	}
	err := checkIPC(stream(maxFieldDepth+1), 1<<20)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "fields nested more than 64 deep") {
		t.Fatalf("%d levels: %v", maxFieldDepth+1, err)
	}

	// 40 levels where both children of each struct are the same table:
	// 2⁴⁰ fields to visit for arrow-go.
	data := stream(40)
	fs := frames(t, data)
	n := navOf(t, data, fs[0])
	_, f := n.elem(n.sub(n.root(), slotMessageHeader), slotSchemaFields, 0)
	for f.Offset(4+2*slotFieldChildren) != 0 && flatbuffers.GetUOffsetT(n.buf[n.vec(f, slotFieldChildren):]) == 2 {
		e0, child := n.elem(f, slotFieldChildren, 0)
		n.put32(e0+4, uint32(child.Pos-(e0+4)))
		f = child
	}
	err = checkIPC(data, 1<<20)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "tables shared between references") {
		t.Fatalf("shared subtrees: %v", err)
	}
}

// The crasher fuzzing found (Schema.fields of 3221225472 elements: arrow-go
// allocated 280 GB) fails cleanly.
func TestCheckIPCFuzzCrasher(t *testing.T) {
	data := fuzzSeed(t, "testdata/fuzz/FuzzDecodeIPC/9c4f3c76fd494f4e")
	err := checkIPC(data, 1<<20)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "Schema.fields: vector of 3221225472 elements") {
		t.Fatal(err)
	}
}

// fuzzSeed reads the []byte of a `go test fuzz v1` file.
func fuzzSeed(t testing.TB, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a fuzz seed", path)
	}
	q, ok := strings.CutPrefix(lines[1], "[]byte(")
	if !ok {
		t.Fatalf("%s: not a []byte seed", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
