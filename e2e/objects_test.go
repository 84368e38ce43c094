package e2e

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/services/segment"
	"github.com/strom-io/strom/testenv"
)

// objRow is one appended row as the independent check renders it.
type objRow struct {
	id     int64
	name   string // "<null>" for null
	score  string // float64 as %v
	ok     string // "true"/"false"/"<null>"
	amount string // decimal with 2 digits
	req    int    // which append request carried it
}

func (r objRow) key() string {
	return fmt.Sprintf("id=%d name=%s score=%s ok=%s amount=%s", r.id, r.name, r.score, r.ok, r.amount)
}

// TestSegmentObjectsIndependently appends known rows, then reads the bucket
// with its own S3 client (minio-go), decodes every segment object's footer
// and section indexes with segment.DecodeObjectFooter/DecodeSectionIndex and
// every column chunk with a plain arrow-go ipc.NewReader, and checks that
// per bucket, in offset order, the stored rows are exactly those appended,
// at the offsets the Append responses reported.
func TestSegmentObjectsIndependently(t *testing.T) {
	s3 := testenv.S3(t)
	dir := t.TempDir()
	p := startServer(t, dir,
		"-data-dir", filepath.Join(dir, "data"),
		"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t),
		"-objstore.backend", "s3", "-objstore.s3.endpoint", s3.Endpoint, "-objstore.s3.region", s3.Region,
		"-objstore.s3.bucket", s3.Bucket, "-objstore.s3.prefix", s3.Prefix,
		"-objstore.s3.access-key-id", s3.AccessKey, "-objstore.s3.secret-access-key", s3.SecretKey)
	cli(t, p, "db", "create", "e2e")
	cli(t, p, "table", "create", "e2e.o", "-c", "id BIGINT NOT NULL", "-c", "name STRING", "-c", "score DOUBLE",
		"-c", "ok BOOLEAN", "-c", "amount DECIMAL(10,2) NOT NULL", "--buckets", "3", "--bucket-key", "id")

	// Append 12 requests of 1..250 rows, durable: each is in a committed
	// object when acknowledged.
	wc := stromv1connect.NewWriteServiceClient(http.DefaultClient, p.url())
	type span struct {
		req         int
		base, count int64
	}
	var (
		appended []objRow
		spans    = map[int32][]span{} // per bucket, what each response said
		nextID   int64
	)
	for req := range 12 {
		n := 1 + req*req*2
		ar := &stromv1.AppendRequest{Database: "e2e", Table: "o"}
		var rows []objRow
		for range n {
			id := nextID
			nextID++
			r := objRow{id: id, name: fmt.Sprintf("n%d-é", id), score: fmt.Sprint(float64(id) * 0.25), ok: fmt.Sprint(id%2 == 0),
				amount: fmt.Sprintf("%d.%02d", id*3, id%100), req: req}
			m := map[string]any{"id": float64(id), "score": float64(id) * 0.25, "ok": id%2 == 0, "amount": r.amount}
			if id%5 == 0 {
				r.name = "<null>"
				m["name"] = nil
			} else {
				m["name"] = r.name
			}
			if id%11 == 0 {
				r.ok = "<null>"
				delete(m, "ok") // absent nullable column: null
			}
			ar.Rows = append(ar.Rows, mustStruct(m))
			rows = append(rows, r)
		}
		resp, err := wc.Append(context.Background(), connect.NewRequest(ar))
		if err != nil {
			t.Fatalf("append %d: %v", req, err)
		}
		var total int64
		for _, o := range resp.Msg.GetOffsets() {
			spans[o.GetBucket()] = append(spans[o.GetBucket()], span{req, o.GetBaseOffset(), o.GetCount()})
			total += o.GetCount()
		}
		if total != int64(n) {
			t.Fatalf("append %d of %d rows acknowledged %d", req, n, total)
		}
		appended = append(appended, rows...)
	}
	t.Logf("appended %d rows in 12 requests", len(appended))

	// The independent read: minio-go, the documented format, stock arrow.
	u, err := url.Parse(s3.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""),
		Secure:       u.Scheme == "https",
		Region:       s3.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type storedRow struct {
		key    string
		object string
	}
	stored := map[int32]map[int64]storedRow{} // bucket → offset → row
	var objects, sections, batches, chunks int
	var tableID int64 = -1
	var decoded []arrow.Array
	defer func() {
		for _, a := range decoded {
			a.Release()
		}
	}()
	for obj := range mc.ListObjects(ctx, s3.Bucket, minio.ListObjectsOptions{Prefix: s3.Prefix, Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("list %s/%s: %v", s3.Bucket, s3.Prefix, obj.Err)
		}
		rel := strings.TrimPrefix(obj.Key, s3.Prefix)
		if !strings.HasPrefix(rel, "segments/") || !strings.HasSuffix(rel, ".seg") {
			t.Logf("not a segment object, skipped: %s (%d bytes)", obj.Key, obj.Size)
			continue
		}
		objects++
		o, err := mc.GetObject(ctx, s3.Bucket, obj.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("get %s: %v", obj.Key, err)
		}
		data, err := io.ReadAll(o)
		o.Close()
		if err != nil {
			t.Fatalf("get %s: %v", obj.Key, err)
		}
		if int64(len(data)) != obj.Size {
			t.Fatalf("%s: got %d bytes, listed %d", obj.Key, len(data), obj.Size)
		}
		metas, err := segment.DecodeObjectFooter(data)
		if err != nil {
			t.Fatalf("%s: footer: %v", obj.Key, err)
		}
		for _, sm := range metas {
			sections++
			if tableID == -1 {
				tableID = sm.TableID
			} else if sm.TableID != tableID {
				t.Errorf("%s: section of table %d, only table %d was written", obj.Key, sm.TableID, tableID)
			}
			if sm.Partition != "" || sm.Bucket < 0 || sm.Bucket > 2 {
				t.Fatalf("%s: section of partition %q bucket %d", obj.Key, sm.Partition, sm.Bucket)
			}
			sec := data[sm.ByteOffset : sm.ByteOffset+sm.ByteLength]
			idx, err := segment.DecodeSectionIndex(sec)
			if err != nil {
				t.Fatalf("%s: section of bucket %d: index: %v", obj.Key, sm.Bucket, err)
			}
			if idx.Bucket != sm.Bucket || idx.TableID != sm.TableID || idx.BaseOffset != sm.BaseOffset || idx.RowCount != sm.RowCount {
				t.Errorf("%s: footer says bucket %d offsets %d+%d, section index says bucket %d offsets %d+%d",
					obj.Key, sm.Bucket, sm.BaseOffset, sm.RowCount, idx.Bucket, idx.BaseOffset, idx.RowCount)
			}
			if stored[sm.Bucket] == nil {
				stored[sm.Bucket] = map[int64]storedRow{}
			}
			for _, bm := range idx.Batches {
				batches++
				cols := map[string]arrow.Array{}
				for _, cm := range bm.Columns {
					chunks++
					chunk := sec[cm.Offset : cm.Offset+cm.Length]
					if got := crc32.Checksum(chunk, crc32.MakeTable(crc32.Castagnoli)); got != cm.CRC {
						t.Fatalf("%s: bucket %d batch at %d column %s: CRC %08x, index says %08x", obj.Key, sm.Bucket, bm.BaseOffset, cm.Name, got, cm.CRC)
					}
					arr := decodeChunkPlain(t, chunk, cm.Name, bm.RowCount)
					decoded = append(decoded, arr)
					if int64(arr.NullN()) != cm.NullCount {
						t.Errorf("%s: column %s: %d nulls, index says %d", obj.Key, cm.Name, arr.NullN(), cm.NullCount)
					}
					cols[cm.Name] = arr
				}
				for i := 0; i < int(bm.RowCount); i++ {
					off := bm.BaseOffset + int64(i)
					k := renderRow(t, cols, i)
					if prev, dup := stored[sm.Bucket][off]; dup {
						if prev.key != k {
							t.Errorf("bucket %d offset %d stored twice with different rows: %s in %s, %s in %s", sm.Bucket, off, prev.key, prev.object, k, obj.Key)
						} else {
							// No crash, no failed commit: nothing should be
							// stored twice (an orphan object would be).
							t.Errorf("bucket %d offset %d stored twice (identical) in %s and %s", sm.Bucket, off, prev.object, obj.Key)
						}
					}
					stored[sm.Bucket][off] = storedRow{k, obj.Key}
				}
			}
		}
	}
	t.Logf("independent read: %d segment objects, %d sections, %d batches, %d column chunks", objects, sections, batches, chunks)
	if objects == 0 {
		t.Fatal("no segment object in the bucket")
	}

	// Compare: every bucket's offsets run 0..end-1, the rows at each span
	// are the rows of that request (in request order), and all appended
	// rows are stored exactly once.
	byReq := map[int][]objRow{}
	for _, r := range appended {
		byReq[r.req] = append(byReq[r.req], r)
	}
	rc := stromv1connect.NewReadServiceClient(http.DefaultClient, p.url())
	lo, err := rc.ListOffsets(context.Background(), connect.NewRequest(&stromv1.ListOffsetsRequest{Database: "e2e", Table: "o", Spec: stromv1.OffsetSpec_OFFSET_SPEC_LATEST}))
	if err != nil {
		t.Fatal(err)
	}
	latest := map[int32]int64{}
	for _, o := range lo.Msg.GetOffsets() {
		latest[o.GetBucket()] = o.GetOffset()
	}
	found := map[string]int{}
	for b := int32(0); b < 3; b++ {
		offs := make([]int64, 0, len(stored[b]))
		for off := range stored[b] {
			offs = append(offs, off)
		}
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		for i, off := range offs {
			if off != int64(i) {
				t.Fatalf("bucket %d: objects hold offset %d at position %d: gap", b, off, i)
			}
		}
		if int64(len(offs)) != latest[b] {
			t.Errorf("bucket %d: objects hold %d rows, ListOffsets LATEST says %d", b, len(offs), latest[b])
		}
		// Rows of one request in one bucket, in request order.
		taken := map[int]int{}
		for _, sp := range spans[b] {
			mine := append([]objRow(nil), byReq[sp.req]...)
			for i := int64(0); i < sp.count; i++ {
				got, ok := stored[b][sp.base+i]
				if !ok {
					t.Fatalf("bucket %d offset %d (request %d) not in any object", b, sp.base+i, sp.req)
				}
				// The row must be one of the request's, after the previous
				// one found in this bucket (request order).
				j := taken[sp.req]
				for j < len(mine) && mine[j].key() != got.key {
					j++
				}
				if j == len(mine) {
					t.Fatalf("bucket %d offset %d: stored row %s is not a row of request %d after its previous one", b, sp.base+i, got.key, sp.req)
				}
				taken[sp.req] = j + 1
				found[got.key]++
			}
		}
	}
	for _, r := range appended {
		if found[r.key()] != 1 {
			t.Errorf("appended row %s found %d times in the objects", r.key(), found[r.key()])
		}
	}
	p.stop(t)
}

// decodeChunkPlain decodes one column chunk with a stock Arrow IPC stream
// reader: one schema with one field named name, one record batch of rows
// rows, then the end of the stream.
func decodeChunkPlain(t *testing.T, chunk []byte, name string, rows int64) arrow.Array {
	t.Helper()
	rdr, err := ipc.NewReader(bytes.NewReader(chunk))
	if err != nil {
		t.Fatalf("column %s: ipc.NewReader: %v", name, err)
	}
	defer rdr.Release()
	if f := rdr.Schema().Fields(); len(f) != 1 || f[0].Name != name {
		t.Fatalf("column %s: chunk schema %s", name, rdr.Schema())
	}
	if !rdr.Next() {
		t.Fatalf("column %s: chunk holds no record batch: %v", name, rdr.Err())
	}
	rec := rdr.RecordBatch()
	if rec.NumRows() != rows || rec.NumCols() != 1 {
		t.Fatalf("column %s: chunk batch of %d rows × %d columns, index says %d rows", name, rec.NumRows(), rec.NumCols(), rows)
	}
	arr := rec.Column(0)
	arr.Retain()
	if rdr.Next() {
		t.Fatalf("column %s: chunk holds more than one record batch", name)
	}
	if err := rdr.Err(); err != nil {
		t.Fatalf("column %s: %v", name, err)
	}
	return arr
}

// renderRow renders row i of the decoded columns as objRow.key does.
func renderRow(t *testing.T, cols map[string]arrow.Array, i int) string {
	t.Helper()
	for _, c := range []string{"id", "name", "score", "ok", "amount"} {
		if cols[c] == nil {
			t.Fatalf("batch lacks column %s (has %v)", c, keysOf(cols))
		}
	}
	id, ok := cols["id"].(*array.Int64)
	if !ok {
		t.Fatalf("id stored as %s", cols["id"].DataType())
	}
	name, ok := cols["name"].(*array.String)
	if !ok {
		t.Fatalf("name stored as %s", cols["name"].DataType())
	}
	score, ok := cols["score"].(*array.Float64)
	if !ok {
		t.Fatalf("score stored as %s", cols["score"].DataType())
	}
	okc, ok := cols["ok"].(*array.Boolean)
	if !ok {
		t.Fatalf("ok stored as %s", cols["ok"].DataType())
	}
	amount, ok := cols["amount"].(*array.Decimal128)
	if !ok {
		t.Fatalf("amount stored as %s", cols["amount"].DataType())
	}
	dt := amount.DataType().(*arrow.Decimal128Type)
	if dt.Precision != 10 || dt.Scale != 2 {
		t.Fatalf("amount stored as %s, want decimal(10, 2)", dt)
	}
	if id.IsNull(i) || score.IsNull(i) || amount.IsNull(i) {
		t.Fatalf("row %d: unexpected null id/score/amount", i)
	}
	r := objRow{id: id.Value(i), score: fmt.Sprint(score.Value(i)), amount: amount.Value(i).ToString(dt.Scale)}
	r.name, r.ok = "<null>", "<null>"
	if !name.IsNull(i) {
		r.name = name.Value(i)
	}
	if !okc.IsNull(i) {
		r.ok = fmt.Sprint(okc.Value(i))
	}
	return r.key()
}

func keysOf(m map[string]arrow.Array) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
