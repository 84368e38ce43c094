package wal_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/strom-io/strom/services/wal"
)

// A frontend opens its WAL at start, replays what was not yet committed to
// object storage, appends requests and releases them once committed.
func Example() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	w, err := wal.Open(wal.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	for _, req := range []string{"put a", "put b", "put c"} {
		lsn, err := w.Append(context.Background(), []byte(req)) // returns once fsynced
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("acknowledged", lsn)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	// After a restart: replay everything after the last committed LSN (say 1).
	w, err = wal.Open(wal.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	err = w.Replay(2, func(lsn uint64, payload []byte) error {
		fmt.Printf("replay %d %s\n", lsn, payload)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Once LSNs up to 3 are committed to object storage and the catalog:
	if err := w.TruncateBefore(4); err != nil {
		log.Fatal(err)
	}
	// Output:
	// acknowledged 1
	// acknowledged 2
	// acknowledged 3
	// replay 2 put b
	// replay 3 put c
}
