package batch_test

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
)

func Example() {
	schema := catalog.Schema{Columns: []catalog.Column{
		{Name: "id", Type: catalog.BigInt},
		{Name: "price", Type: catalog.Decimal(10, 2), Nullable: true},
		{Name: "at", Type: catalog.TimestampLTZ(3), Nullable: true},
	}}
	dec := json.NewDecoder(strings.NewReader(`[
		{"id": 1, "price": "12.5", "at": "2024-05-01T13:45:00.123+02:00"},
		{"id": 9007199254740993}
	]`))
	dec.UseNumber()
	var rows []map[string]any
	if err := dec.Decode(&rows); err != nil {
		panic(err)
	}
	rec, err := batch.FromJSON(memory.DefaultAllocator, schema, rows)
	if err != nil {
		panic(err)
	}
	defer rec.Release()
	fmt.Println(rec.Schema().Field(2).Type)

	out, _ := batch.ToJSON(rec)
	text, _ := json.Marshal(out)
	fmt.Println(string(text))

	_, err = batch.FromJSON(memory.DefaultAllocator, schema, []map[string]any{{"id": 1}, {"id": 2, "price": "abc"}})
	fmt.Println(err)
	// Output:
	// timestamp[ms, tz=UTC]
	// [{"at":"2024-05-01T11:45:00.123Z","id":1,"price":"12.50"},{"at":null,"id":"9007199254740993","price":null}]
	// row 1, column "price": want DECIMAL(10,2), got string "abc"
}
