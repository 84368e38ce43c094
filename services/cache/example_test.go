package cache_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/strom-io/strom/services/cache"
	"github.com/strom-io/strom/services/objstore"
)

func Example() {
	dir, err := os.MkdirTemp("", "cache-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	bucket, err := objstore.NewFS(objstore.FSConfig{Dir: dir + "/objects"})
	if err != nil {
		log.Fatal(err)
	}
	payload := "header|columns|footer"
	if err := bucket.Put(ctx, "segments/000001", strings.NewReader(payload), int64(len(payload))); err != nil {
		log.Fatal(err)
	}

	// The cache reads through the bucket; zero sizes take the defaults.
	c, err := cache.New(cache.Config{Dir: dir + "/cache"}, bucket, nil)
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		rc, err := c.GetRange(ctx, "segments/000001", 7, 7)
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		fmt.Println(string(b))
	}
	st := c.Stats()
	fmt.Println("hits:", st.Hits, "misses:", st.Misses)
	// Output:
	// columns
	// columns
	// hits: 1 misses: 1
}
