package catalog_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/strom-io/strom/catalog"
)

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" means error; errSub must then appear in it
		errSub   string
	}{
		{"BOOLEAN", "BOOLEAN", ""},
		{"tinyint", "TINYINT", ""},
		{"SmallInt", "SMALLINT", ""},
		{"int", "INT", ""},
		{"INTEGER", "INT", ""},
		{"bigint", "BIGINT", ""},
		{"FLOAT", "FLOAT", ""},
		{"double", "DOUBLE", ""},
		{"DECIMAL", "DECIMAL(10,0)", ""},
		{"decimal(5)", "DECIMAL(5,0)", ""},
		{" Decimal ( 10 , 2 ) ", "DECIMAL(10,2)", ""},
		{"DECIMAL(38,38)", "DECIMAL(38,38)", ""},
		{"DECIMAL(1,0)", "DECIMAL(1,0)", ""},
		{"string", "STRING", ""},
		{"BYTES", "BYTES", ""},
		{"date", "DATE", ""},
		{"TIME", "TIME", ""},
		{"timestamp", "TIMESTAMP(6)", ""},
		{"TIMESTAMP(0)", "TIMESTAMP(0)", ""},
		{"timestamp( 9 )", "TIMESTAMP(9)", ""},
		{"TIMESTAMP_LTZ", "TIMESTAMP_LTZ(6)", ""},
		{"timestamp_ltz(3)", "TIMESTAMP_LTZ(3)", ""},
		{"\tINT\n", "INT", ""},

		{"VARCHAR", "", `unknown type "VARCHAR"`},
		{"", "", "empty type"},
		{"   ", "", "empty type"},
		{"DECIMAL(40,2)", "", "DECIMAL precision 40 out of range 1..38"},
		{"DECIMAL(0)", "", "DECIMAL precision 0 out of range 1..38"},
		{"DECIMAL(5,6)", "", "DECIMAL scale 6 out of range 0..5"},
		{"DECIMAL(5,-1)", "", "DECIMAL scale -1"},
		{"DECIMAL(1,2,3)", "", "at most 2 parameters"},
		{"DECIMAL()", "", "not an integer"},
		{"DECIMAL(x)", "", `"x" is not an integer`},
		{"DECIMAL(10", "", "missing closing parenthesis"},
		{"DECIMAL(99999999999)", "", "not an integer"},
		{"TIMESTAMP(10)", "", "TIMESTAMP precision 10 out of range 0..9"},
		{"TIMESTAMP_LTZ(-1)", "", "TIMESTAMP_LTZ precision -1 out of range 0..9"},
		{"TIMESTAMP(1,2)", "", "at most 1 parameter"},
		{"INT(4)", "", "INT takes no parameters"},
		{"INT ()", "", "INT takes no parameters"},
		{"(5)", "", "empty type"},
		{"DECIMAL(10,2)x", "", "missing closing parenthesis"},
		{"TIMESTAMP WITH TIME ZONE", "", "unknown type"},
	} {
		got, err := catalog.ParseType(tc.in)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Errorf("ParseType(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.errSub)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseType(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestTypeText(t *testing.T) {
	cols := []catalog.Column{{Name: "a", Type: catalog.Decimal(12, 3)}, {Name: "b", Type: catalog.TimestampLTZ(6), Nullable: true}}
	raw, err := json.Marshal(cols)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"Name":"a","Type":"DECIMAL(12,3)","Nullable":false},{"Name":"b","Type":"TIMESTAMP_LTZ(6)","Nullable":true}]`; string(raw) != want {
		t.Fatalf("json = %s, want %s", raw, want)
	}
	var back []catalog.Column
	if err := json.Unmarshal(raw, &back); err != nil || back[0] != cols[0] || back[1] != cols[1] {
		t.Fatalf("round trip = %v, %v", back, err)
	}
	if _, err := json.Marshal(catalog.Type{}); err == nil {
		t.Fatal("marshalling the zero Type succeeded")
	}
	var bad catalog.Type
	if err := bad.UnmarshalText([]byte("VARCHAR")); err == nil {
		t.Fatal("UnmarshalText(VARCHAR) succeeded")
	}
}

func TestTypeValidate(t *testing.T) {
	for _, bad := range []catalog.Type{{}, {Kind: catalog.KindInt, Precision: 1}, {Kind: 200}, catalog.Decimal(39, 0), catalog.Timestamp(10), {Kind: catalog.KindTimestamp, Scale: 1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%#v.Validate() = nil", bad)
		}
	}
}

func FuzzParseType(f *testing.F) {
	for _, s := range []string{"", "INT", "decimal(10,2)", "DECIMAL", "timestamp_ltz(3)", "TIMESTAMP(", "DECIMAL(,)", "(", ")", "INT)", "DECIMAL(1,2,3)", "  Bytes  ", "\x00", "DECIMAL(+5,-0)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, err := catalog.ParseType(s)
		if err != nil {
			return
		}
		if err := typ.Validate(); err != nil {
			t.Fatalf("ParseType(%q) = %#v, which does not validate: %v", s, typ, err)
		}
		again, err := catalog.ParseType(typ.String())
		if err != nil || again != typ {
			t.Fatalf("ParseType(%q) = %#v; its String %q re-parses to %#v, %v", s, typ, typ.String(), again, err)
		}
	})
}
