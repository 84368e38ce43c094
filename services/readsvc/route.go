package readsvc

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
	"github.com/strom-io/strom/services/writer"
)

// keyBucket returns the bucket of the row of primary-key table t whose
// values (one per column, kv.Row's types; at least the bucket key's and
// the partition column's) are row: the bucket writer.Router.Route sends
// it to, computed from the values instead of an Arrow batch. Route's
// errors are its errors, for the batch's row 0.
func keyBucket(t catalog.Table, row []any) (catalog.BucketID, error) {
	b := catalog.BucketID{TableID: t.ID}
	keyCols := t.BucketKey
	if len(keyCols) == 0 {
		keyCols = t.Schema.PrimaryKey
	}
	var key []byte
	for _, name := range keyCols {
		i := columnIndex(t.Schema, name)
		if i < 0 {
			return b, fmt.Errorf("writer: bucket key column %q not in the batch", name)
		}
		key = appendBucketKeyValue(key, t.Schema.Columns[i].Type, row[i])
	}
	b.Bucket = writer.BucketOf(key, t.Buckets)
	if t.PartitionKey != "" {
		i := columnIndex(t.Schema, t.PartitionKey)
		if i < 0 {
			return b, fmt.Errorf("writer: partition column %q not in the batch", t.PartitionKey)
		}
		p, err := partitionValue(t.Schema.Columns[i].Type, row[i])
		if err != nil {
			return b, err
		}
		b.Partition = p
	}
	return b, nil
}

// appendBucketKeyValue appends the encoding of v, a value of type typ,
// that the writer's router hashes for the column's Arrow array: a null
// or presence byte, then the value as a little-endian uint64 (every
// integer kind, DATE, TIME, TIMESTAMP: the value sign-extended; FLOAT and
// DOUBLE: the bits of the float64), a DECIMAL's high and low 64 bits, or
// a STRING's or BYTES' length (uvarint) and bytes.
func appendBucketKeyValue(key []byte, typ catalog.Type, v any) []byte {
	if v == nil {
		return append(key, 0)
	}
	key = append(key, 1)
	switch x := v.(type) {
	case bool:
		if x {
			return append(key, 1)
		}
		return append(key, 0)
	case int64:
		return binary.LittleEndian.AppendUint64(key, uint64(x))
	case float64:
		return binary.LittleEndian.AppendUint64(key, math.Float64bits(x))
	case decimal128.Num:
		key = binary.LittleEndian.AppendUint64(key, uint64(x.HighBits()))
		return binary.LittleEndian.AppendUint64(key, x.LowBits())
	case string:
		key = binary.AppendUvarint(key, uint64(len(x)))
		return append(key, x...)
	case []byte:
		key = binary.AppendUvarint(key, uint64(len(x)))
		return append(key, x...)
	}
	s := fmt.Sprint(v) // not a value of the table's types
	key = binary.AppendUvarint(key, uint64(len(s)))
	return append(key, s...)
}

// partitionValue names the partition of v, the partition column's value
// (of type typ), as writer.PartitionValue does for row 0 of a batch: a
// string itself, an INT or BIGINT in decimal, a DATE as YYYY-MM-DD.
func partitionValue(typ catalog.Type, v any) (string, error) {
	if v == nil {
		return "", fmt.Errorf("row 0: partition column is null")
	}
	switch typ.Kind {
	case catalog.KindString:
		if s, _ := v.(string); s == "" {
			return "", fmt.Errorf("row 0: partition column is empty")
		}
		return v.(string), nil
	case catalog.KindInt, catalog.KindBigInt:
		return strconv.FormatInt(v.(int64), 10), nil
	case catalog.KindDate:
		return arrow.Date32(v.(int64)).ToTime().UTC().Format(time.DateOnly), nil
	}
	field := batch.ArrowSchema(catalog.Schema{Columns: []catalog.Column{{Name: "p", Type: typ}}}).Field(0)
	return "", fmt.Errorf("partition column of type %s is not supported", field.Type)
}
