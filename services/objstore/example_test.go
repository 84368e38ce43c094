package objstore_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/strom-io/strom/services/objstore"
)

func Example() {
	dir, err := os.MkdirTemp("", "objstore-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// objstore.New picks the backend; the filesystem needs no server.
	bucket, err := objstore.New(context.Background(), objstore.Config{
		Backend:    objstore.BackendFilesystem,
		Filesystem: objstore.FSConfig{Dir: dir},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer bucket.Close()
	ctx := context.Background()

	payload := "header|columns|footer"
	if err := bucket.Put(ctx, "segments/000001", strings.NewReader(payload), int64(len(payload))); err != nil {
		log.Fatal(err)
	}
	rc, err := bucket.GetRange(ctx, "segments/000001", 7, 7)
	if err != nil {
		log.Fatal(err)
	}
	columns, _ := io.ReadAll(rc)
	rc.Close()
	fmt.Printf("range: %s\n", columns)

	_ = bucket.List(ctx, "segments/", func(key string, size int64) error {
		fmt.Printf("listed: %s (%d bytes)\n", key, size)
		return nil
	})

	_, err = bucket.Size(ctx, "segments/000002")
	fmt.Println("missing:", objstore.IsNotExist(err))
	// Output:
	// range: columns
	// listed: segments/000001 (21 bytes)
	// missing: true
}
