package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/iceberg-go"
	icecatalog "github.com/apache/iceberg-go/catalog"
	icebergrest "github.com/apache/iceberg-go/catalog/rest"
	icesql "github.com/apache/iceberg-go/catalog/sql"
	iceio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // registers the s3:// file IO
	"github.com/apache/iceberg-go/table"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// The tables of TestLakeTablesMatchStrom.
const (
	ltDB      = "lt"
	ltLog     = "events"
	ltPK      = "accounts"
	ltBuckets = 3
)

// The key space of the primary-key table: ltIDs ids × ltRegions.
const ltIDs = 24

var ltRegions = []string{"eu", "us", "ap"}

// TestLakeTablesMatchStrom tiers a log table and a primary-key table while
// they are appended to, upserted (inserts and updates) and deleted from,
// and reads their Iceberg copies the way an engine does: with iceberg-go's
// own scanner, through the REST catalog served at <api>/iceberg and
// through the SQL (JDBC) catalog in Strom's PostgreSQL. At several
// snapshots taken under writes, and once more after tiering caught up,
// each catalog's current snapshot must equal, row for row and column for
// column, Strom's own view at the snapshot's strom.offsets: for the log
// table the records Fetch returns below those offsets, for the
// primary-key table the state its changelog (Fetch) replays to. Both
// catalogs show the same rows for the same snapshot id, and at the end
// the Iceberg primary-key table equals Strom's Scan.
func TestLakeTablesMatchStrom(t *testing.T) {
	// The S3 endpoint is plain HTTP, so a CA bundle changes nothing; but
	// with AWS_CA_BUNDLE set the AWS SDK parses it for every file IO
	// iceberg-go opens, and the test's own REST and SQL catalog tables
	// open one per load and scan (the server's lake shares one), which
	// under -race takes seconds each.
	t.Setenv("AWS_CA_BUNDLE", "")
	flags := backends(t)["postgres+s3"](t)
	base := startServer(t, append(flags, "-lake.tiering.interval", "100ms", "-lake.tiering.compact-after-deltas", "4")...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, base)
	write := stromv1connect.NewWriteServiceClient(http.DefaultClient, base)
	read := stromv1connect.NewReadServiceClient(http.DefaultClient, base)

	if _, err := admin.CreateDatabase(ctx, connect.NewRequest(&stromv1.CreateDatabaseRequest{Name: ltDB})); err != nil {
		t.Fatal(err)
	}
	buckets := int32(ltBuckets)
	lakeProps := map[string]string{"table.datalake.enabled": "true", "table.datalake.freshness": "1s"}
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: ltDB, Name: ltLog, Buckets: &buckets, BucketKey: []string{"id"}, Properties: lakeProps,
		Schema: &stromv1.Schema{Columns: []*stromv1.Column{
			{Name: "id", Type: "BIGINT"},
			{Name: "writer", Type: "SMALLINT"},
			{Name: "msg", Type: "STRING", Nullable: true},
			{Name: "amount", Type: "DOUBLE"},
			{Name: "price", Type: "DECIMAL(12,3)", Nullable: true},
			{Name: "at", Type: "TIMESTAMP(6)", Nullable: true},
			{Name: "raw", Type: "BYTES", Nullable: true},
		}},
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTable(ctx, connect.NewRequest(&stromv1.CreateTableRequest{
		Database: ltDB, Name: ltPK, Buckets: &buckets, BucketKey: []string{"id"}, Properties: lakeProps,
		Schema: &stromv1.Schema{
			Columns: []*stromv1.Column{
				{Name: "id", Type: "BIGINT"},
				{Name: "region", Type: "STRING"},
				{Name: "balance", Type: "DOUBLE"},
				{Name: "qty", Type: "INT", Nullable: true},
				{Name: "price", Type: "DECIMAL(10,2)", Nullable: true},
				{Name: "note", Type: "STRING", Nullable: true},
				{Name: "day", Type: "DATE"},
				{Name: "at", Type: "TIMESTAMP(3)", Nullable: true},
				{Name: "flag", Type: "BOOLEAN", Nullable: true},
			},
			PrimaryKey: []string{"id", "region"},
		},
	})); err != nil {
		t.Fatal(err)
	}

	// Writers: two appenders, two upserters (which also delete), each
	// bounded by maxRounds and stopped once the checks under writes are
	// done.
	const (
		minRounds = 20
		maxRounds = 400
	)
	var (
		stop     atomic.Bool
		running  atomic.Int32
		appended atomic.Int64
		seq      atomic.Int64
		wg       sync.WaitGroup
	)
	wctx, wcancel := context.WithCancel(ctx)
	defer func() { // on failure: abandon the writes
		wcancel()
		stop.Store(true)
		wg.Wait()
	}()
	writer := func(name string, round func(r *rand.Rand, i int) error) {
		wg.Add(1)
		running.Add(1)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			r := rand.New(rand.NewPCG(uint64(len(name)), uint64(name[len(name)-1])))
			for i := range maxRounds {
				if i >= minRounds && stop.Load() {
					return
				}
				if err := round(r, i); err != nil {
					if wctx.Err() == nil {
						t.Errorf("writer %s, round %d: %v", name, i, err)
					}
					return
				}
				time.Sleep(time.Duration(80+r.IntN(80)) * time.Millisecond)
			}
		}()
	}
	for w := range 2 {
		writer(fmt.Sprintf("append%d", w), func(r *rand.Rand, i int) error {
			req := &stromv1.AppendRequest{Database: ltDB, Table: ltLog}
			for j := range 5 + r.IntN(20) {
				req.Rows = append(req.Rows, ltLogRow(w, i*100+j, seq.Add(1)))
			}
			resp, err := write.Append(wctx, connect.NewRequest(req))
			if err != nil {
				return err
			}
			for _, o := range resp.Msg.GetOffsets() {
				appended.Add(o.GetCount())
			}
			return nil
		})
	}
	for w := range 2 {
		type key struct {
			id     int
			region string
		}
		var recent []key // keys this writer upserted lately
		writer(fmt.Sprintf("upsert%d", w), func(r *rand.Rand, i int) error {
			req := &stromv1.UpsertRequest{Database: ltDB, Table: ltPK}
			seen := map[key]bool{}
			for range 3 + r.IntN(10) {
				k := key{r.IntN(ltIDs), ltRegions[r.IntN(len(ltRegions))]}
				if !seen[k] {
					seen[k] = true
					req.Rows = append(req.Rows, ltPKRow(k.id, k.region, seq.Add(1)))
					recent = append(recent, k)
				}
			}
			if _, err := write.Upsert(wctx, connect.NewRequest(req)); err != nil {
				return err
			}
			if i%3 != 2 {
				return nil
			}
			// Delete a few keys upserted lately (the other writer may have
			// deleted some already; those write nothing).
			del := &stromv1.DeleteRequest{Database: ltDB, Table: ltPK}
			seen = map[key]bool{}
			for range 1 + r.IntN(3) {
				k := recent[r.IntN(len(recent))]
				if !seen[k] {
					seen[k] = true
					st, err := structpb.NewStruct(map[string]any{"id": k.id, "region": k.region})
					if err != nil {
						return err
					}
					del.Keys = append(del.Keys, st)
				}
			}
			recent = recent[:0]
			_, err := write.Delete(wctx, connect.NewRequest(del))
			return err
		})
	}

	lc := newLakeCheck(t, ctx, flags, base, read)

	// Checks under writes: 3 rounds, each after both tables committed a
	// snapshot newer than the last round's.
	distinct := map[string]map[int64]bool{ltLog: {}, ltPK: {}}
	checked := map[string]int64{}
	for i := range 3 {
		for _, tbl := range []string{ltLog, ltPK} {
			checked[tbl] = waitNewSnapshot(t, ctx, admin, tbl, checked[tbl])
		}
		snaps := lc.checkAll(false, ltLog, ltPK)
		if running.Load() == 0 {
			t.Fatalf("check %d: the writers stopped early", i)
		}
		for tbl, ids := range snaps {
			for _, id := range ids {
				distinct[tbl][id] = true
			}
		}
	}
	stop.Store(true) // let the writers finish their requests
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Tiering catches up; the lake then holds exactly what the stream does.
	for _, tbl := range []string{ltLog, ltPK} {
		waitLakeCaughtUp(t, ctx, admin, ltDB, tbl)
	}
	lc.checkAll(true, ltLog, ltPK)
	counts := lc.changeTypes()
	for _, k := range []string{"+I", "-U", "+U", "-D"} {
		if counts[k] == 0 {
			t.Fatalf("the primary-key changelog has no %s rows (%v): the test did not exercise it", k, counts)
		}
	}
	if n := int64(len(lc.lastRows[ltLog])); n != appended.Load() {
		t.Fatalf("the lake's log table holds %d rows, the appends acknowledged %d", n, appended.Load())
	}
	for tbl, ids := range distinct {
		if len(ids) < 3 {
			t.Fatalf("%s: checked snapshots %v under writes, want 3 distinct", tbl, slices.Sorted(maps.Keys(ids)))
		}
	}
	t.Logf("checked snapshots under writes: log %d, pk %d; %d log rows, changelog %v, %d pk rows",
		len(distinct[ltLog]), len(distinct[ltPK]), appended.Load(), counts, len(lc.lastRows[ltPK]))
}

// ltLogRow is row j of appender w, its values derived from seq.
func ltLogRow(w, j int, seq int64) *structpb.Struct {
	row := map[string]any{
		"id":     w*1_000_000 + j,
		"writer": w,
		"amount": float64(seq) / 3,
	}
	if seq%4 != 0 {
		row["msg"] = fmt.Sprintf("m%d-%d", w, seq)
	}
	if seq%5 != 0 {
		row["price"] = fmt.Sprintf("%d.%03d", seq%100000-50000, seq%1000)
	}
	if seq%6 != 0 {
		row["at"] = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(seq)*time.Second + time.Duration(seq%999_999)*time.Microsecond).Format("2006-01-02T15:04:05.000000")
	}
	if seq%3 != 0 {
		row["raw"] = base64.StdEncoding.EncodeToString([]byte{byte(seq), byte(seq >> 8), 0, 0xff})
	}
	st, err := structpb.NewStruct(row)
	if err != nil {
		panic(err)
	}
	return st
}

// ltPKRow is a whole row of key (id, region), its values derived from seq.
func ltPKRow(id int, region string, seq int64) *structpb.Struct {
	row := map[string]any{
		"id":      id,
		"region":  region,
		"balance": float64(seq)/7 - 100,
		"day":     time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(seq%400)).Format(time.DateOnly),
	}
	if seq%5 != 0 {
		row["qty"] = seq % 1000
	}
	if seq%6 != 0 {
		row["price"] = fmt.Sprintf("%d.%02d", seq%10000, seq%100)
	}
	if seq%4 != 0 {
		row["note"] = fmt.Sprintf("n%d", seq)
	}
	if seq%7 != 0 {
		row["at"] = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(seq) * 1001 * time.Millisecond).Format("2006-01-02T15:04:05.000")
	}
	if seq%3 != 0 {
		row["flag"] = seq%2 == 0
	}
	st, err := structpb.NewStruct(row)
	if err != nil {
		panic(err)
	}
	return st
}

// waitNewSnapshot waits until the lake status names a snapshot of the
// table other than old (0: any), and returns it.
func waitNewSnapshot(t *testing.T, ctx context.Context, admin stromv1connect.AdminServiceClient, tbl string, old int64) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := admin.GetLakeStatus(ctx, connect.NewRequest(&stromv1.GetLakeStatusRequest{Database: ltDB, Table: tbl}))
		if err != nil {
			t.Fatal(err)
		}
		if id := resp.Msg.GetTables()[0].GetSnapshotId(); id != 0 && id != old {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s.%s: no lake snapshot after %d within 30s: %v", ltDB, tbl, old, resp.Msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lakeCheck reads the lake's Iceberg tables through both catalogs and
// compares them with Strom's stream, which it caches per bucket: records
// are immutable once committed.
type lakeCheck struct {
	t    *testing.T
	ctx  context.Context
	read stromv1connect.ReadServiceClient
	cats []namedCatalog
	// stream caches each bucket's records from offset 0 as Fetch returns
	// them: the table's columns, _change_type for a primary-key table, and
	// the lake's system columns __bucket, __offset and __timestamp (the
	// batch's commit time).
	stream  map[string][][]map[string]any // table → bucket → records
	offsets map[string]map[string]int64   // table → bucket → highest strom.offsets seen
	// lastRows holds the rows of the last checked snapshot per table.
	lastRows map[string]map[string]map[string]any
}

type namedCatalog struct {
	name string
	cat  icecatalog.Catalog
}

func newLakeCheck(t *testing.T, ctx context.Context, flags []string, base string, read stromv1connect.ReadServiceClient) *lakeCheck {
	t.Helper()
	s3 := lakeS3(t, flags)
	rc, err := icebergrest.NewCatalog(ctx, "strom", base+"/iceberg", icebergrest.WithAdditionalProps(iceberg.Properties{
		iceio.S3AccessKeyID: s3.key, iceio.S3SecretAccessKey: s3.secret,
	}))
	if err != nil {
		t.Fatalf("REST catalog: %v", err)
	}
	return &lakeCheck{
		t: t, ctx: ctx, read: read,
		cats:     []namedCatalog{{"rest", rc}, {"sql", openSQLCatalog(t, flags)}},
		stream:   map[string][][]map[string]any{ltLog: make([][]map[string]any, ltBuckets), ltPK: make([][]map[string]any, ltBuckets)},
		offsets:  map[string]map[string]int64{},
		lastRows: map[string]map[string]map[string]any{},
	}
}

// openSQLCatalog opens iceberg-go's SQL catalog over the server's
// PostgreSQL, as an engine configured with the JDBC catalog would: catalog
// name "strom", the JDBC catalog's V1 tables, S3 from the server's flags.
// The "pgx" database/sql driver is registered by the server's lake.
func openSQLCatalog(t *testing.T, flags []string) icecatalog.Catalog {
	t.Helper()
	db, err := sql.Open("pgx", flagValue(t, flags, "-catalog.postgres.url"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s3 := lakeS3(t, flags)
	cat, err := icesql.NewCatalog("strom", db, icesql.Postgres, iceberg.Properties{
		"init_catalog_tables":          "false",
		icesql.SchemaVersionKey:        icesql.SchemaVersionV1,
		iceio.S3EndpointURL:            flagValue(t, flags, "-objstore.s3.endpoint"),
		iceio.S3Region:                 flagValue(t, flags, "-objstore.s3.region"),
		iceio.S3ForceVirtualAddressing: "false",
		iceio.S3AccessKeyID:            s3.key,
		iceio.S3SecretAccessKey:        s3.secret,
	})
	if err != nil {
		t.Fatalf("SQL catalog: %v", err)
	}
	t.Cleanup(func() { cat.Close() })
	return cat
}

func flagValue(t *testing.T, flags []string, name string) string {
	t.Helper()
	for i := 0; i+1 < len(flags); i++ {
		if flags[i] == name {
			return flags[i+1]
		}
	}
	t.Fatalf("no %s in the flags %v", name, flags)
	return ""
}

// lakeView is one catalog's view of a table: the table as loaded, the
// snapshot checked, its strom.offsets by bucket ("0", "1", ...) and its
// rows as iceberg-go's scanner returns them.
type lakeView struct {
	what string
	cat  namedCatalog
	it   *table.Table
	snap *table.Snapshot
	offs map[string]int64
	rows map[string]map[string]any
}

// checkAll loads each table through each catalog and compares the current
// snapshot with Strom at its strom.offsets; when the catalogs loaded
// different snapshots (a commit in between), the later catalog also scans
// the earlier's snapshot and must show the same rows. With final, the
// offsets must be the stream's ends and a primary-key table must equal
// Scan. The scans and fetches run concurrently. It returns the snapshot
// ids checked per table.
func (c *lakeCheck) checkAll(final bool, tables ...string) map[string][]int64 {
	t := c.t
	t.Helper()
	views := map[string][]*lakeView{}
	cross := map[string]*lakeView{}
	for _, tbl := range tables {
		for _, nc := range c.cats {
			it, err := nc.cat.LoadTable(c.ctx, table.Identifier{ltDB, tbl})
			if err != nil {
				t.Fatalf("%s catalog: load %s.%s: %v", nc.name, ltDB, tbl, err)
			}
			snap := it.CurrentSnapshot()
			if snap == nil {
				t.Fatalf("%s catalog: %s.%s has no snapshot, though the lake status names one", nc.name, ltDB, tbl)
			}
			v := &lakeView{what: fmt.Sprintf("%s catalog, %s.%s snapshot %d", nc.name, ltDB, tbl, snap.SnapshotID), cat: nc, it: it, snap: snap}
			v.offs = c.snapshotOffsets(v.what, snap)
			c.checkMonotonic(v.what, tbl, v.offs)
			views[tbl] = append(views[tbl], v)
		}
		first, last := views[tbl][0], views[tbl][len(views[tbl])-1]
		if first.snap.SnapshotID == last.snap.SnapshotID {
			if !maps.Equal(first.offs, last.offs) {
				t.Fatalf("%s.%s snapshot %d: strom.offsets %v through %s, %v through %s", ltDB, tbl, first.snap.SnapshotID, first.offs, first.cat.name, last.offs, last.cat.name)
			}
			continue
		}
		// The catalog loaded later reads the earlier one's snapshot.
		v := &lakeView{what: fmt.Sprintf("%s catalog, %s.%s snapshot %d (current in the %s catalog)", last.cat.name, ltDB, tbl, first.snap.SnapshotID, first.cat.name),
			cat: last.cat, it: last.it, snap: last.it.SnapshotByID(first.snap.SnapshotID)}
		if v.snap == nil {
			t.Fatalf("%s: not in the table's history", v.what)
		}
		if v.offs = c.snapshotOffsets(v.what, v.snap); !maps.Equal(v.offs, first.offs) {
			t.Fatalf("%s: strom.offsets %v, the %s catalog says %v", v.what, v.offs, first.cat.name, first.offs)
		}
		cross[tbl] = v
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	do := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for _, tbl := range tables {
		for _, v := range append(slices.Clone(views[tbl]), cross[tbl]) {
			if v != nil {
				do(func() (err error) { v.rows, err = c.scan(v.what, tbl, v.it, v.snap.SnapshotID); return err })
			}
		}
		for b := range int32(ltBuckets) {
			end := int64(0)
			for _, v := range views[tbl] {
				end = max(end, v.offs[fmt.Sprint(b)])
			}
			do(func() error { return c.fetch(tbl, b, end) })
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}

	ids := map[string][]int64{}
	for _, tbl := range tables {
		for _, v := range views[tbl] {
			if d := diffRows(v.rows, c.stromAt(tbl, v.offs)); d != "" {
				t.Fatalf("%s (strom.offsets %v) differs from Strom at those offsets:\n%s", v.what, v.offs, d)
			}
			ids[tbl] = append(ids[tbl], v.snap.SnapshotID)
		}
		if v := cross[tbl]; v != nil {
			if d := diffRows(v.rows, views[tbl][0].rows); d != "" {
				t.Fatalf("%s differs from the same snapshot read through the %s catalog:\n%s", v.what, views[tbl][0].cat.name, d)
			}
		}
		last := views[tbl][len(views[tbl])-1]
		c.lastRows[tbl] = last.rows
		if final {
			c.checkFinal(tbl, last.offs, last.rows)
		}
	}
	return ids
}

// checkMonotonic fails when a bucket's tiered offset went backwards.
func (c *lakeCheck) checkMonotonic(what, tbl string, offs map[string]int64) {
	c.t.Helper()
	if c.offsets[tbl] == nil {
		c.offsets[tbl] = map[string]int64{}
	}
	for b, o := range offs {
		if prev := c.offsets[tbl][b]; o < prev {
			c.t.Fatalf("%s: bucket %s's strom.offsets %d is below %d, seen in an earlier snapshot", what, b, o, prev)
		}
		c.offsets[tbl][b] = o
	}
}

// checkFinal checks, after tiering caught up with the stopped writers,
// that the lake's offsets are the stream's ends and that the Iceberg
// primary-key table is the table Scan returns.
func (c *lakeCheck) checkFinal(tbl string, offs map[string]int64, lakeRows map[string]map[string]any) {
	t := c.t
	t.Helper()
	lo, err := c.read.ListOffsets(c.ctx, connect.NewRequest(&stromv1.ListOffsetsRequest{Database: ltDB, Table: tbl, Spec: stromv1.OffsetSpec_OFFSET_SPEC_LATEST}))
	if err != nil {
		t.Fatal(err)
	}
	latest := map[string]int64{}
	for _, o := range lo.Msg.GetOffsets() {
		if o.GetOffset() > 0 {
			latest[fmt.Sprint(o.GetBucket())] = o.GetOffset()
		}
	}
	tiered := map[string]int64{}
	for k, o := range offs {
		if o > 0 {
			tiered[k] = o
		}
	}
	if !maps.Equal(tiered, latest) {
		t.Fatalf("%s.%s: lake offsets %v after tiering caught up, the stream ends at %v", ltDB, tbl, tiered, latest)
	}
	if tbl != ltPK {
		return
	}
	resp, err := c.read.Scan(c.ctx, connect.NewRequest(&stromv1.ScanRequest{Database: ltDB, Table: tbl, Format: stromv1.Format_FORMAT_ARROW}))
	if err != nil {
		t.Fatal(err)
	}
	scanned := map[string]map[string]any{}
	rows, err := decodeIPCRows(resp.Msg.GetArrowIpc())
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	for _, r := range rows {
		k := pkKey(r)
		if _, dup := scanned[k]; dup {
			t.Fatalf("Scan returns key %s twice", k)
		}
		scanned[k] = r
	}
	tableRows := map[string]map[string]any{}
	for k, r := range lakeRows {
		tableRows[k] = withoutColumns(r, "__bucket", "__offset", "__timestamp")
	}
	if d := diffRows(tableRows, scanned); d != "" {
		t.Fatalf("the Iceberg table %s.%s differs from Strom's Scan:\n%s", ltDB, tbl, d)
	}
}

// snapshotOffsets parses the snapshot's strom.offsets summary property
// (docs/lake.md) into offsets by bucket ("0", "1", ...).
func (c *lakeCheck) snapshotOffsets(what string, s *table.Snapshot) map[string]int64 {
	c.t.Helper()
	if s.Summary == nil {
		c.t.Fatalf("%s: no summary", what)
	}
	v, ok := s.Summary.Properties["strom.offsets"]
	if !ok {
		c.t.Fatalf("%s: no strom.offsets in the summary %v", what, s.Summary.Properties)
	}
	var entries []struct {
		Partition string `json:"partition"`
		Bucket    int32  `json:"bucket"`
		Offset    int64  `json:"offset"`
	}
	if err := json.Unmarshal([]byte(v), &entries); err != nil {
		c.t.Fatalf("%s: strom.offsets %q: %v", what, v, err)
	}
	out := map[string]int64{}
	for _, e := range entries {
		if e.Partition != "" || e.Bucket < 0 || e.Bucket >= ltBuckets {
			c.t.Fatalf("%s: strom.offsets %q names a bucket the table does not have", what, v)
		}
		out[fmt.Sprint(e.Bucket)] = e.Offset
	}
	return out
}

// scan reads the table at a snapshot with iceberg-go's scanner and returns
// its rows by key: "bucket/offset" for the log table, "id/region" for the
// primary-key table.
func (c *lakeCheck) scan(what, tbl string, it *table.Table, snap int64) (map[string]map[string]any, error) {
	at, err := it.Scan(table.WithSnapshotID(snap)).ToArrowTable(c.ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: scan: %w", what, err)
	}
	defer at.Release()
	tr := array.NewTableReader(at, 4096)
	defer tr.Release()
	out := map[string]map[string]any{}
	for tr.Next() {
		rows, err := recordRows(tr.RecordBatch())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		for _, r := range rows {
			k := logKey(r)
			if tbl == ltPK {
				k = pkKey(r)
			}
			if old, dup := out[k]; dup {
				return nil, fmt.Errorf("%s: key %s twice:\n %v\n %v", what, k, old, r)
			}
			out[k] = r
		}
	}
	return out, tr.Err()
}

func logKey(r map[string]any) string { return fmt.Sprintf("%v/%v", r["__bucket"], r["__offset"]) }
func pkKey(r map[string]any) string  { return fmt.Sprintf("%v/%v", r["id"], r["region"]) }

// stromAt is Strom's view of the table at offsets, from the records
// fetched: a log table's records below them, or the rows a primary-key
// table's changelog replays to (+I and +U upsert the row, -D deletes it,
// -U changes nothing).
func (c *lakeCheck) stromAt(tbl string, offs map[string]int64) map[string]map[string]any {
	out := map[string]map[string]any{}
	for b := range int32(ltBuckets) {
		for _, r := range c.stream[tbl][b][:offs[fmt.Sprint(b)]] {
			if tbl == ltLog {
				out[logKey(r)] = r
				continue
			}
			k := pkKey(r)
			if old, ok := out[k]; ok && old["__bucket"] != r["__bucket"] {
				c.t.Fatalf("key %s is in buckets %v and %v", k, old["__bucket"], r["__bucket"])
			}
			switch ct := r["_change_type"]; ct {
			case "+I", "+U":
				out[k] = withoutColumns(r, "_change_type")
			case "-D":
				delete(out, k)
			case "-U":
			default:
				c.t.Fatalf("bucket %d offset %v: change type %v", b, r["__offset"], ct)
			}
		}
	}
	return out
}

// changeTypes counts the change types of the primary-key table's
// changelog fetched so far.
func (c *lakeCheck) changeTypes() map[string]int {
	out := map[string]int{}
	for _, recs := range c.stream[ltPK] {
		for _, r := range recs {
			out[r["_change_type"].(string)]++
		}
	}
	return out
}

// fetch extends the cache of bucket b's records up to offset end with
// Fetch. Calls for distinct buckets may run concurrently.
func (c *lakeCheck) fetch(tbl string, b int32, end int64) error {
	have := c.stream[tbl][b]
	defer func() { c.stream[tbl][b] = have }()
	for int64(len(have)) < end {
		next := int64(len(have))
		resp, err := c.read.Fetch(c.ctx, connect.NewRequest(&stromv1.FetchRequest{
			Database: ltDB, Table: tbl, Bucket: b, Offset: next, MaxBytes: 1 << 20, Format: stromv1.Format_FORMAT_ARROW,
		}))
		if err != nil {
			return fmt.Errorf("fetch %s bucket %d at %d: %w", tbl, b, next, err)
		}
		rows, err := decodeIPCRows(resp.Msg.GetArrowIpc())
		if err != nil {
			return fmt.Errorf("fetch %s bucket %d at %d: %w", tbl, b, next, err)
		}
		progress := false
		for _, r := range rows {
			off := r["_offset"].(int64)
			if off < next {
				continue
			}
			if off != next {
				return fmt.Errorf("fetch %s bucket %d: offset %d after %d", tbl, b, off, next-1)
			}
			r["__bucket"], r["__offset"], r["__timestamp"] = int64(b), off, r["_timestamp"]
			delete(r, "_offset")
			delete(r, "_timestamp")
			have = append(have, r)
			next++
			progress = true
		}
		if !progress {
			return fmt.Errorf("fetch %s bucket %d at %d: no records, though the lake holds offsets up to %d (high watermark %d)",
				tbl, b, next, end, resp.Msg.GetHighWatermark())
		}
	}
	return nil
}

// decodeIPCRows decodes an Arrow IPC stream into rows of canonical values.
func decodeIPCRows(data []byte) ([]map[string]any, error) {
	rd, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decode IPC: %w", err)
	}
	defer rd.Release()
	var out []map[string]any
	for rd.Next() {
		rows, err := recordRows(rd.RecordBatch())
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	if err := rd.Err(); err != nil {
		return nil, fmt.Errorf("decode IPC: %w", err)
	}
	return out, nil
}

// recordRows returns a record's rows, each column's value in a canonical
// form that Strom's Arrow and Iceberg's share: integers as int64, floats
// as float64, decimals as text, binary as hex, dates as days, timestamps
// as microseconds since the epoch.
func recordRows(rec arrow.RecordBatch) ([]map[string]any, error) {
	out := make([]map[string]any, rec.NumRows())
	for i := range out {
		out[i] = make(map[string]any, rec.NumCols())
	}
	for j, f := range rec.Schema().Fields() {
		col := rec.Column(j)
		for i := range out {
			v, err := canonValue(col, i)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", f.Name, err)
			}
			out[i][f.Name] = v
		}
	}
	return out, nil
}

func canonValue(a arrow.Array, i int) (any, error) {
	if a.IsNull(i) {
		return nil, nil
	}
	switch a := a.(type) {
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
	case *array.Boolean:
		return a.Value(i), nil
	case *array.Decimal128:
		return a.Value(i).ToString(a.DataType().(*arrow.Decimal128Type).Scale), nil
	case *array.String:
		return a.Value(i), nil
	case *array.LargeString:
		return a.Value(i), nil
	case *array.StringView:
		return a.Value(i), nil
	case *array.Binary:
		return hex.EncodeToString(a.Value(i)), nil
	case *array.LargeBinary:
		return hex.EncodeToString(a.Value(i)), nil
	case *array.BinaryView:
		return hex.EncodeToString(a.Value(i)), nil
	case *array.Date32:
		return int64(a.Value(i)), nil
	case *array.Timestamp:
		v := int64(a.Value(i))
		switch a.DataType().(*arrow.TimestampType).Unit {
		case arrow.Second:
			return v * 1_000_000, nil
		case arrow.Millisecond:
			return v * 1000, nil
		case arrow.Microsecond:
			return v, nil
		case arrow.Nanosecond:
			return v / 1000, nil
		}
	}
	return nil, fmt.Errorf("unexpected Arrow type %s", a.DataType())
}

// diffRows describes how got differs from want (keys missing, keys extra,
// columns that differ), the first few of each; "" when they are equal.
func diffRows(got, want map[string]map[string]any) string {
	const show = 5
	var missing, extra, differ []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			missing = append(missing, fmt.Sprintf("  missing %s: want %v", k, want[k]))
			continue
		}
		var cols []string
		for _, c := range slices.Sorted(maps.Keys(unionKeys(g, want[k]))) {
			gv, gok := g[c]
			wv, wok := want[k][c]
			if gok != wok || gv != wv {
				cols = append(cols, fmt.Sprintf("%s: got %s, want %s", c, showValue(gv, gok), showValue(wv, wok)))
			}
		}
		if len(cols) > 0 {
			differ = append(differ, fmt.Sprintf("  differs %s: %s\n    got  %v\n    want %v", k, strings.Join(cols, "; "), g, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			extra = append(extra, fmt.Sprintf("  extra %s: %v", k, got[k]))
		}
	}
	if len(missing)+len(extra)+len(differ) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d rows, want %d: %d missing, %d extra, %d differ\n", len(got), len(want), len(missing), len(extra), len(differ))
	for _, part := range [][]string{missing, extra, differ} {
		for _, line := range part[:min(len(part), show)] {
			sb.WriteString(line + "\n")
		}
		if len(part) > show {
			fmt.Fprintf(&sb, "  ... and %d more\n", len(part)-show)
		}
	}
	return sb.String()
}

func showValue(v any, ok bool) string {
	if !ok {
		return "(no column)"
	}
	return fmt.Sprintf("%#v", v)
}

func withoutColumns(r map[string]any, cols ...string) map[string]any {
	out := make(map[string]any, len(r))
	for k, v := range r {
		if !slices.Contains(cols, k) {
			out[k] = v
		}
	}
	return out
}

func unionKeys(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
