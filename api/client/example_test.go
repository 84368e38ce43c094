package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// Example_produce appends rows to shop.orders and reports the offsets. It
// needs a running server (strom server), so it has no checked output.
func Example_produce() {
	ctx := context.Background()
	c := client.New("http://localhost:9123")
	p := c.NewProducer("shop", "orders",
		client.WithDurability(stromv1.Durability_DURABILITY_DURABLE),
		client.WithOnResult(func(r client.SendResult) {
			if r.Err != nil {
				log.Printf("rows %d..%d failed: %v", r.FirstRow, r.FirstRow+r.Rows-1, r.Err)
				return
			}
			for _, o := range r.Offsets {
				log.Printf("bucket %d: offsets %d..%d", o.GetBucket(), o.GetBaseOffset(), o.GetBaseOffset()+o.GetCount()-1)
			}
		}))
	for i := range 1000 {
		if err := p.Send(ctx, map[string]any{"id": i, "amount": "12.50", "ts": time.Now()}); err != nil {
			log.Fatal(err)
		}
	}
	// Close flushes and returns the failures not reported by Flush yet.
	if err := p.Close(ctx); err != nil {
		var be *client.BatchError
		if errors.As(err, &be) {
			log.Fatalf("rows %d.. were not written: %v", be.FirstRow, be.Err)
		}
		log.Fatal(err)
	}
}

// Example_subscribe prints every row of shop.orders written so far, from
// all buckets, then stops. Without StopAtEnd it would keep following.
func Example_subscribe() {
	ctx := context.Background()
	c := client.New("http://localhost:9123")
	sub, err := c.Subscribe(ctx, "shop", "orders", client.FromEarliest(), client.WithColumns("id", "amount"), client.StopAtEnd())
	if err != nil {
		log.Fatal(err)
	}
	for row, err := range sub.Rows(ctx) {
		if err != nil {
			// Retryable errors were retried already; Rows may be called again
			// to continue from sub.Positions().
			log.Fatal(err)
		}
		fmt.Println(row.Bucket, row.Offset, row.Timestamp, row.Values["id"], row.Values["amount"])
	}
}
