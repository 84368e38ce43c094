package objstore_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/testenv"
)

// BenchmarkPutGet writes an object and reads it back whole, per backend and
// object size. MB/s counts the bytes written plus the bytes read. Run with
//
//	cd services && go test -run '^$' -bench BenchmarkPutGet -benchtime 2s ./objstore/
//
// The s3 backend is a local versitygw (or STROM_TEST_S3_ENDPOINT); fs writes
// under the test's temp dir, with an fsync per Put.
func BenchmarkPutGet(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) objstore.Bucket
	}{
		{"fs", func(b *testing.B) objstore.Bucket { return newFS(b) }},
		{"s3", func(b *testing.B) objstore.Bucket { return newS3(b, s3Config(testenv.S3(b))) }},
	}
	sizes := []struct {
		name string
		n    int
	}{
		{"64KiB", 64 << 10},
		{"1MiB", 1 << 20},
		{"8MiB", 8 << 20},
	}
	for _, be := range backends {
		for _, size := range sizes {
			b.Run(fmt.Sprintf("%s/%s", be.name, size.name), func(b *testing.B) {
				bucket := be.open(b)
				defer bucket.Close()
				data := bytes.Repeat([]byte("strom-bench-"), size.n/12+1)[:size.n]
				buf := bytes.NewBuffer(make([]byte, 0, size.n))
				ctx := b.Context()
				b.SetBytes(2 * int64(size.n))
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					key := fmt.Sprintf("bench/%d", i%16)
					if err := bucket.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
						b.Fatal(err)
					}
					rc, err := bucket.Get(ctx, key)
					if err != nil {
						b.Fatal(err)
					}
					buf.Reset()
					_, err = io.Copy(buf, rc)
					rc.Close()
					if err != nil || buf.Len() != size.n {
						b.Fatalf("Get: %d bytes, %v", buf.Len(), err)
					}
				}
			})
		}
	}
}
