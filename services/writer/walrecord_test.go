package writer

import (
	"bytes"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

func TestWALRecordRoundTrip(t *testing.T) {
	r := walRecord{
		Bucket:        catalog.BucketID{TableID: 42, Partition: "2024-05-01", Bucket: 7},
		Epoch:         3,
		BaseOffset:    1 << 40,
		Timestamp:     time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC),
		SchemaVersion: 2,
		WriterID:      "w-1",
		Sequence:      99,
		IPC:           []byte("arrow bytes"),
	}
	got, err := decodeWALRecord(r.encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Bucket != r.Bucket || got.Epoch != r.Epoch || got.BaseOffset != r.BaseOffset || !got.Timestamp.Equal(r.Timestamp) ||
		got.SchemaVersion != r.SchemaVersion || got.WriterID != r.WriterID || got.Sequence != r.Sequence || !bytes.Equal(got.IPC, r.IPC) {
		t.Fatalf("round trip: got %+v, want %+v", got, r)
	}
	enc := r.encode()
	for i := 0; i < len(enc)-len(r.IPC); i++ {
		if _, err := decodeWALRecord(enc[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: decoded without error", i)
		}
	}
}

func FuzzDecodeWALRecord(f *testing.F) {
	valid := (&walRecord{Bucket: catalog.BucketID{TableID: 1, Bucket: 2}, Epoch: 1, WriterID: "w", IPC: []byte{1, 2, 3}}).encode()
	f.Add([]byte{})
	f.Add([]byte{walRecordVersion})
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add(append([]byte{9}, valid[1:]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeWALRecord(data)
		if err != nil {
			return
		}
		again, err := decodeWALRecord(r.encode())
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if again.Bucket != r.Bucket || again.BaseOffset != r.BaseOffset || again.Sequence != r.Sequence || !bytes.Equal(again.IPC, r.IPC) {
			t.Fatalf("unstable round trip: %+v vs %+v", again, r)
		}
	})
}
