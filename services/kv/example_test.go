package kv_test

import (
	"fmt"
	"os"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/kv"
)

func Example() {
	dir, _ := os.MkdirTemp("", "kv-example")
	defer os.RemoveAll(dir)
	table := catalog.Table{TableSpec: catalog.TableSpec{
		Name: "prices",
		Schema: catalog.Schema{
			Columns: []catalog.Column{
				{Name: "shop", Type: catalog.String},
				{Name: "item", Type: catalog.BigInt},
				{Name: "price", Type: catalog.Decimal(10, 2), Nullable: true},
				{Name: "stock", Type: catalog.Int, Nullable: true},
			},
			PrimaryKey: []string{"shop", "item"},
		},
		BucketKey: []string{"shop"},
	}}
	b, err := kv.Open(dir, table, kv.Options{})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	c, _ := b.Prepare([]kv.Op{
		{Kind: kv.OpUpsert, Row: kv.Row{"s1", int64(1), nil, int64(5)}},
		{Kind: kv.OpUpsert, Row: kv.Row{"s1", int64(1), nil, int64(4)}},
		// A partial update: only stock of s1/2 (key columns included).
		{Kind: kv.OpUpsert, Row: kv.Row{"s1", int64(2), nil, int64(9)}, TargetColumns: []int{0, 1, 3}},
	})
	fmt.Println("changelog rows:", c.Len())
	// ... append c.Record() to the log; once committed at end offset 3:
	if err := b.Apply(c, 3); err != nil {
		panic(err)
	}
	rows, _ := b.PrefixLookup([]any{"s1"})
	for _, r := range rows {
		fmt.Println(r[0], r[1], r[3])
	}
	fmt.Println("count:", b.Count(), "applied offset:", b.AppliedOffset())
	// Output:
	// changelog rows: 4
	// s1 1 4
	// s1 2 9
	// count: 2 applied offset: 3
}
