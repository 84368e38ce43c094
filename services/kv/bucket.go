package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/cockroachdb/pebble/v2"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/catalog/changelog"
)

// Pebble key space of a bucket: rows under rowPrefix, the bucket's metadata
// (row count and applied offset) at metaKey.
var (
	rowPrefix = []byte{0x01}
	metaKey   = []byte{0x00, 'm', 'e', 't', 'a'}
)

const (
	metaVersion = 1
	// pendingOverhead is charged per pending write on top of its key and
	// value bytes (the map entry, the Row, the changelog row).
	pendingOverhead = 96
	// DefaultMaxPendingBytes is Options.MaxPendingBytes when it is zero.
	DefaultMaxPendingBytes = 64 << 20
)

// Options configure a Bucket.
type Options struct {
	// MaxPendingBytes bounds the pre-write buffer: the encoded keys and
	// values (plus a fixed overhead per write) of prepared but unapplied
	// changes. Prepare fails with ErrBufferFull rather than exceed it,
	// except that one Prepare is always admitted into an empty buffer.
	// Zero means DefaultMaxPendingBytes.
	MaxPendingBytes int64
	// Sync makes Apply fsync pebble's WAL. Off by default: the changelog in
	// the log is the durable record, and the applied offset is stored in
	// the same pebble batch as the rows, so after a crash the bucket is a
	// consistent prefix and ApplyChangelog replays the rest.
	Sync bool
	// Pebble, if set, is used to open the DB (it is modified by pebble).
	// Nil means pebble's defaults without logging.
	Pebble *pebble.Options
	// Allocator allocates changelog records; nil means memory.DefaultAllocator.
	Allocator memory.Allocator
}

// OpKind says what an Op does.
type OpKind uint8

// Op kinds.
const (
	OpUpsert OpKind = iota + 1 // insert the row, or merge it into the key's row
	OpDelete                   // delete the key's row; only key columns of Row are read
)

// Op is one write to a bucket.
type Op struct {
	Kind OpKind
	// Row has one value per table column (see Row). For OpDelete only the
	// primary-key columns matter. Prepare keeps references to the values
	// (strings, []byte): do not modify them afterwards.
	Row Row
	// TargetColumns, for a partial OpUpsert, are the indexes of the columns
	// it sets (TargetColumns maps names); they must include every key
	// column. Nil means the whole row. Not allowed on OpDelete.
	TargetColumns []int
}

// Bucket is the KV state of one primary-key bucket: a pebble DB of the
// bucket's current rows, plus the pre-write buffer of changes prepared but
// not yet applied. All methods are safe for concurrent use; Prepare, Apply,
// Discard and ApplyChangelog are serialised, reads run concurrently and read
// pebble only, so they never see a change before it is applied.
type Bucket struct {
	db      *pebble.DB
	st      atomic.Pointer[tableState] // the newest schema version the bucket knows
	keyCols []int                      // storage order: bucket key columns, then the other key columns
	pkPerm  []int                      // pkPerm[j]: index in Schema.PrimaryKey of storage key column j
	opts    Options
	mem     memory.Allocator

	// life guards the DB against Close for the reads, which do not take mu.
	life sync.RWMutex

	mu           sync.Mutex
	closed       bool
	pending      []*Changes
	overlay      map[string]pendingValue // newest pending value per key
	pendingBytes int64
	nextSeq      uint64

	count   atomic.Int64
	applied atomic.Int64
}

// tableState is one schema version of the bucket's table and what is
// derived from it. It is immutable; Evolve swaps in a new one.
type tableState struct {
	table  catalog.Table
	schema catalog.Schema
	merger *Merger
	isKey  []bool
	clSch  *arrow.Schema
}

func newTableState(t catalog.Table) (*tableState, error) {
	merger, err := NewMerger(t)
	if err != nil {
		return nil, err
	}
	return &tableState{table: t, schema: t.Schema, merger: merger, isKey: merger.isKey, clSch: ChangelogSchema(t.Schema)}, nil
}

type pendingValue struct {
	row Row // nil: deleted
	seq uint64
}

// Changes are the effect of one Prepare: the changelog to append to the log
// and the writes to apply to pebble once it is committed.
type Changes struct {
	seq        uint64
	writes     []write
	countDelta int64
	size       int64
	rec        arrow.RecordBatch
	rows       int
	state      int // changesPending, changesApplied, changesDiscarded
}

const (
	changesPending = iota
	changesApplied
	changesDiscarded
)

type write struct {
	key   string
	value []byte // nil: delete
	row   Row
}

// Record returns the changelog rows (schema ChangelogSchema) in order. It is
// owned by the Changes and released by Apply or Discard; Retain it to keep
// it longer.
func (c *Changes) Record() arrow.RecordBatch { return c.rec }

// Len returns the number of changelog rows; 0 when every op was a no-op.
func (c *Changes) Len() int { return c.rows }

// Open opens (creating if needed) the pebble DB in dir holding the state of
// one bucket of table t, a primary-key table whose merge engine must apply
// (NewMerger's errors). It reads the persisted Count and AppliedOffset.
func Open(dir string, t catalog.Table, opts Options) (*Bucket, error) {
	st, err := newTableState(t)
	if err != nil {
		return nil, err
	}
	s := t.Schema
	b := &Bucket{opts: opts, mem: opts.Allocator, overlay: map[string]pendingValue{}}
	b.st.Store(st)
	if b.mem == nil {
		b.mem = memory.DefaultAllocator
	}
	if b.opts.MaxPendingBytes <= 0 {
		b.opts.MaxPendingBytes = DefaultMaxPendingBytes
	}
	bucketKey := t.BucketKey
	if len(bucketKey) == 0 {
		bucketKey = s.PrimaryKey
	}
	for _, name := range bucketKey {
		if !slices.Contains(s.PrimaryKey, name) {
			return nil, fmt.Errorf("%w: bucket key column %q is not a primary-key column", ErrInvalidOp, name)
		}
		b.keyCols = append(b.keyCols, columnIndex(s, name))
		b.pkPerm = append(b.pkPerm, slices.Index(s.PrimaryKey, name))
	}
	for j, name := range s.PrimaryKey {
		if !slices.Contains(bucketKey, name) {
			b.keyCols = append(b.keyCols, columnIndex(s, name))
			b.pkPerm = append(b.pkPerm, j)
		}
	}
	po := opts.Pebble
	if po == nil {
		po = &pebble.Options{Logger: quietLogger{}}
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", dir, err)
	}
	b.db = db
	count, applied, err := b.readMeta()
	if err != nil {
		db.Close()
		return nil, err
	}
	b.count.Store(count)
	b.applied.Store(applied)
	return b, nil
}

// SchemaVersion returns the newest schema version of the table the bucket
// knows (Open's, or a later one given to Evolve).
func (b *Bucket) SchemaVersion() int32 { return b.st.Load().table.SchemaVersion }

// Evolve moves the bucket to t, a newer schema version of its table whose
// columns extend the bucket's (AlterTable only appends nullable columns):
// rows stored under an older version read with NULLs in the added columns,
// and from now on ops, the changelog and reads have t's columns. Rows are
// not rewritten: the row encoding carries each row's column count. Evolve
// with a version the bucket already has, or an older one, is a no-op;
// a t that does not extend the bucket's schema fails with ErrInvalidOp.
// Changes prepared before keep the changelog of their version.
func (b *Bucket) Evolve(t catalog.Table) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	cur := b.st.Load()
	if t.SchemaVersion <= cur.table.SchemaVersion {
		return nil
	}
	if err := checkExtends(cur.schema, t.Schema); err != nil {
		return fmt.Errorf("%w: schema version %d of table %q: %w", ErrInvalidOp, t.SchemaVersion, t.Name, err)
	}
	st, err := newTableState(t)
	if err != nil {
		return err
	}
	// The pre-write buffer's rows become rows of the new version.
	n := len(t.Schema.Columns)
	for k, v := range b.overlay {
		if v.row != nil {
			v.row = v.row.Resize(n)
			b.overlay[k] = v
		}
	}
	for _, c := range b.pending {
		for i := range c.writes {
			if c.writes[i].row != nil {
				c.writes[i].row = c.writes[i].row.Resize(n)
			}
		}
	}
	b.st.Store(st)
	return nil
}

// checkExtends reports why schema next is not old with nullable columns
// appended, or nil.
func checkExtends(old, next catalog.Schema) error {
	if len(next.Columns) < len(old.Columns) {
		return fmt.Errorf("it has %d columns, the bucket's version has %d", len(next.Columns), len(old.Columns))
	}
	for i, c := range old.Columns {
		if n := next.Columns[i]; n.Name != c.Name || n.Type != c.Type || n.Nullable != c.Nullable {
			return fmt.Errorf("column %d is %q %s, the bucket's version has %q %s", i, n.Name, n.Type, c.Name, c.Type)
		}
	}
	for _, c := range next.Columns[len(old.Columns):] {
		if !c.Nullable {
			return fmt.Errorf("added column %q is NOT NULL", c.Name)
		}
	}
	if !slices.Equal(old.PrimaryKey, next.PrimaryKey) {
		return fmt.Errorf("primary key %v differs from the bucket's %v", next.PrimaryKey, old.PrimaryKey)
	}
	return nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func (b *Bucket) readMeta() (count, applied int64, err error) {
	v, closer, err := b.db.Get(metaKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("kv: read metadata: %w", err)
	}
	defer closer.Close()
	if len(v) != 17 || v[0] != metaVersion {
		return 0, 0, fmt.Errorf("%w: bucket metadata (%d bytes)", ErrCorrupt, len(v))
	}
	return int64(binary.BigEndian.Uint64(v[1:])), int64(binary.BigEndian.Uint64(v[9:])), nil
}

func encodeMeta(count, applied int64) []byte {
	v := []byte{metaVersion}
	v = binary.BigEndian.AppendUint64(v, uint64(count))
	return binary.BigEndian.AppendUint64(v, uint64(applied))
}

// Close closes pebble. Pending changes are dropped (they were never
// applied). Close is idempotent.
func (b *Bucket) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.life.Lock()
	defer b.life.Unlock()
	b.closed = true
	for _, c := range b.pending {
		c.discard()
	}
	b.pending, b.overlay, b.pendingBytes = nil, nil, 0
	return b.db.Close()
}

// Count returns the exact number of rows applied to pebble.
func (b *Bucket) Count() int64 { return b.count.Load() }

// AppliedOffset returns the changelog end offset passed to the last Apply or
// ApplyChangelog (persisted with the rows; 0 for a new bucket): the offset
// from which the changelog must be replayed after a restart.
func (b *Bucket) AppliedOffset() int64 { return b.applied.Load() }

// PendingBytes returns the size of the pre-write buffer (see
// Options.MaxPendingBytes).
func (b *Bucket) PendingBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pendingBytes
}

// rowKey returns the pebble key of row.
func (b *Bucket) rowKey(row Row) []byte {
	return EncodeKey(append([]byte(nil), rowPrefix...), row, b.keyCols)
}

// checkOp reports why op cannot be prepared (wrapping ErrInvalidOp or
// ErrMergeEngine), or nil.
func (b *Bucket) checkOp(st *tableState, op Op) error {
	cols := st.schema.Columns
	if len(op.Row) != len(cols) {
		return fmt.Errorf("%w: %d values for %d columns", ErrInvalidOp, len(op.Row), len(cols))
	}
	switch op.Kind {
	case OpUpsert:
	case OpDelete:
		if op.TargetColumns != nil {
			return fmt.Errorf("%w: a delete takes no target columns", ErrInvalidOp)
		}
	default:
		return fmt.Errorf("%w: unknown op kind %d", ErrInvalidOp, op.Kind)
	}
	for i, c := range cols {
		v := op.Row[i]
		if v == nil {
			if st.isKey[i] {
				return fmt.Errorf("%w: primary-key column %q is NULL", ErrInvalidOp, c.Name)
			}
			if op.Kind == OpUpsert && !c.Nullable && op.TargetColumns == nil {
				return fmt.Errorf("%w: column %q is NOT NULL", ErrInvalidOp, c.Name)
			}
			continue
		}
		if op.Kind == OpDelete && !st.isKey[i] {
			continue
		}
		if why := checkValue(c.Type, v); why != "" {
			return fmt.Errorf("%w: column %q: %s", ErrInvalidOp, c.Name, why)
		}
	}
	if t := op.TargetColumns; t != nil {
		if !st.merger.SupportsPartialUpdate() {
			return fmt.Errorf("%w: partial updates are not supported by the %s merge engine", ErrMergeEngine, st.merger.engine)
		}
		seen := make([]bool, len(cols))
		for _, i := range t {
			if i < 0 || i >= len(cols) {
				return fmt.Errorf("%w: target column index %d: the table has columns 0..%d", ErrInvalidOp, i, len(cols)-1)
			}
			if seen[i] {
				return fmt.Errorf("%w: target column %q appears twice", ErrInvalidOp, cols[i].Name)
			}
			seen[i] = true
			if !cols[i].Nullable && op.Row[i] == nil {
				return fmt.Errorf("%w: column %q is NOT NULL", ErrInvalidOp, cols[i].Name)
			}
		}
		for i, c := range cols {
			if st.isKey[i] && !seen[i] {
				return fmt.Errorf("%w: partial update: target columns must include primary-key column %q", ErrInvalidOp, c.Name)
			}
		}
	}
	return nil
}

// getApplied reads key's row from pebble (nil if absent).
func (b *Bucket) getApplied(st *tableState, key []byte) (Row, error) {
	v, closer, err := b.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv: get: %w", err)
	}
	defer closer.Close()
	return DecodeRow(st.schema, v)
}

type changeRow struct {
	row Row
	typ changelog.Kind
}

// Prepare merges ops, in order, into the bucket's state as it will be once
// every pending Changes is applied: each op reads its key's row from the
// pre-write buffer (earlier ops and earlier pending Changes), else from
// pebble. It returns the Changes: their changelog (Record) and the writes,
// held in the pre-write buffer until Apply or Discard. Changelog rules:
//
//   - an upsert of a key without a row emits +I (the new row);
//   - an upsert that changes a row emits -U (old row) then +U (new row);
//   - an upsert that leaves the row as it was (an identical row, first_row
//     with a present key, versioned with a smaller version) emits nothing;
//   - a delete of a present key emits -D (the old row); of an absent key,
//     nothing.
//
// Prepare is all or nothing: on error nothing is staged. Errors: ErrInvalidOp
// or ErrMergeEngine naming the op index and the cause, ErrBufferFull when
// the pre-write buffer cannot take the changes (retry after Apply),
// ErrClosed, or a pebble read error.
func (b *Bucket) Prepare(ops []Op) (*Changes, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	st := b.st.Load()
	for i, op := range ops {
		if err := b.checkOp(st, op); err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
	}
	local := map[string]int{} // key → index in writes
	var writes []write
	var changes []changeRow
	var delta int64
	for i, op := range ops {
		kb := b.rowKey(op.Row)
		key := string(kb)
		var old Row
		if w, ok := local[key]; ok {
			old = writes[w].row
		} else if p, ok := b.overlay[key]; ok {
			old = p.row
		} else {
			var err error
			if old, err = b.getApplied(st, kb); err != nil {
				return nil, err
			}
		}
		var res Row
		switch op.Kind {
		case OpUpsert:
			r, emit, err := st.merger.Merge(old, op.Row, op.TargetColumns)
			if err != nil {
				return nil, fmt.Errorf("op %d: %w", i, err)
			}
			if !emit {
				continue
			}
			res = slices.Clone(r)
			if old == nil {
				delta++
				changes = append(changes, changeRow{res, changelog.Insert})
			} else {
				changes = append(changes, changeRow{old, changelog.UpdateBefore}, changeRow{res, changelog.UpdateAfter})
			}
		case OpDelete:
			if old == nil {
				continue
			}
			delta--
			changes = append(changes, changeRow{old, changelog.Delete})
		}
		var value []byte
		if res != nil {
			value = EncodeRow(nil, st.schema, res)
		}
		if w, ok := local[key]; ok {
			writes[w].value, writes[w].row = value, res
		} else {
			local[key] = len(writes)
			writes = append(writes, write{key: key, value: value, row: res})
		}
	}
	var size int64
	for _, w := range writes {
		size += int64(len(w.key)+len(w.value)) + pendingOverhead
	}
	if len(b.pending) > 0 && b.pendingBytes+size > b.opts.MaxPendingBytes {
		return nil, fmt.Errorf("%w: %d bytes pending, %d more would exceed %d; retry once the changelog is committed",
			ErrBufferFull, b.pendingBytes, size, b.opts.MaxPendingBytes)
	}
	rec := b.changelogRecord(st, changes)
	b.nextSeq++
	c := &Changes{seq: b.nextSeq, writes: writes, countDelta: delta, size: size, rec: rec, rows: len(changes)}
	b.pending = append(b.pending, c)
	b.pendingBytes += size
	for _, w := range writes {
		b.overlay[w.key] = pendingValue{row: w.row, seq: c.seq}
	}
	return c, nil
}

func (b *Bucket) changelogRecord(st *tableState, changes []changeRow) arrow.RecordBatch {
	rb := array.NewRecordBuilder(b.mem, st.clSch)
	defer rb.Release()
	n := len(st.schema.Columns)
	ct := rb.Field(n).(*array.StringBuilder)
	for _, ch := range changes {
		for i, v := range ch.row {
			appendValue(rb.Field(i), v)
		}
		ct.Append(ch.typ.String())
	}
	return rb.NewRecordBatch()
}

// Apply writes c to pebble in one batch, with the new Count and
// AppliedOffset = endOffset (the log end offset after c's changelog), and
// drops c from the pre-write buffer. Call it only once c's changelog is
// committed, for Changes in the order Prepare returned them (ErrOutOfOrder
// otherwise); endOffset must not decrease. Apply on discarded Changes
// returns ErrDiscarded. After a pebble error c stays pending; the bucket
// should then be closed and recovered.
func (b *Bucket) Apply(c *Changes, endOffset int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	switch c.state {
	case changesDiscarded:
		return ErrDiscarded
	case changesApplied:
		return fmt.Errorf("%w: changes already applied", ErrOutOfOrder)
	}
	if len(b.pending) == 0 || b.pending[0] != c {
		return fmt.Errorf("%w: apply the oldest pending changes first", ErrOutOfOrder)
	}
	if endOffset < b.applied.Load() {
		return fmt.Errorf("%w: end offset %d is before the applied offset %d", ErrOutOfOrder, endOffset, b.applied.Load())
	}
	batch := b.db.NewBatch()
	defer batch.Close()
	for _, w := range c.writes {
		var err error
		if w.value == nil {
			err = batch.Delete([]byte(w.key), nil)
		} else {
			err = batch.Set([]byte(w.key), w.value, nil)
		}
		if err != nil {
			return fmt.Errorf("kv: apply: %w", err)
		}
	}
	count := b.count.Load() + c.countDelta
	if err := batch.Set(metaKey, encodeMeta(count, endOffset), nil); err != nil {
		return fmt.Errorf("kv: apply: %w", err)
	}
	if err := batch.Commit(b.writeOptions()); err != nil {
		return fmt.Errorf("kv: apply: %w", err)
	}
	b.count.Store(count)
	b.applied.Store(endOffset)
	b.pending = b.pending[1:]
	b.pendingBytes -= c.size
	for _, w := range c.writes {
		if p, ok := b.overlay[w.key]; ok && p.seq == c.seq {
			delete(b.overlay, w.key)
		}
	}
	c.state = changesApplied
	c.release()
	return nil
}

func (b *Bucket) writeOptions() *pebble.WriteOptions {
	if b.opts.Sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

func (c *Changes) release() {
	if c.rec != nil {
		c.rec.Release()
		c.rec = nil
	}
}

func (c *Changes) discard() {
	c.state = changesDiscarded
	c.release()
}

// Discard drops c, whose changelog will never be committed (the append
// failed, the leader was fenced), and every Changes prepared after it,
// because they may have read c's values: their Apply returns ErrDiscarded
// and their ops must be prepared again. It returns how many Changes were
// dropped (0 if c was already discarded). Discarding applied Changes is an
// ErrOutOfOrder error.
func (b *Bucket) Discard(c *Changes) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch c.state {
	case changesDiscarded:
		return 0, nil
	case changesApplied:
		return 0, fmt.Errorf("%w: changes already applied", ErrOutOfOrder)
	}
	i := slices.Index(b.pending, c)
	if i < 0 {
		return 0, fmt.Errorf("%w: changes are not pending in this bucket", ErrOutOfOrder)
	}
	dropped := b.pending[i:]
	for _, d := range dropped {
		b.pendingBytes -= d.size
		d.discard()
	}
	b.pending = slices.Clone(b.pending[:i])
	b.overlay = map[string]pendingValue{}
	for _, p := range b.pending {
		for _, w := range p.writes {
			b.overlay[w.key] = pendingValue{row: w.row, seq: p.seq}
		}
	}
	return len(dropped), nil
}

// ApplyChangelog applies a changelog record read back from the log (schema
// ChangelogSchema, e.g. with _offset and _timestamp columns after it, which
// are ignored) to pebble in one batch, for recovery: +I and +U put the row,
// -D deletes its key, -U is skipped; Count follows and AppliedOffset becomes
// endOffset, the log offset after the record. It is a no-op when endOffset
// <= AppliedOffset, so replaying from before the applied offset is
// harmless; a record that starts before the applied offset and ends after
// it is also safe, since every change is a whole-row put or delete. It
// fails with ErrOutOfOrder while changes are pending.
func (b *Bucket) ApplyChangelog(rec arrow.RecordBatch, endOffset int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	if len(b.pending) > 0 {
		return fmt.Errorf("%w: %d changes are pending; replay the changelog before preparing", ErrOutOfOrder, len(b.pending))
	}
	if endOffset <= b.applied.Load() {
		return nil
	}
	st := b.st.Load()
	n := len(st.schema.Columns)
	sch := rec.Schema()
	if int(rec.NumCols()) < n+1 {
		return fmt.Errorf("%w: changelog has %d columns, want at least %d", ErrInvalidOp, rec.NumCols(), n+1)
	}
	for i, c := range st.schema.Columns {
		if sch.Field(i).Name != c.Name {
			return fmt.Errorf("%w: changelog column %d is %q, want %q", ErrInvalidOp, i, sch.Field(i).Name, c.Name)
		}
	}
	ct, ok := rec.Column(n).(*array.String)
	if !ok || sch.Field(n).Name != changelog.Column {
		return fmt.Errorf("%w: changelog column %d is not %s", ErrInvalidOp, n, changelog.Column)
	}
	batch := b.db.NewBatch()
	defer batch.Close()
	present := map[string]bool{}
	count := b.count.Load()
	for i := range int(rec.NumRows()) {
		typ, err := changelog.Parse(ct.Value(i))
		if err != nil {
			return fmt.Errorf("%w: changelog row %d: %v", ErrInvalidOp, i, err)
		}
		if typ == changelog.UpdateBefore {
			continue
		}
		row, err := rowAt(rec, n, i)
		if err != nil {
			return fmt.Errorf("changelog row %d: %w", i, err)
		}
		for c, v := range row {
			if st.isKey[c] && v == nil {
				return fmt.Errorf("%w: changelog row %d: primary-key column %q is NULL", ErrInvalidOp, i, st.schema.Columns[c].Name)
			}
		}
		kb := b.rowKey(row)
		was, ok := present[string(kb)]
		if !ok {
			_, closer, err := b.db.Get(kb)
			switch {
			case err == nil:
				closer.Close()
				was = true
			case !errors.Is(err, pebble.ErrNotFound):
				return fmt.Errorf("kv: replay: %w", err)
			}
		}
		switch typ {
		case changelog.Insert, changelog.UpdateAfter:
			if !was {
				count++
			}
			present[string(kb)] = true
			err = batch.Set(kb, EncodeRow(nil, st.schema, row), nil)
		case changelog.Delete:
			if was {
				count--
			}
			present[string(kb)] = false
			err = batch.Delete(kb, nil)
		default:
			return fmt.Errorf("%w: changelog row %d: unknown change type %q", ErrInvalidOp, i, typ)
		}
		if err != nil {
			return fmt.Errorf("kv: replay: %w", err)
		}
	}
	if err := batch.Set(metaKey, encodeMeta(count, endOffset), nil); err != nil {
		return fmt.Errorf("kv: replay: %w", err)
	}
	if err := batch.Commit(b.writeOptions()); err != nil {
		return fmt.Errorf("kv: replay: %w", err)
	}
	b.count.Store(count)
	b.applied.Store(endOffset)
	return nil
}

// Lookup returns the applied row of each key (nil where there is none). A
// key holds the primary-key values in the order of Schema.PrimaryKey.
// Errors wrap ErrInvalidOp naming a key of the wrong width, type or a NULL.
func (b *Bucket) Lookup(keys []Row) ([]Row, error) {
	b.life.RLock()
	defer b.life.RUnlock()
	if b.closed {
		return nil, ErrClosed
	}
	st := b.st.Load()
	out := make([]Row, len(keys))
	var kb []byte
	for i, k := range keys {
		if len(k) != len(b.keyCols) {
			return nil, fmt.Errorf("%w: key %d has %d values; the primary key has %d columns", ErrInvalidOp, i, len(k), len(b.keyCols))
		}
		kb = append(kb[:0], rowPrefix...)
		for j, c := range b.keyCols {
			v := k[b.pkPerm[j]]
			if err := checkKeyValue(st, c, v); err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			kb = appendKeyValue(kb, v)
		}
		row, err := b.getApplied(st, kb)
		if err != nil {
			return nil, err
		}
		out[i] = row
	}
	return out, nil
}

func checkKeyValue(st *tableState, col int, v any) error {
	c := st.schema.Columns[col]
	if v == nil {
		return fmt.Errorf("%w: primary-key column %q is NULL", ErrInvalidOp, c.Name)
	}
	if why := checkValue(c.Type, v); why != "" {
		return fmt.Errorf("%w: column %q: %s", ErrInvalidOp, c.Name, why)
	}
	return nil
}

// KeyColumns returns the column indexes of the key in storage order: the
// bucket key columns (the table's BucketKey, or the whole primary key when
// it is empty), then the other primary-key columns.
func (b *Bucket) KeyColumns() []int { return slices.Clone(b.keyCols) }

// PrefixLookup returns the applied rows, in key order, whose first
// len(values) key columns in storage order (KeyColumns; normally values is
// the bucket key) equal values: one pebble prefix scan.
func (b *Bucket) PrefixLookup(values []any) ([]Row, error) {
	if len(values) == 0 || len(values) > len(b.keyCols) {
		return nil, fmt.Errorf("%w: prefix has %d values; want 1..%d", ErrInvalidOp, len(values), len(b.keyCols))
	}
	st := b.st.Load()
	for j, v := range values {
		if err := checkKeyValue(st, b.keyCols[j], v); err != nil {
			return nil, err
		}
	}
	prefix := EncodePrefix(append([]byte(nil), rowPrefix...), values)
	rows, _, _, err := b.scan(prefix, prefixEnd(prefix), 0)
	return rows, err
}

// Scan returns up to limit applied rows (all when limit <= 0) in key order,
// read from one consistent pebble snapshot.
func (b *Bucket) Scan(limit int) ([]Row, error) {
	rows, _, _, err := b.scan(rowPrefix, prefixEnd(rowPrefix), limit)
	return rows, err
}

// ScanAfter returns up to limit applied rows (all when limit <= 0) in key
// order, those whose keys follow after (nil: from the first), read from
// one consistent pebble snapshot; with the key of the last row returned
// (to pass as after for the next rows) and whether rows follow it. Keys
// are the encoding of the key columns in storage order (KeyColumns), as
// EncodeKey writes them. A scan in pieces returns each key at most once,
// in order; each piece is its own snapshot, so a key written between two
// pieces shows as of the piece that reaches it.
func (b *Bucket) ScanAfter(after []byte, limit int) (rows []Row, last []byte, more bool, err error) {
	lower := rowPrefix
	if after != nil {
		// The smallest key greater than after.
		lower = append(append(append(make([]byte, 0, len(rowPrefix)+len(after)+1), rowPrefix...), after...), 0)
	}
	return b.scan(lower, prefixEnd(rowPrefix), limit)
}

// scan reads the rows of [lower, upper), up to limit (all when limit <=
// 0), and returns them with the last one's key (without rowPrefix) and
// whether more follow.
func (b *Bucket) scan(lower, upper []byte, limit int) ([]Row, []byte, bool, error) {
	b.life.RLock()
	defer b.life.RUnlock()
	if b.closed {
		return nil, nil, false, ErrClosed
	}
	st := b.st.Load()
	it, err := b.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, false, fmt.Errorf("kv: scan: %w", err)
	}
	var out []Row
	var last []byte
	ok := it.First()
	for ; ok && (limit <= 0 || len(out) < limit); ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, nil, false, fmt.Errorf("kv: scan: %w", err)
		}
		row, err := DecodeRow(st.schema, v)
		if err != nil {
			it.Close()
			return nil, nil, false, err
		}
		out = append(out, row)
		last = append(last[:0], it.Key()[len(rowPrefix):]...) // Key is valid until Next
	}
	if err := it.Close(); err != nil {
		return nil, nil, false, fmt.Errorf("kv: scan: %w", err)
	}
	return out, last, ok, nil
}

// RowsToRecord converts rows of this bucket's table to Arrow; see the
// package-level RowsToRecord. Nil rows (keys Lookup did not find) are
// skipped.
func (b *Bucket) RowsToRecord(rows []Row) (arrow.RecordBatch, error) {
	st := b.st.Load()
	rows = slices.DeleteFunc(slices.Clone(rows), func(r Row) bool { return r == nil })
	for i, r := range rows {
		rows[i] = r.Resize(len(st.schema.Columns))
	}
	return RowsToRecord(b.mem, st.schema, rows)
}

// Metrics returns pebble's metrics; call it before Close.
func (b *Bucket) Metrics() *pebble.Metrics { return b.db.Metrics() }

// DB returns the bucket's pebble DB, for snapshots (kvsnap.Take): a
// checkpoint holds the rows with the Count and AppliedOffset they match, so a
// bucket opened on a restored checkpoint resumes replay at its
// AppliedOffset. Do not write to it.
func (b *Bucket) DB() *pebble.DB { return b.db }
