package writer

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/kv"
)

// Part is the rows of one request that go to one bucket. For a log table
// Record holds them; for a primary-key table Record holds the rows as sent
// and Ops the upserts or deletes made of them, whose changelog is written.
type Part struct {
	Bucket catalog.BucketID
	Record arrow.RecordBatch
	Ops    []kv.Op
	// IPC, when set, is Record as the client sent it: a checked Arrow IPC
	// stream of exactly this one batch under the table's Arrow schema
	// (batch.DecodeIPCVerbatim). The WAL and a forwarded write carry
	// these bytes instead of encoding Record again.
	IPC []byte
}

// Router assigns rows to buckets: by the hash of the bucket key (for a
// primary-key table without one, the primary key), or, for a log table
// without a bucket key, a whole request to one bucket (so small requests
// make few, large batches): in turn, or for an idempotent writer by the hash
// of its writer id and sequence, so that a retry lands in the bucket that
// remembers the sequence.
type Router struct {
	next atomic.Uint32
}

// Route splits rec into one Part per bucket (and partition). Rows keep
// their order within a part. The caller releases the parts' records.
// writerID and seq identify an idempotent request ("" when it is not).
func (r *Router) Route(mem memory.Allocator, t catalog.Table, rec arrow.RecordBatch, writerID string, seq int64) ([]Part, error) {
	keyCols := t.BucketKey
	if len(keyCols) == 0 && t.IsPrimaryKey() {
		keyCols = t.Schema.PrimaryKey
	}
	keyIdx := make([]int, len(keyCols))
	for i, name := range keyCols {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) != 1 {
			return nil, fmt.Errorf("writer: bucket key column %q not in the batch", name)
		}
		keyIdx[i] = idx[0]
	}
	partIdx := -1
	if t.PartitionKey != "" {
		idx := rec.Schema().FieldIndices(t.PartitionKey)
		if len(idx) != 1 {
			return nil, fmt.Errorf("writer: partition column %q not in the batch", t.PartitionKey)
		}
		partIdx = idx[0]
	}
	rows := int(rec.NumRows())
	var sticky int32
	if writerID != "" {
		sticky = BucketOf(binary.LittleEndian.AppendUint64([]byte(writerID), uint64(seq)), t.Buckets)
	} else {
		sticky = int32(r.next.Add(1)-1) % t.Buckets
	}
	if len(keyIdx) == 0 && partIdx < 0 {
		rec.Retain()
		return []Part{{Bucket: catalog.BucketID{TableID: t.ID, Bucket: sticky}, Record: rec}}, nil
	}
	groups := map[catalog.BucketID][]int32{}
	var order []catalog.BucketID
	var key []byte
	for i := 0; i < rows; i++ {
		b := catalog.BucketID{TableID: t.ID, Bucket: sticky}
		if len(keyIdx) > 0 {
			key = key[:0]
			for _, c := range keyIdx {
				key = appendKeyValue(key, rec.Column(c), i)
			}
			b.Bucket = BucketOf(key, t.Buckets)
		}
		if partIdx >= 0 {
			p, err := PartitionValue(rec.Column(partIdx), i)
			if err != nil {
				return nil, err
			}
			b.Partition = p
		}
		if _, ok := groups[b]; !ok {
			order = append(order, b)
		}
		groups[b] = append(groups[b], int32(i))
	}
	if len(order) == 1 {
		rec.Retain()
		return []Part{{Bucket: order[0], Record: rec}}, nil
	}
	parts := make([]Part, 0, len(order))
	for _, b := range order {
		sub, err := take(mem, rec, groups[b])
		if err != nil {
			for _, p := range parts {
				p.Record.Release()
			}
			return nil, err
		}
		parts = append(parts, Part{Bucket: b, Record: sub})
	}
	return parts, nil
}

// BucketOf maps an encoded bucket key to a bucket.
func BucketOf(key []byte, buckets int32) int32 {
	h := fnv.New64a()
	_, _ = h.Write(key)
	return int32(h.Sum64() % uint64(buckets))
}

// take builds the sub-batch of rec's rows at idx.
func take(mem memory.Allocator, rec arrow.RecordBatch, idx []int32) (arrow.RecordBatch, error) {
	b := array.NewInt32Builder(mem)
	defer b.Release()
	b.AppendValues(idx, nil)
	indices := b.NewArray()
	defer indices.Release()
	ctx := compute.WithAllocator(context.Background(), mem)
	cols := make([]arrow.Array, rec.NumCols())
	for i := range cols {
		c, err := compute.TakeArray(ctx, rec.Column(i), indices)
		if err != nil {
			for _, done := range cols[:i] {
				done.Release()
			}
			return nil, fmt.Errorf("writer: split batch by bucket: %w", err)
		}
		cols[i] = c
	}
	out := array.NewRecordBatch(rec.Schema(), cols, int64(len(idx)))
	for _, c := range cols {
		c.Release()
	}
	return out, nil
}

// appendKeyValue appends a type-tagged, unambiguous encoding of column c's
// value at row i, so equal keys hash equally whichever request they came
// in.
func appendKeyValue(key []byte, c arrow.Array, i int) []byte {
	if c.IsNull(i) {
		return append(key, 0)
	}
	key = append(key, 1)
	switch a := c.(type) {
	case *array.Boolean:
		if a.Value(i) {
			return append(key, 1)
		}
		return append(key, 0)
	case *array.Int8:
		return binary.LittleEndian.AppendUint64(key, uint64(a.Value(i)))
	case *array.Int16:
		return binary.LittleEndian.AppendUint64(key, uint64(a.Value(i)))
	case *array.Int32:
		return binary.LittleEndian.AppendUint64(key, uint64(a.Value(i)))
	case *array.Int64:
		return binary.LittleEndian.AppendUint64(key, uint64(a.Value(i)))
	case *array.Float32:
		return binary.LittleEndian.AppendUint64(key, math.Float64bits(float64(a.Value(i))))
	case *array.Float64:
		return binary.LittleEndian.AppendUint64(key, math.Float64bits(a.Value(i)))
	case *array.Decimal128:
		v := a.Value(i)
		key = binary.LittleEndian.AppendUint64(key, uint64(v.HighBits()))
		return binary.LittleEndian.AppendUint64(key, v.LowBits())
	case *array.String:
		key = binary.AppendUvarint(key, uint64(len(a.Value(i))))
		return append(key, a.Value(i)...)
	case *array.Binary:
		key = binary.AppendUvarint(key, uint64(len(a.Value(i))))
		return append(key, a.Value(i)...)
	case *array.Date32:
		return binary.LittleEndian.AppendUint64(key, uint64(a.Value(i)))
	case *array.Time64:
		return binary.LittleEndian.AppendUint64(key, uint64(a.Value(i)))
	case *array.Timestamp:
		return binary.LittleEndian.AppendUint64(key, uint64(a.Value(i)))
	default:
		s := c.ValueStr(i)
		key = binary.AppendUvarint(key, uint64(len(s)))
		return append(key, s...)
	}
}

// PartitionValue renders the partition column's value at row i as the
// partition name: the string itself, an integer in decimal, or a date as
// YYYY-MM-DD.
func PartitionValue(c arrow.Array, i int) (string, error) {
	if c.IsNull(i) {
		return "", fmt.Errorf("row %d: partition column is null", i)
	}
	switch a := c.(type) {
	case *array.String:
		if a.Value(i) == "" {
			return "", fmt.Errorf("row %d: partition column is empty", i)
		}
		return a.Value(i), nil
	case *array.Int32:
		return strconv.FormatInt(int64(a.Value(i)), 10), nil
	case *array.Int64:
		return strconv.FormatInt(a.Value(i), 10), nil
	case *array.Date32:
		return a.Value(i).ToTime().UTC().Format(time.DateOnly), nil
	default:
		return "", fmt.Errorf("partition column of type %s is not supported", c.DataType())
	}
}
