package lake_test

import (
	"fmt"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/tiering/lake"
)

// The strom.offsets summary of a snapshot: per bucket (and partition), the
// offset of the first record not yet in the lake.
func ExampleEncodeOffsets() {
	fmt.Println(lake.EncodeOffsets(map[catalog.BucketID]int64{
		{TableID: 7, Bucket: 1}:                          120,
		{TableID: 7, Bucket: 0}:                          80,
		{TableID: 7, Partition: "2024-05-01", Bucket: 0}: 15,
	}))
	offsets, _ := lake.DecodeOffsets(`[{"bucket":0,"offset":80}]`, 7)
	fmt.Println(offsets)
	// Output:
	// [{"bucket":0,"offset":80},{"bucket":1,"offset":120},{"partition":"2024-05-01","bucket":0,"offset":15}]
	// map[table 7 partition "" bucket 0:80]
}
