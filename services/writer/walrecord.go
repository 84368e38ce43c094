package writer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/strom-io/strom/catalog"
)

// walRecordVersion is the version byte of a WAL record payload.
const walRecordVersion = 1

// errBadWALRecord marks a WAL payload this version cannot decode.
var errBadWALRecord = errors.New("writer: bad WAL record")

// walRecord is one appended batch as the WAL keeps it: enough to rebuild the
// pending batch after a restart. The layout (docs/wal.md) is a version
// byte, then uvarints (signed values zig-zag varints) and length-prefixed
// strings, then the batch as an Arrow IPC stream up to the end.
type walRecord struct {
	Bucket        catalog.BucketID
	Epoch         int64
	BaseOffset    int64
	Timestamp     time.Time
	SchemaVersion int32
	WriterID      string
	Sequence      int64
	IPC           []byte
}

func (r *walRecord) encode() []byte {
	b := make([]byte, 0, 64+len(r.Bucket.Partition)+len(r.WriterID)+len(r.IPC))
	b = append(b, walRecordVersion)
	b = binary.AppendVarint(b, r.Bucket.TableID)
	b = binary.AppendUvarint(b, uint64(len(r.Bucket.Partition)))
	b = append(b, r.Bucket.Partition...)
	b = binary.AppendVarint(b, int64(r.Bucket.Bucket))
	b = binary.AppendVarint(b, r.Epoch)
	b = binary.AppendVarint(b, r.BaseOffset)
	b = binary.AppendVarint(b, r.Timestamp.UnixMicro())
	b = binary.AppendVarint(b, int64(r.SchemaVersion))
	b = binary.AppendUvarint(b, uint64(len(r.WriterID)))
	b = append(b, r.WriterID...)
	b = binary.AppendVarint(b, r.Sequence)
	return append(b, r.IPC...)
}

// decodeWALRecord parses a payload written by encode. The IPC bytes alias
// data.
func decodeWALRecord(data []byte) (walRecord, error) {
	var r walRecord
	if len(data) == 0 || data[0] != walRecordVersion {
		return r, fmt.Errorf("%w: unknown version", errBadWALRecord)
	}
	d := decoder{buf: data[1:]}
	r.Bucket.TableID = d.varint("table id")
	r.Bucket.Partition = d.str("partition")
	bucket := d.varint("bucket")
	r.Epoch = d.varint("epoch")
	r.BaseOffset = d.varint("base offset")
	ts := d.varint("timestamp")
	sv := d.varint("schema version")
	r.WriterID = d.str("writer id")
	r.Sequence = d.varint("sequence")
	if d.err != nil {
		return walRecord{}, d.err
	}
	if bucket < 0 || bucket > catalog.MaxBuckets || sv < 0 || sv > 1<<31-1 || r.BaseOffset < 0 || r.Epoch < 0 {
		return walRecord{}, fmt.Errorf("%w: field out of range", errBadWALRecord)
	}
	r.Bucket.Bucket = int32(bucket)
	r.SchemaVersion = int32(sv)
	r.Timestamp = time.UnixMicro(ts).UTC()
	r.IPC = d.buf
	return r, nil
}

// decoder reads varints and strings, remembering the first error.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err = fmt.Errorf("%w: truncated %s", errBadWALRecord, what)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) str(what string) string {
	if d.err != nil {
		return ""
	}
	n, k := binary.Uvarint(d.buf)
	if k <= 0 || n > uint64(len(d.buf)-k) {
		d.err = fmt.Errorf("%w: truncated %s", errBadWALRecord, what)
		return ""
	}
	s := string(d.buf[k : k+int(n)])
	d.buf = d.buf[k+int(n):]
	return s
}
