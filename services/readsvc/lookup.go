package readsvc

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"google.golang.org/protobuf/types/known/structpb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/kv"
	"github.com/strom-io/strom/services/reader"
	"github.com/strom-io/strom/services/rpcerr"
)

// KV reads the committed state of primary-key buckets where each is led
// (forward.Router).
type KV interface {
	Lookup(ctx context.Context, t catalog.Table, b catalog.BucketID, keys []kv.Row) ([]kv.Row, error)
	PrefixLookup(ctx context.Context, t catalog.Table, b catalog.BucketID, values []any) ([]kv.Row, error)
	// Scan returns up to limit rows (0: all) in key order after key
	// after (nil: from the first), the last one's key and whether rows
	// follow it (kv.Bucket.ScanAfter).
	Scan(ctx context.Context, t catalog.Table, b catalog.BucketID, after []byte, limit int) (rows []kv.Row, last []byte, more bool, err error)
	Count(ctx context.Context, t catalog.Table, b catalog.BucketID) (int64, error)
}

// Lookup implements ReadService: the current rows of the keys, in key
// order; keys without a row are left out.
func (s *Service) Lookup(ctx context.Context, req *connect.Request[stromv1.LookupRequest]) (*connect.Response[stromv1.LookupResponse], error) {
	m := req.Msg
	if err := requireTable("", m.GetDatabase(), m.GetTable()); err != nil {
		return nil, err
	}
	t, err := s.primaryKeyTable(ctx, m.GetDatabase(), m.GetTable(), "lookup")
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "lookup", err)
	}
	if len(m.GetKeys()) == 0 {
		return nil, rpcerr.Invalid("keys: name at least one key")
	}
	keys, buckets, err := s.keys(t, kv.KeySchema(t), m.GetKeys())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "lookup", err)
	}
	// One call per bucket (a forwarded one when it is led elsewhere), then
	// the rows in key order.
	byBucket := map[catalog.BucketID][]int{}
	var order []catalog.BucketID
	for i, b := range buckets {
		if _, ok := byBucket[b]; !ok {
			order = append(order, b)
		}
		byBucket[b] = append(byBucket[b], i)
	}
	found := make([]kv.Row, len(keys))
	for _, b := range order {
		idx := byBucket[b]
		sub := make([]kv.Row, len(idx))
		for j, i := range idx {
			sub[j] = keys[i]
		}
		got, err := s.kv.Lookup(ctx, t, b, sub)
		if err != nil {
			return nil, rpcerr.Connect(ctx, s.logger, "lookup", err)
		}
		for j, i := range idx {
			found[i] = got[j]
		}
	}
	var rows []kv.Row
	for _, row := range found {
		if row != nil {
			rows = append(rows, row)
		}
	}
	out := &stromv1.LookupResponse{}
	out.Rows, out.ArrowIpc, err = s.encodeRows(t, rows, nil, m.GetFormat())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "lookup", err)
	}
	return connect.NewResponse(out), nil
}

// PrefixLookup implements ReadService: the rows whose bucket key equals
// the prefix (one pebble prefix scan in one bucket).
func (s *Service) PrefixLookup(ctx context.Context, req *connect.Request[stromv1.PrefixLookupRequest]) (*connect.Response[stromv1.PrefixLookupResponse], error) {
	m := req.Msg
	if err := requireTable("", m.GetDatabase(), m.GetTable()); err != nil {
		return nil, err
	}
	t, err := s.primaryKeyTable(ctx, m.GetDatabase(), m.GetTable(), "prefix lookup")
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "prefix lookup", err)
	}
	bucketKey := t.BucketKey
	if len(bucketKey) == 0 {
		bucketKey = t.Schema.PrimaryKey
	}
	fields := m.GetPrefix().GetFields()
	for _, c := range bucketKey {
		if _, ok := fields[c]; !ok {
			return nil, rpcerr.Invalid(fmt.Sprintf("prefix: bucket-key column %q missing; a prefix names every bucket-key column (%v)", c, bucketKey))
		}
	}
	for name := range fields {
		if !contains(bucketKey, name) {
			return nil, rpcerr.Invalid(fmt.Sprintf("prefix: column %q is not in the bucket key %v", name, bucketKey))
		}
	}
	nullable := kv.KeySchema(t)
	for i := range nullable.Columns {
		nullable.Columns[i].Nullable = !contains(bucketKey, nullable.Columns[i].Name)
	}
	vals, err := batch.NewValues(nullable)
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "prefix lookup", err)
	}
	row, err := vals.FromStruct(0, m.GetPrefix())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "prefix lookup", err)
	}
	values := make([]any, len(bucketKey))
	for i, c := range bucketKey {
		values[i] = row[columnIndex(t.Schema, c)]
	}
	b, err := keyBucket(t, row)
	if err != nil {
		return nil, rpcerr.Invalid(err.Error())
	}
	rows, err := s.kv.PrefixLookup(ctx, t, b, values)
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "prefix lookup", err)
	}
	out := &stromv1.PrefixLookupResponse{}
	out.Rows, out.ArrowIpc, err = s.encodeRows(t, rows, nil, m.GetFormat())
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "prefix lookup", err)
	}
	return connect.NewResponse(out), nil
}

// Count implements ReadService: the exact number of current rows of a
// primary-key table, maintained with every change.
func (s *Service) Count(ctx context.Context, req *connect.Request[stromv1.CountRequest]) (*connect.Response[stromv1.CountResponse], error) {
	m := req.Msg
	if err := requireTable("", m.GetDatabase(), m.GetTable()); err != nil {
		return nil, err
	}
	t, err := s.primaryKeyTable(ctx, m.GetDatabase(), m.GetTable(), "count")
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "count", err)
	}
	var n int64
	err = s.eachBucket(ctx, t, func(b catalog.BucketID) (bool, error) {
		c, err := s.kv.Count(ctx, t, b)
		n += c
		return false, err
	})
	if err != nil {
		return nil, rpcerr.Connect(ctx, s.logger, "count", err)
	}
	return connect.NewResponse(&stromv1.CountResponse{Count: n}), nil
}

// eachBucket calls fn with every bucket of t (of every partition) until fn
// says it is done.
func (s *Service) eachBucket(ctx context.Context, t catalog.Table, fn func(catalog.BucketID) (bool, error)) error {
	ids, err := s.bucketIDs(ctx, t)
	if err != nil {
		return err
	}
	for _, b := range ids {
		done, err := fn(b)
		if err != nil || done {
			return err
		}
	}
	return nil
}

// bucketIDs lists the buckets of t: for a partitioned table, those of every
// partition written so far.
func (s *Service) bucketIDs(ctx context.Context, t catalog.Table) ([]catalog.BucketID, error) {
	if t.PartitionKey == "" {
		ids := make([]catalog.BucketID, t.Buckets)
		for i := range ids {
			ids[i] = catalog.BucketID{TableID: t.ID, Bucket: int32(i)}
		}
		return ids, nil
	}
	states, err := s.buckets.ListBuckets(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	ids := make([]catalog.BucketID, 0, len(states))
	for _, st := range states {
		ids = append(ids, st.BucketID)
	}
	return ids, nil
}

func (s *Service) primaryKeyTable(ctx context.Context, db, name, op string) (catalog.Table, error) {
	t, err := s.tables.GetTable(ctx, db, name)
	if err != nil {
		return t, err
	}
	if !t.IsPrimaryKey() {
		return t, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("table %s.%s is a log table: %s needs a primary-key table; read log tables with Fetch", t.Database, t.Name, op))
	}
	return t, nil
}

// keys decodes lookup keys (JSON objects of the primary-key columns, and
// optionally other columns) straight to values, with FromJSON's rules and
// errors (batch.Values), and returns each as primary-key values in
// PrimaryKey order with its bucket (as the writer routes the key).
func (s *Service) keys(t catalog.Table, schema catalog.Schema, in []*structpb.Struct) ([]kv.Row, []catalog.BucketID, error) {
	vals, err := batch.NewValues(schema)
	if err != nil {
		return nil, nil, err
	}
	pk := make([]int, len(t.Schema.PrimaryKey))
	for j, c := range t.Schema.PrimaryKey {
		pk[j] = columnIndex(t.Schema, c)
	}
	keys := make([]kv.Row, len(in))
	buckets := make([]catalog.BucketID, len(in))
	for i, k := range in {
		row, err := vals.FromStruct(i, k)
		if err != nil {
			return nil, nil, err
		}
		key := make(kv.Row, len(pk))
		for j, c := range pk {
			key[j] = row[c]
		}
		keys[i] = key
		if buckets[i], err = keyBucket(t, row); err != nil {
			return nil, nil, rpcerr.Invalid(err.Error())
		}
	}
	return keys, buckets, nil
}

// encodeRows returns rows as JSON objects (batch.Values: no Arrow in
// between) or one Arrow IPC stream, of the columns named (checked by
// checkColumns), or of every column when none is.
func (s *Service) encodeRows(t catalog.Table, rows []kv.Row, columns []string, f stromv1.Format) ([]*structpb.Struct, []byte, error) {
	if f == stromv1.Format_FORMAT_ARROW {
		rec, err := kv.RowsToRecord(s.mem, t.Schema, rows)
		if err != nil {
			return nil, nil, err
		}
		if len(columns) > 0 {
			full := rec
			rec = project(full, columns)
			full.Release()
		}
		defer rec.Release()
		data, err := batch.EncodeIPC(rec.Schema(), []arrow.RecordBatch{rec})
		return nil, data, err
	}
	vals, err := batch.NewValues(t.Schema)
	if err != nil {
		return nil, nil, err
	}
	var idx []int
	for _, c := range columns {
		idx = append(idx, columnIndex(t.Schema, c))
	}
	out := make([]*structpb.Struct, len(rows))
	for i, row := range rows {
		if out[i], err = vals.ToStruct(i, row, idx); err != nil {
			return nil, nil, err
		}
	}
	return out, nil, nil
}

func columnIndex(s catalog.Schema, name string) int {
	for i, c := range s.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// checkColumns checks a projection against full, the schema it selects
// from: every column named once, and known.
func checkColumns(t catalog.Table, full *arrow.Schema, columns []string) error {
	for i, c := range columns {
		if len(full.FieldIndices(c)) == 0 {
			known := make([]string, 0, full.NumFields())
			for _, f := range full.Fields() {
				known = append(known, f.Name)
			}
			return fmt.Errorf("columns: %w %q in table %s.%s; its columns are %s", reader.ErrUnknownColumn, c, t.Database, t.Name, strings.Join(known, ", "))
		}
		if slices.Contains(columns[:i], c) {
			return fmt.Errorf("columns: %w: column %q named twice", reader.ErrInvalidColumns, c)
		}
	}
	return nil
}

// project returns the columns of rec named by columns, in their order.
// The result must be released.
func project(rec arrow.RecordBatch, columns []string) arrow.RecordBatch {
	fields := make([]arrow.Field, len(columns))
	cols := make([]arrow.Array, len(columns))
	for i, c := range columns {
		idx := rec.Schema().FieldIndices(c)[0]
		fields[i], cols[i] = rec.Schema().Field(idx), rec.Column(idx)
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
}
