package batch_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
)

// viaArrow is what FromJSON, ToJSON and structpb.NewStruct make of rows,
// the path Values takes a shortcut past: each row as a Struct, or
// FromJSON's error.
func viaArrow(t *testing.T, s catalog.Schema, rows []*structpb.Struct) ([]*structpb.Struct, error) {
	t.Helper()
	maps := make([]map[string]any, len(rows))
	for i, r := range rows {
		maps[i] = r.AsMap()
	}
	rec, err := batch.FromJSON(checkedMem(t), s, maps)
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	objs, err := batch.ToJSON(rec)
	if err != nil {
		t.Fatalf("ToJSON: %v", err)
	}
	out := make([]*structpb.Struct, len(objs))
	for i, o := range objs {
		if out[i], err = structpb.NewStruct(o); err != nil {
			t.Fatalf("NewStruct: %v", err)
		}
	}
	return out, nil
}

// direct is the same through Values: FromStruct, then ToStruct.
func direct(t *testing.T, s catalog.Schema, rows []*structpb.Struct) ([]*structpb.Struct, error) {
	t.Helper()
	v, err := batch.NewValues(s)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*structpb.Struct, len(rows))
	for i, r := range rows {
		vals, err := v.FromStruct(i, r)
		if err != nil {
			return nil, err
		}
		if out[i], err = v.ToStruct(i, vals, nil); err != nil {
			t.Fatalf("ToStruct: %v", err)
		}
	}
	return out, nil
}

func structs(t *testing.T, text string) []*structpb.Struct {
	t.Helper()
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		t.Fatal(err)
	}
	out := make([]*structpb.Struct, len(raw))
	for i, r := range raw {
		out[i] = &structpb.Struct{}
		if err := out[i].UnmarshalJSON(r); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
	}
	return out
}

// TestValuesAsArrow: for the values of every type of roundTripCases and
// the rows of every type of TestFromJSONAllTypes, as google.protobuf.Struct
// (numbers as float64, as requests bring them), Values gives the very
// Structs FromJSON, ToJSON and structpb.NewStruct give.
func TestValuesAsArrow(t *testing.T) {
	for _, c := range roundTripCases {
		s := catalog.Schema{Columns: []catalog.Column{{Name: "v", Type: catalog.MustParseType(c.typ), Nullable: true}}}
		var vals []json.RawMessage
		if err := json.Unmarshal([]byte(c.in), &vals); err != nil {
			t.Fatal(err)
		}
		var objs []string
		for _, v := range vals {
			objs = append(objs, `{"v":`+string(v)+`}`)
		}
		rows := structs(t, "["+strings.Join(objs, ",")+"]")
		compareValues(t, c.typ, s, rows)
	}
	compareValues(t, "every type", allTypes, structs(t, `[
		{"id": 1, "b": true, "i8": 1, "i16": 2, "i32": 3, "i64": 4, "f32": 1.5, "f64": 2.5, "dec": "3.14",
		 "s": "x", "bin": "eA==", "d": "2024-05-01", "t": "13:45:00", "ts": "2024-05-01T13:45:00", "ltz": "2024-05-01T13:45:00Z"},
		{"id": 2},
		{"id": "9007199254740993", "i64": -9007199254740993, "f32": "NaN", "f64": "-Infinity", "dec": -0.5, "ltz": "2024-05-01T13:45:00.1+02:00"}
	]`))
}

func compareValues(t *testing.T, name string, s catalog.Schema, rows []*structpb.Struct) {
	t.Helper()
	want, werr := viaArrow(t, s, rows)
	got, gerr := direct(t, s, rows)
	if fmt.Sprint(werr) != fmt.Sprint(gerr) {
		t.Fatalf("%s: error %v, through Arrow %v", name, gerr, werr)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s row %d: %v, through Arrow %v", name, i, got[i], want[i])
		}
	}
}

// TestValuesErrors: each bad row of fromJSONErrors, as a Struct, is
// refused by FromStruct with FromJSON's *RowError for it.
func TestValuesErrors(t *testing.T) {
	v, err := batch.NewValues(errorSchema)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range fromJSONErrors {
		st := &structpb.Struct{}
		if err := st.UnmarshalJSON([]byte(c.row)); err != nil {
			continue // not a Struct (1e999999999999 overflows a double): no request brings it
		}
		ok := structs(t, `[{"id": 1}, {"id": 2}]`)
		_, want := viaArrow(t, errorSchema, append(ok, st))
		if want == nil {
			t.Fatalf("%s: FromJSON took the row", c.row)
		}
		_, got := v.FromStruct(2, st)
		var re *batch.RowError
		if !errors.As(got, &re) || re.Row != 2 || got.Error() != want.Error() {
			t.Errorf("%s: FromStruct: %v\nFromJSON: %v", c.row, got, want)
		}
	}
	// Only the columns named, in the order named; NULL for missing values.
	row, err := v.FromStruct(0, structs(t, `[{"id": 7, "s": "x"}]`)[0])
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.ToStruct(0, row, []int{7, 0, 1})
	if want := `{"id":7, "price":null, "s":"x"}`; err != nil || !proto.Equal(st, structs(t, "["+want+"]")[0]) {
		t.Fatalf("ToStruct of columns 7, 0, 1 = %v, %v; want %s", st, err, want)
	}
}
