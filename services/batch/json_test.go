package batch_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/batch"
)

// roundTrip checks JSON → Arrow → JSON → Arrow for one column of type typ:
// in holds JSON values (a JSON array text), out what ToJSON must give for
// them. The batch must also survive encoding/json with and without
// UseNumber and google.protobuf.Struct.
func roundTrip(t *testing.T, typ string, in string, out []any) {
	t.Helper()
	mem := checkedMem(t)
	s := catalog.Schema{Columns: []catalog.Column{{Name: "v", Type: catalog.MustParseType(typ), Nullable: true}}}
	var vals []json.RawMessage
	if err := json.Unmarshal([]byte(in), &vals); err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	text.WriteString("[")
	for i, v := range vals {
		if i > 0 {
			text.WriteString(",")
		}
		text.WriteString(`{"v":` + string(v) + `}`)
	}
	text.WriteString("]")
	rows := decodeRows(t, text.String())

	rec, err := batch.FromJSON(mem, s, rows)
	if err != nil {
		t.Fatalf("%s: FromJSON: %v", typ, err)
	}
	defer rec.Release()
	got, err := batch.ToJSON(rec)
	if err != nil {
		t.Fatalf("%s: ToJSON: %v", typ, err)
	}
	if len(got) != len(out) {
		t.Fatalf("%s: %d rows, want %d", typ, len(got), len(out))
	}
	for i := range out {
		if g := got[i]["v"]; !reflect.DeepEqual(g, out[i]) {
			t.Errorf("%s row %d: ToJSON gave %#v (%T), want %#v (%T)", typ, i, g, g, out[i], out[i])
		}
	}

	again := func(how string, rows []map[string]any) {
		t.Helper()
		rec2, err := batch.FromJSON(mem, s, rows)
		if err != nil {
			t.Fatalf("%s: FromJSON after %s: %v", typ, how, err)
		}
		defer rec2.Release()
		if !identical(rec, rec2) {
			t.Errorf("%s: not identical after %s:\n%v\n%v", typ, how, rec, rec2)
		}
	}
	again("ToJSON", got)
	data, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	again("encoding/json with UseNumber", decodeRows(t, string(data)))
	var plain []map[string]any
	if err := json.Unmarshal(data, &plain); err != nil {
		t.Fatal(err)
	}
	again("encoding/json with float64", plain)
	viaStruct := make([]map[string]any, len(got))
	for i, row := range got {
		st, err := structpb.NewStruct(row)
		if err != nil {
			t.Fatalf("structpb: %v", err)
		}
		viaStruct[i] = st.AsMap()
	}
	again("google.protobuf.Struct", viaStruct)
}

// roundTripCases are JSON values of one column of each type and what
// ToJSON gives for them.
var roundTripCases = []struct {
	typ string
	in  string
	out []any
}{
	{"BOOLEAN", `[true, false, null]`, []any{true, false, nil}},
	{"TINYINT", `[-128, 127, 0, null, "12", 1.0, "1e2"]`, []any{int64(-128), int64(127), int64(0), nil, int64(12), int64(1), int64(100)}},
	{"SMALLINT", `[-32768, 32767]`, []any{int64(-32768), int64(32767)}},
	{"INT", `[-2147483648, 2147483647]`, []any{int64(math.MinInt32), int64(math.MaxInt32)}},
	{"BIGINT", `[-9223372036854775808, 9223372036854775807, "9223372036854775807", 9007199254740992, -9007199254740992, 9007199254740993, null]`,
		[]any{"-9223372036854775808", "9223372036854775807", "9223372036854775807", "9007199254740992", "-9007199254740992", "9007199254740993", nil}},
	{"FLOAT", `[0.1, -3.4028234663852886e38, 3.4028234663852886e38, 1.401298464324817e-45, -0.0, "NaN", "Infinity", "-Infinity", null]`,
		// The shortest decimal of each float32, as a float64: 0.1, not 0.10000000149011612.
		[]any{0.1, -3.4028235e38, 3.4028235e38, 1e-45, math.Copysign(0, -1), "NaN", "Infinity", "-Infinity", nil}},
	{"DOUBLE", `[0.1, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -0.0, "NaN", "Infinity", "-Infinity", "2.5"]`,
		[]any{0.1, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, math.Copysign(0, -1), "NaN", "Infinity", "-Infinity", 2.5}},
	{"DECIMAL(10,2)", `["12.34", "-12.34", 12.5, "0.05", "-0.05", "12.340", "1e2", 0, "-0", "99999999.99", "-99999999.99", null]`,
		[]any{"12.34", "-12.34", "12.50", "0.05", "-0.05", "12.34", "100.00", "0.00", "0.00", "99999999.99", "-99999999.99", nil}},
	{"DECIMAL(38,0)", `["99999999999999999999999999999999999999", "-99999999999999999999999999999999999999", 7]`,
		[]any{"99999999999999999999999999999999999999", "-99999999999999999999999999999999999999", "7"}},
	{"DECIMAL(38,38)", `["0.99999999999999999999999999999999999999", "-0.00000000000000000000000000000000000001"]`,
		[]any{"0.99999999999999999999999999999999999999", "-0.00000000000000000000000000000000000001"}},
	{"DECIMAL(38,10)", `["-1234567890123456789012345678.0123456789"]`, []any{"-1234567890123456789012345678.0123456789"}},
	{"STRING", `["", "héllo wörld", "日本語", "😀", "a\u0000b", "\"quoted\"", null]`, []any{"", "héllo wörld", "日本語", "😀", "a\x00b", `"quoted"`, nil}},
	{"BYTES", `["", "AAEC/w==", null]`, []any{"", "AAEC/w==", nil}},
	{"DATE", `["1970-01-01", "0000-01-01", "9999-12-31", "2024-02-29", "1969-12-31", "1582-10-04"]`,
		[]any{"1970-01-01", "0000-01-01", "9999-12-31", "2024-02-29", "1969-12-31", "1582-10-04"}},
	{"TIME", `["00:00:00", "23:59:59.999999", "13:45:00.123456", "13:45:00.1", "13:45:00.123456000"]`,
		[]any{"00:00:00.000000", "23:59:59.999999", "13:45:00.123456", "13:45:00.100000", "13:45:00.123456"}},
	{"TIMESTAMP(0)", `["2024-05-01T13:45:00", "2024-05-01 13:45:01", "0000-01-01T00:00:00", "9999-12-31T23:59:59", "1969-12-31T23:59:59.000"]`,
		[]any{"2024-05-01T13:45:00", "2024-05-01T13:45:01", "0000-01-01T00:00:00", "9999-12-31T23:59:59", "1969-12-31T23:59:59"}},
	{"TIMESTAMP(3)", `["2024-05-01T13:45:00.123", "1969-12-31T23:59:59.999", "2024-05-01T13:45:00"]`,
		[]any{"2024-05-01T13:45:00.123", "1969-12-31T23:59:59.999", "2024-05-01T13:45:00.000"}},
	{"TIMESTAMP(2)", `["2024-05-01T13:45:00.12"]`, []any{"2024-05-01T13:45:00.120"}},
	{"TIMESTAMP(6)", `["2024-05-01T13:45:00.123456", "0001-01-01T00:00:00.000001", "9999-12-31T23:59:59.999999"]`,
		[]any{"2024-05-01T13:45:00.123456", "0001-01-01T00:00:00.000001", "9999-12-31T23:59:59.999999"}},
	{"TIMESTAMP(9)", `["2024-05-01T13:45:00.123456789", "1677-09-21T00:12:45.000000001", "2262-04-11T23:47:15.999999999"]`,
		[]any{"2024-05-01T13:45:00.123456789", "1677-09-21T00:12:45.000000001", "2262-04-11T23:47:15.999999999"}},
	{"TIMESTAMP_LTZ(3)", `["2024-05-01T13:45:00.123+02:00", "2024-05-01T13:45:00.123Z", "2024-05-01 00:15:00+05:30", "2024-04-30T20:00:00-08:00", "2024-05-01T13:45:00z"]`,
		[]any{"2024-05-01T11:45:00.123Z", "2024-05-01T13:45:00.123Z", "2024-04-30T18:45:00.000Z", "2024-05-01T04:00:00.000Z", "2024-05-01T13:45:00.000Z"}},
	{"TIMESTAMP_LTZ(0)", `["9999-12-31T23:59:59Z", "0000-01-01T05:30:00+05:30"]`, []any{"9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z"}},
	{"TIMESTAMP_LTZ(6)", `["2024-05-01T13:45:00.123456+05:30"]`, []any{"2024-05-01T08:15:00.123456Z"}},
	{"TIMESTAMP_LTZ(9)", `["2024-05-01T13:45:00.123456789-08:00"]`, []any{"2024-05-01T21:45:00.123456789Z"}},
}

func TestRoundTripPerType(t *testing.T) {
	cases := roundTripCases
	for _, c := range cases {
		t.Run(c.typ, func(t *testing.T) { roundTrip(t, c.typ, c.in, c.out) })
	}
}

func TestFromJSONAllTypes(t *testing.T) {
	mem := checkedMem(t)
	rows := decodeRows(t, `[
		{"id": 1, "b": true, "i8": 1, "i16": 2, "i32": 3, "i64": 4, "f32": 1.5, "f64": 2.5, "dec": "3.14",
		 "s": "x", "bin": "eA==", "d": "2024-05-01", "t": "13:45:00", "ts": "2024-05-01T13:45:00", "ltz": "2024-05-01T13:45:00Z"},
		{"id": 2}
	]`)
	rec, err := batch.FromJSON(mem, allTypes, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if !rec.Schema().Equal(batch.ArrowSchema(allTypes)) || rec.NumRows() != 2 {
		t.Fatalf("got %v", rec)
	}
	got, err := batch.ToJSON(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": int64(2), "b": nil, "i8": nil, "i16": nil, "i32": nil, "i64": nil, "f32": nil, "f64": nil,
		"dec": nil, "s": nil, "bin": nil, "d": nil, "t": nil, "ts": nil, "ltz": nil}
	if !reflect.DeepEqual(got[1], want) {
		t.Fatalf("row 1: %v", got[1])
	}
	if got[0]["ltz"] != "2024-05-01T13:45:00.000Z" || got[0]["dec"] != "3.14" || got[0]["t"] != "13:45:00.000000" {
		t.Fatalf("row 0: %v", got[0])
	}
}

func TestFromJSONGoValues(t *testing.T) {
	mem := checkedMem(t)
	s := catalog.Schema{Columns: []catalog.Column{
		{Name: "i", Type: catalog.SmallInt}, {Name: "f", Type: catalog.Float}, {Name: "d", Type: catalog.Decimal(5, 1)},
		{Name: "b", Type: catalog.Bytes},
	}}
	rows := []map[string]any{
		{"i": int(7), "f": float32(0.5), "d": int64(12), "b": []byte{1, 2}},
		{"i": uint8(8), "f": float64(0.25), "d": float64(0.1), "b": "AQI="},
		{"i": int32(-9), "f": json.Number("1e3"), "d": json.Number("-1234.5"), "b": []byte{}},
	}
	rec, err := batch.FromJSON(mem, s, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	got, _ := batch.ToJSON(rec)
	want := []map[string]any{
		{"i": int64(7), "f": 0.5, "d": "12.0", "b": "AQI="},
		{"i": int64(8), "f": 0.25, "d": "0.1", "b": "AQI="},
		{"i": int64(-9), "f": 1000.0, "d": "-1234.5", "b": ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// errorSchema is the schema of fromJSONErrors.
var errorSchema = catalog.Schema{Columns: []catalog.Column{
	{Name: "id", Type: catalog.Int},
	{Name: "price", Type: catalog.Decimal(10, 2), Nullable: true},
	{Name: "i8", Type: catalog.TinyInt, Nullable: true},
	{Name: "big", Type: catalog.BigInt, Nullable: true},
	{Name: "f32", Type: catalog.Float, Nullable: true},
	{Name: "f64", Type: catalog.Double, Nullable: true},
	{Name: "ok", Type: catalog.Boolean, Nullable: true},
	{Name: "s", Type: catalog.String, Nullable: true},
	{Name: "bin", Type: catalog.Bytes, Nullable: true},
	{Name: "d", Type: catalog.Date, Nullable: true},
	{Name: "t", Type: catalog.Time, Nullable: true},
	{Name: "ts", Type: catalog.Timestamp(3), Nullable: true},
	{Name: "ns", Type: catalog.Timestamp(9), Nullable: true},
	{Name: "ltz", Type: catalog.TimestampLTZ(6), Nullable: true},
}}

// fromJSONErrors are bad rows (row 2 of a request whose rows 0 and 1 are
// valid) of errorSchema and FromJSON's error for them.
var fromJSONErrors = []struct {
	row    string // JSON object for row 2 (rows 0 and 1 are valid)
	column string
	msg    string // the whole message
}{
	{`{}`, "id", `row 2, column "id": missing value; the column is NOT NULL`},
	{`{"id": null}`, "id", `row 2, column "id": null value; the column is NOT NULL`},
	{`{"id": 1, "nope": 1}`, "nope", `row 2, column "nope": unknown column`},
	{`{"id": 1, "Price": 1}`, "Price", `row 2, column "Price": unknown column (did you mean "price"?)`},
	{`{"id": 1, "zz": 1, "aa": 2}`, "aa", `row 2, column "aa": unknown column`},
	{`{"id": "x"}`, "id", `row 2, column "id": want INT, got string "x"`},
	{`{"id": true}`, "id", `row 2, column "id": want INT, got boolean true`},
	{`{"id": [1]}`, "id", `row 2, column "id": want INT, got array`},
	{`{"id": {}}`, "id", `row 2, column "id": want INT, got object`},
	{`{"id": 1.5}`, "id", `row 2, column "id": want INT, got number 1.5: not an integer`},
	{`{"id": "1e-1"}`, "id", `row 2, column "id": want INT, got string "1e-1": not an integer`},
	{`{"id": 2147483648}`, "id", `row 2, column "id": want INT, got number 2147483648: out of range -2147483648..2147483647`},
	{`{"id": 1, "i8": 128}`, "i8", `row 2, column "i8": want TINYINT, got number 128: out of range -128..127`},
	{`{"id": 1, "i8": -129}`, "i8", `row 2, column "i8": want TINYINT, got number -129: out of range -128..127`},
	{`{"id": 1, "i8": "+1"}`, "i8", `row 2, column "i8": want TINYINT, got string "+1"`},
	{`{"id": 1, "i8": "01"}`, "i8", `row 2, column "i8": want TINYINT, got string "01"`},
	{`{"id": 1, "big": 9223372036854775808}`, "big", `row 2, column "big": want BIGINT, got number 9223372036854775808: out of range -9223372036854775808..9223372036854775807`},
	{`{"id": 1, "big": "1e19"}`, "big", `row 2, column "big": want BIGINT, got string "1e19": out of range -9223372036854775808..9223372036854775807`},
	{`{"id": 1, "big": 1e999999999999}`, "big", `row 2, column "big": want BIGINT, got number 1e999999999999: out of range -9223372036854775808..9223372036854775807`},
	{`{"id": 1, "price": "abc"}`, "price", `row 2, column "price": want DECIMAL(10,2), got string "abc"`},
	{`{"id": 1, "price": "12.345"}`, "price", `row 2, column "price": want DECIMAL(10,2), got string "12.345": more than 2 fractional digits`},
	{`{"id": 1, "price": 0.001}`, "price", `row 2, column "price": want DECIMAL(10,2), got number 0.001: more than 2 fractional digits`},
	{`{"id": 1, "price": "100000000"}`, "price", `row 2, column "price": want DECIMAL(10,2), got string "100000000": more than 10 digits`},
	{`{"id": 1, "price": "-1e8"}`, "price", `row 2, column "price": want DECIMAL(10,2), got string "-1e8": more than 10 digits`},
	{`{"id": 1, "price": "1e-999999999"}`, "price", `row 2, column "price": want DECIMAL(10,2), got string "1e-999999999": more than 2 fractional digits`},
	{`{"id": 1, "price": " 1"}`, "price", `row 2, column "price": want DECIMAL(10,2), got string " 1"`},
	{`{"id": 1, "price": "NaN"}`, "price", `row 2, column "price": want DECIMAL(10,2), got string "NaN"`},
	{`{"id": 1, "price": true}`, "price", `row 2, column "price": want DECIMAL(10,2), got boolean true`},
	{`{"id": 1, "f32": 1e39}`, "f32", `row 2, column "f32": want FLOAT, got number 1e39: out of range`},
	{`{"id": 1, "f64": 1e309}`, "f64", `row 2, column "f64": want DOUBLE, got number 1e309: out of range`},
	{`{"id": 1, "f64": "nan"}`, "f64", `row 2, column "f64": want DOUBLE, got string "nan"`},
	{`{"id": 1, "f64": "inf"}`, "f64", `row 2, column "f64": want DOUBLE, got string "inf"`},
	{`{"id": 1, "f64": "0x10"}`, "f64", `row 2, column "f64": want DOUBLE, got string "0x10"`},
	{`{"id": 1, "f64": false}`, "f64", `row 2, column "f64": want DOUBLE, got boolean false`},
	{`{"id": 1, "ok": "true"}`, "ok", `row 2, column "ok": want BOOLEAN, got string "true"`},
	{`{"id": 1, "ok": 1}`, "ok", `row 2, column "ok": want BOOLEAN, got number 1`},
	{`{"id": 1, "s": 5}`, "s", `row 2, column "s": want STRING, got number 5`},
	{`{"id": 1, "bin": "not base64!"}`, "bin", `row 2, column "bin": want BYTES, got string "not base64!": not standard base64 (with padding)`},
	{`{"id": 1, "bin": "AQI"}`, "bin", `row 2, column "bin": want BYTES, got string "AQI": not standard base64 (with padding)`},
	{`{"id": 1, "d": "2024-02-30"}`, "d", `row 2, column "d": want DATE, got string "2024-02-30": no such date`},
	{`{"id": 1, "d": "2023-02-29"}`, "d", `row 2, column "d": want DATE, got string "2023-02-29": no such date`},
	{`{"id": 1, "d": "2024-5-1"}`, "d", `row 2, column "d": want DATE, got string "2024-5-1": want "YYYY-MM-DD"`},
	{`{"id": 1, "d": "2024-05-01T00:00:00"}`, "d", `row 2, column "d": want DATE, got string "2024-05-01T00:00:00": want "YYYY-MM-DD"`},
	{`{"id": 1, "d": "10000-01-01"}`, "d", `row 2, column "d": want DATE, got string "10000-01-01": want "YYYY-MM-DD"`},
	{`{"id": 1, "d": 19000}`, "d", `row 2, column "d": want DATE, got number 19000: want a string "YYYY-MM-DD"`},
	{`{"id": 1, "t": "24:00:00"}`, "t", `row 2, column "t": want TIME, got string "24:00:00": no such time of day`},
	{`{"id": 1, "t": "23:59:60"}`, "t", `row 2, column "t": want TIME, got string "23:59:60": no such time of day`},
	{`{"id": 1, "t": "13:45"}`, "t", `row 2, column "t": want TIME, got string "13:45": want "HH:MM:SS" with up to 9 fractional digits`},
	{`{"id": 1, "t": "13:45:00.1234567"}`, "t", `row 2, column "t": want TIME, got string "13:45:00.1234567": more than 6 fractional digits`},
	{`{"id": 1, "t": "13:45:00."}`, "t", `row 2, column "t": want TIME, got string "13:45:00.": want "HH:MM:SS" with up to 9 fractional digits`},
	{`{"id": 1, "ts": "2024-05-01T13:45:00.1234"}`, "ts", `row 2, column "ts": want TIMESTAMP(3), got string "2024-05-01T13:45:00.1234": more than 3 fractional digits`},
	{`{"id": 1, "ts": "2024-05-01T13:45:00Z"}`, "ts", `row 2, column "ts": want TIMESTAMP(3), got string "2024-05-01T13:45:00Z": TIMESTAMP takes no time zone offset (use TIMESTAMP_LTZ for instants)`},
	{`{"id": 1, "ts": "2024-05-01"}`, "ts", `row 2, column "ts": want TIMESTAMP(3), got string "2024-05-01": want "YYYY-MM-DDTHH:MM:SS[.fff]"`},
	{`{"id": 1, "ts": "2024-05-01X13:45:00"}`, "ts", `row 2, column "ts": want TIMESTAMP(3), got string "2024-05-01X13:45:00": want "YYYY-MM-DDTHH:MM:SS[.fff]"`},
	{`{"id": 1, "ts": "2024-05-01T13:45:00.0000000000"}`, "ts", `row 2, column "ts": want TIMESTAMP(3), got string "2024-05-01T13:45:00.0000000000": more than 9 fractional digits`},
	{`{"id": 1, "ts": 1714571100000}`, "ts", `row 2, column "ts": want TIMESTAMP(3), got number 1714571100000: want a string "YYYY-MM-DDTHH:MM:SS[.fff]"`},
	{`{"id": 1, "ns": "2262-04-12T00:00:00"}`, "ns", `row 2, column "ns": want TIMESTAMP(9), got string "2262-04-12T00:00:00": out of range for nanosecond precision (about 1677-09-21 .. 2262-04-11)`},
	{`{"id": 1, "ltz": "2024-05-01T13:45:00"}`, "ltz", `row 2, column "ltz": want TIMESTAMP_LTZ(6), got string "2024-05-01T13:45:00": missing time zone offset: TIMESTAMP_LTZ needs "Z" or an offset like "+02:00"`},
	{`{"id": 1, "ltz": "2024-05-01T13:45:00+2:00"}`, "ltz", `row 2, column "ltz": want TIMESTAMP_LTZ(6), got string "2024-05-01T13:45:00+2:00": want "YYYY-MM-DDTHH:MM:SS[.fff]" with "Z" or an offset like "+02:00"`},
	{`{"id": 1, "ltz": "2024-05-01T13:45:00+24:00"}`, "ltz", `row 2, column "ltz": want TIMESTAMP_LTZ(6), got string "2024-05-01T13:45:00+24:00": bad time zone offset "+24:00"`},
	{`{"id": 1, "ltz": "9999-12-31T23:00:00-01:00"}`, "ltz", `row 2, column "ltz": want TIMESTAMP_LTZ(6), got string "9999-12-31T23:00:00-01:00": out of range 0000-01-01 .. 9999-12-31 (UTC)`},
	{`{"id": 1, "ltz": "0000-01-01T00:00:00+00:01"}`, "ltz", `row 2, column "ltz": want TIMESTAMP_LTZ(6), got string "0000-01-01T00:00:00+00:01": out of range 0000-01-01 .. 9999-12-31 (UTC)`},
}

func TestFromJSONErrors(t *testing.T) {
	s, cases := errorSchema, fromJSONErrors
	for _, c := range cases {
		t.Run(c.msg, func(t *testing.T) {
			mem := checkedMem(t)
			rows := decodeRows(t, `[{"id": 1, "price": "1.5", "s": "ok"}, {"id": 2}, `+c.row+`]`)
			rec, err := batch.FromJSON(mem, s, rows)
			if rec != nil {
				rec.Release()
				t.Fatal("got a batch with the error")
			}
			var re *batch.RowError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a *RowError", err)
			}
			if re.Row != 2 || re.Column != c.column || err.Error() != c.msg {
				t.Fatalf("got  %s (row %d, column %q)\nwant %s", err, re.Row, re.Column, c.msg)
			}
		})
	}
}

func TestFromJSONInvalidUTF8(t *testing.T) {
	mem := checkedMem(t)
	s := catalog.Schema{Columns: []catalog.Column{{Name: "s", Type: catalog.String}}}
	_, err := batch.FromJSON(mem, s, []map[string]any{{"s": "a\xffb"}})
	if err == nil || err.Error() != `row 0, column "s": want STRING, got string "a\xffb": not valid UTF-8` {
		t.Fatalf("got %v", err)
	}
}

func TestFromJSONLongValueIsShortenedInMessage(t *testing.T) {
	mem := checkedMem(t)
	s := catalog.Schema{Columns: []catalog.Column{{Name: "n", Type: catalog.Int}}}
	_, err := batch.FromJSON(mem, s, []map[string]any{{"n": strings.Repeat("x", 10000)}})
	if err == nil || len(err.Error()) > 200 || !strings.HasSuffix(err.Error(), `..."`[1:]) && !strings.Contains(err.Error(), `"...`) {
		t.Fatalf("got %v", err)
	}
}

func TestFromJSONInvalidSchema(t *testing.T) {
	mem := checkedMem(t)
	for _, s := range []catalog.Schema{
		{},
		{Columns: []catalog.Column{{Name: "a", Type: catalog.Decimal(40, 0)}}},
		{Columns: []catalog.Column{{Name: "a", Type: catalog.Int}, {Name: "a", Type: catalog.Int}}},
	} {
		_, err := batch.FromJSON(mem, s, nil)
		var re *batch.RowError
		if err == nil || errors.As(err, &re) {
			t.Errorf("%v: got %v, want a schema error", s, err)
		}
	}
}

func TestFromJSONEmpty(t *testing.T) {
	mem := checkedMem(t)
	rec, err := batch.FromJSON(mem, allTypes, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	rows, err := batch.ToJSON(rec)
	if err != nil || rec.NumRows() != 0 || len(rows) != 0 {
		t.Fatalf("got %v, %v", rows, err)
	}
}

// TestFromJSONRejectsImpreciseBigInts: a float64 past 2^53 may already be
// another integer than the one the client sent; it must come as a string.
func TestFromJSONRejectsImpreciseBigInts(t *testing.T) {
	s := catalog.Schema{Columns: []catalog.Column{{Name: "n", Type: catalog.MustParseType("BIGINT")}}}
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	_, err := batch.FromJSON(mem, s, []map[string]any{{"n": float64(1<<53 - 1)}, {"n": float64(9007199254740993)}})
	if err == nil || !strings.Contains(err.Error(), "row 1") || !strings.Contains(err.Error(), "2^53") {
		t.Fatalf("FromJSON of 2^53+1 as a float64: %v", err)
	}
	rec, err := batch.FromJSON(mem, s, []map[string]any{{"n": "9007199254740993"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if got := rec.Column(0).(*array.Int64).Value(0); got != 9007199254740993 {
		t.Fatalf("string big int = %d", got)
	}
}
