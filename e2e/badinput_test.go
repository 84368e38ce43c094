package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/encoding/protojson"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// httpAnswer is a Connect unary answer over HTTP JSON.
type httpAnswer struct {
	status  int
	code    string // Connect error code, "" on success
	message string
	body    []byte
}

// postRPC POSTs a JSON body to /strom.v1.<service>/<method>, as curl would.
func postRPC(t *testing.T, p *process, method string, body []byte) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url()+"/strom.v1."+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s (%d bytes): %v", method, len(body), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", method, err)
	}
	a := httpAnswer{status: resp.StatusCode, body: b}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Message string }
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("POST %s: status %d with a body that is not a Connect error: %q", method, resp.StatusCode, b)
		}
		a.code, a.message = e.Code, e.Message
	}
	return a
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// latestOffsets returns the LATEST offset of every bucket of e2e.bad.
func latestOffsets(t *testing.T, p *process) map[int32]int64 {
	t.Helper()
	a := postRPC(t, p, "ReadService/ListOffsets", []byte(`{"database": "e2e", "table": "bad", "spec": "OFFSET_SPEC_LATEST"}`))
	if a.status != http.StatusOK {
		t.Fatalf("ListOffsets: %d %s", a.status, a.body)
	}
	var resp stromv1.ListOffsetsResponse
	if err := protojson.Unmarshal(a.body, &resp); err != nil {
		t.Fatalf("ListOffsets answer %s: %v", a.body, err)
	}
	out := map[int32]int64{}
	for _, o := range resp.GetOffsets() {
		out[o.GetBucket()] = o.GetOffset()
	}
	return out
}

// badSchema is e2e.bad's schema as Arrow.
func badArrowSchema(fields ...arrow.Field) *arrow.Schema {
	if len(fields) == 0 {
		fields = []arrow.Field{
			{Name: "id", Type: arrow.PrimitiveTypes.Int64},
			{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
			{Name: "v", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		}
	}
	return arrow.NewSchema(fields, nil)
}

// arrowIPC builds an Arrow IPC stream of one batch with the schema given;
// fill appends rows to the builder.
func arrowIPC(t *testing.T, schema *arrow.Schema, fill func(b *array.RecordBuilder)) []byte {
	t.Helper()
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	fill(b)
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func appendIPC(t *testing.T, data []byte) []byte {
	return jsonBody(t, map[string]any{"database": "e2e", "table": "bad", "arrow_ipc": base64.StdEncoding.EncodeToString(data)})
}

func appendRows(t *testing.T, rows ...map[string]any) []byte {
	return jsonBody(t, map[string]any{"database": "e2e", "table": "bad", "rows": rows})
}

// TestBadInput sends bad requests as curl would (HTTP JSON) to a server
// with a 64 KiB request limit, on each backend: each gets a clean Connect
// error with the right code naming what is wrong (the catalog's own
// errors, such as a missing table, included), the server stays up, and
// nothing is written.
func TestBadInput(t *testing.T) { onBackends(t, testBadInput) }

func testBadInput(t *testing.T, be backend) {
	dir := t.TempDir()
	p := startServer(t, dir, append(be.args, "-server.max-request-bytes", "65536")...)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.bad", "-c", "id BIGINT NOT NULL", "-c", "name STRING NOT NULL", "-c", "v DOUBLE",
		"--buckets", "2", "--bucket-key", "id")

	// Some good rows first, so that watermarks are not all zero, and a good
	// Arrow append to show the Arrow builder matches the table.
	if a := postRPC(t, p, "WriteService/Append", appendRows(t,
		map[string]any{"id": 1, "name": "a"}, map[string]any{"id": 2, "name": "b", "v": 2.5}, map[string]any{"id": 3, "name": "c"})); a.status != 200 {
		t.Fatalf("good append: %d %s", a.status, a.body)
	}
	good := arrowIPC(t, badArrowSchema(), func(b *array.RecordBuilder) {
		b.Field(0).(*array.Int64Builder).AppendValues([]int64{4, 5}, nil)
		b.Field(1).(*array.StringBuilder).AppendValues([]string{"d", "e"}, nil)
		b.Field(2).(*array.Float64Builder).AppendValues([]float64{4, 5}, []bool{true, false})
	})
	if a := postRPC(t, p, "WriteService/Append", appendIPC(t, good)); a.status != 200 {
		t.Fatalf("good Arrow append: %d %s", a.status, a.body)
	}
	before := latestOffsets(t, p)
	var total int64
	for _, o := range before {
		total += o
	}
	if total != 5 {
		t.Fatalf("after 5 good rows the latest offsets are %v", before)
	}

	bigRows := make([]map[string]any, 0, 2000)
	for i := range 2000 {
		bigRows = append(bigRows, map[string]any{"id": 100 + i, "name": strings.Repeat("x", 40)})
	}
	bigIPC := arrowIPC(t, badArrowSchema(), func(b *array.RecordBuilder) {
		for i := range 5000 {
			b.Field(0).(*array.Int64Builder).Append(int64(1000 + i))
			b.Field(1).(*array.StringBuilder).Append(strings.Repeat("y", 20))
			b.Field(2).(*array.Float64Builder).AppendNull()
		}
	})

	// Small on the wire, large once decompressed: a ZSTD-compressed Arrow
	// stream whose buffers exceed the limit.
	zIPC := func() []byte {
		schema := badArrowSchema()
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		defer b.Release()
		for range 2000 {
			b.Field(0).(*array.Int64Builder).Append(7)
			b.Field(1).(*array.StringBuilder).Append(strings.Repeat("z", 200))
			b.Field(2).(*array.Float64Builder).Append(0)
		}
		rec := b.NewRecordBatch()
		defer rec.Release()
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithZstd())
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}()
	if len(appendIPC(t, zIPC)) >= 65536 {
		t.Fatalf("compressed Arrow request is %d bytes, want under the 64 KiB limit", len(appendIPC(t, zIPC)))
	}

	cases := []struct {
		name   string
		method string
		body   []byte
		status int
		code   string
		want   []string // substrings of the message
	}{
		// JSON rows.
		{"rows: wrong type", "WriteService/Append",
			appendRows(t, map[string]any{"id": 10, "name": "a"}, map[string]any{"id": 11, "name": "b", "v": true}),
			400, "invalid_argument", []string{"row 1", `column "v"`}},
		{"rows: string that is no number", "WriteService/Append",
			appendRows(t, map[string]any{"id": 10, "name": "a"}, map[string]any{"id": 11, "name": "b"}, map[string]any{"id": "twelve", "name": "c"}),
			400, "invalid_argument", []string{"row 2", `column "id"`}},
		{"rows: missing non-null column", "WriteService/Append",
			appendRows(t, map[string]any{"id": 10, "name": "a"}, map[string]any{"id": 11, "name": "b"}, map[string]any{"id": 12}),
			400, "invalid_argument", []string{"row 2", `column "name"`}},
		{"rows: null in non-null column", "WriteService/Append",
			appendRows(t, map[string]any{"id": 10, "name": nil}),
			400, "invalid_argument", []string{"row 0", `column "name"`}},
		{"rows: unknown column", "WriteService/Append",
			appendRows(t, map[string]any{"id": 10, "name": "a"}, map[string]any{"id": 11, "name": "b", "bogus": 1}),
			400, "invalid_argument", []string{"row 1", `"bogus"`}},
		{"rows: BIGINT out of range", "WriteService/Append",
			appendRows(t, map[string]any{"id": "99999999999999999999", "name": "a"}),
			400, "invalid_argument", []string{"row 0", `column "id"`}},

		// Arrow IPC.
		{"arrow: wrong type", "WriteService/Append",
			appendIPC(t, arrowIPC(t, badArrowSchema(
				arrow.Field{Name: "id", Type: arrow.PrimitiveTypes.Int64},
				arrow.Field{Name: "name", Type: arrow.BinaryTypes.String},
				arrow.Field{Name: "v", Type: arrow.BinaryTypes.String, Nullable: true}), func(b *array.RecordBuilder) {
				b.Field(0).(*array.Int64Builder).Append(20)
				b.Field(1).(*array.StringBuilder).Append("a")
				b.Field(2).(*array.StringBuilder).Append("1.5")
			})),
			400, "invalid_argument", []string{`column "v"`, "float64"}},
		{"arrow: missing non-null column", "WriteService/Append",
			appendIPC(t, arrowIPC(t, badArrowSchema(
				arrow.Field{Name: "id", Type: arrow.PrimitiveTypes.Int64},
				arrow.Field{Name: "v", Type: arrow.PrimitiveTypes.Float64, Nullable: true}), func(b *array.RecordBuilder) {
				b.Field(0).(*array.Int64Builder).Append(20)
				b.Field(1).(*array.Float64Builder).Append(1)
			})),
			400, "invalid_argument", []string{`column "name"`}},
		{"arrow: null in non-null column", "WriteService/Append",
			appendIPC(t, arrowIPC(t, badArrowSchema(), func(b *array.RecordBuilder) {
				b.Field(0).(*array.Int64Builder).AppendValues([]int64{20, 21, 22}, nil)
				b.Field(1).(*array.StringBuilder).AppendValues([]string{"a", "", "c"}, []bool{true, true, false})
				b.Field(2).(*array.Float64Builder).AppendValues([]float64{1, 2, 3}, nil)
			})),
			400, "invalid_argument", []string{"row 2", `column "name"`}},
		{"arrow: unknown column", "WriteService/Append",
			appendIPC(t, arrowIPC(t, badArrowSchema(
				arrow.Field{Name: "id", Type: arrow.PrimitiveTypes.Int64},
				arrow.Field{Name: "name", Type: arrow.BinaryTypes.String},
				arrow.Field{Name: "v", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
				arrow.Field{Name: "extra", Type: arrow.PrimitiveTypes.Int32}), func(b *array.RecordBuilder) {
				b.Field(0).(*array.Int64Builder).Append(20)
				b.Field(1).(*array.StringBuilder).Append("a")
				b.Field(2).(*array.Float64Builder).Append(1)
				b.Field(3).(*array.Int32Builder).Append(1)
			})),
			400, "invalid_argument", []string{`column "extra"`}},
		{"arrow: no rows", "WriteService/Append",
			appendIPC(t, arrowIPC(t, badArrowSchema(), func(*array.RecordBuilder) {})),
			400, "invalid_argument", []string{"no rows"}},
		{"arrow: base64 garbage", "WriteService/Append",
			appendIPC(t, []byte("this is not an Arrow IPC stream at all, just some bytes \x00\x01\x02\xff")),
			400, "invalid_argument", nil},
		{"arrow: truncated stream", "WriteService/Append",
			appendIPC(t, good[:len(good)/2]),
			400, "invalid_argument", nil},
		{"arrow: not base64", "WriteService/Append",
			[]byte(`{"database": "e2e", "table": "bad", "arrow_ipc": "!!not base64!!"}`),
			400, "invalid_argument", nil},

		// Shape of the request.
		{"both rows and arrow_ipc", "WriteService/Append",
			jsonBody(t, map[string]any{"database": "e2e", "table": "bad", "rows": []any{map[string]any{"id": 30, "name": "a"}},
				"arrow_ipc": base64.StdEncoding.EncodeToString(good)}),
			400, "invalid_argument", []string{"not both"}},
		{"no rows", "WriteService/Append", []byte(`{"database": "e2e", "table": "bad"}`),
			400, "invalid_argument", []string{"no rows"}},
		{"empty rows", "WriteService/Append", []byte(`{"database": "e2e", "table": "bad", "rows": []}`),
			400, "invalid_argument", []string{"no rows"}},
		{"not JSON", "WriteService/Append", []byte(`{"database": "e2e", "table": "bad", "rows": [{"id": 1,`),
			400, "invalid_argument", nil},
		{"missing table", "WriteService/Append",
			jsonBody(t, map[string]any{"database": "e2e", "table": "nope", "rows": []any{map[string]any{"id": 1, "name": "a"}}}),
			404, "not_found", []string{"nope"}},
		{"missing database", "WriteService/Append",
			jsonBody(t, map[string]any{"database": "nodb", "table": "bad", "rows": []any{map[string]any{"id": 1, "name": "a"}}}),
			404, "not_found", []string{"nodb"}},

		// Reads.
		{"fetch beyond the end", "ReadService/Fetch",
			[]byte(fmt.Sprintf(`{"database": "e2e", "table": "bad", "bucket": 0, "offset": %d}`, before[0]+100)),
			400, "out_of_range", nil},
		{"fetch negative offset", "ReadService/Fetch",
			[]byte(`{"database": "e2e", "table": "bad", "bucket": 0, "offset": -1}`),
			400, "", nil}, // invalid_argument or out_of_range, both fine
		{"fetch unknown column", "ReadService/Fetch",
			[]byte(`{"database": "e2e", "table": "bad", "bucket": 0, "offset": 0, "columns": ["id", "nope"]}`),
			400, "invalid_argument", []string{"nope"}},
		{"fetch duplicate column", "ReadService/Fetch",
			[]byte(`{"database": "e2e", "table": "bad", "bucket": 0, "offset": 0, "columns": ["name", "name"]}`),
			400, "invalid_argument", []string{"name"}},
		{"fetch bucket 99", "ReadService/Fetch",
			[]byte(`{"database": "e2e", "table": "bad", "bucket": 99, "offset": 0}`),
			400, "invalid_argument", []string{"99"}},
		{"fetch missing table", "ReadService/Fetch",
			[]byte(`{"database": "e2e", "table": "nope", "bucket": 0, "offset": 0}`),
			404, "not_found", []string{"nope"}},

		// Over -server.max-request-bytes (65536).
		{"rows over the request limit", "WriteService/Append", appendRows(t, bigRows...),
			0, "resource_exhausted", nil},
		{"arrow over the request limit", "WriteService/Append", appendIPC(t, bigIPC),
			0, "resource_exhausted", nil},
		{"compressed arrow decoding over the limit", "WriteService/Append", appendIPC(t, zIPC),
			0, "resource_exhausted", nil},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			a := postRPC(t, p, c.method, c.body)
			t.Logf("%d bytes → %d %s: %s", len(c.body), a.status, a.code, a.message)
			if a.status == http.StatusOK {
				t.Fatalf("accepted: %s", a.body)
			}
			if a.status >= 500 {
				t.Errorf("status %d: a server error, want a client error", a.status)
			}
			if c.status != 0 && a.status != c.status {
				t.Errorf("status %d, want %d", a.status, c.status)
			}
			if c.code != "" && a.code != c.code {
				t.Errorf("code %q, want %q", a.code, c.code)
			}
			if c.code == "" && a.code != "invalid_argument" && a.code != "out_of_range" {
				t.Errorf("code %q, want invalid_argument or out_of_range", a.code)
			}
			if a.message == "" {
				t.Errorf("no message")
			}
			for _, w := range c.want {
				if !strings.Contains(a.message, w) {
					t.Errorf("message %q does not contain %q", a.message, w)
				}
			}
			// Nothing written, and the server is still serving.
			after := latestOffsets(t, p)
			for b, off := range before {
				if after[b] != off {
					t.Errorf("bucket %d: latest offset %d after the rejected request, %d before", b, after[b], off)
				}
			}
			if len(after) != len(before) {
				t.Errorf("latest offsets %v after, %v before", after, before)
			}
		})
	}
	if t.Failed() {
		t.Logf("server log:\n%s", p.log())
	}

	// A gzip request body under the limit that inflates over it.
	t.Run("gzip_body_inflating_over_the_limit", func(t *testing.T) {
		body := appendRows(t, bigRows...)
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(body)
		zw.Close()
		req, _ := http.NewRequest(http.MethodPost, p.url()+"/strom.v1.WriteService/Append", &gz)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		n := gz.Len()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%d bytes gzip (%d inflated) → %d %s", n, len(body), resp.StatusCode, b)
		if resp.StatusCode == 200 || resp.StatusCode >= 500 || !strings.Contains(string(b), "resource_exhausted") {
			t.Errorf("gzip body inflating over the limit: %d %s", resp.StatusCode, b)
		}
		after := latestOffsets(t, p)
		for b, off := range before {
			if after[b] != off {
				t.Errorf("bucket %d: latest offset %d after the rejected request, %d before", b, after[b], off)
			}
		}
	})

	// Still healthy, and a good append still works.
	waitReady(t, p)
	if a := postRPC(t, p, "WriteService/Append", appendRows(t, map[string]any{"id": 6, "name": "f"})); a.status != 200 {
		t.Fatalf("good append after the bad ones: %d %s", a.status, a.body)
	}
	var total2 int64
	for _, o := range latestOffsets(t, p) {
		total2 += o
	}
	if total2 != 6 {
		t.Errorf("after one more good row the latest offsets add up to %d, want 6", total2)
	}
	p.stop(t)
}
