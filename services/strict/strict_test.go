package strict_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/services/strict"
)

func TestUnmarshalJSONRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  proto.Message
		json string
		want string
	}{
		{"misspelled field", &stromv1.FetchRequest{}, `{"database":"d","table":"t","colums":["a"]}`,
			`unknown field "colums" in strom.v1.FetchRequest; did you mean "columns"?`},
		{"singular of a repeated field", &stromv1.UpsertRequest{}, `{"database":"d","table":"t","target_column":["v"]}`,
			`unknown field "target_column" in strom.v1.UpsertRequest; did you mean "target_columns"?`},
		{"camelCase typo", &stromv1.UpsertRequest{}, `{"targetColumn":["v"]}`,
			`unknown field "targetColumn" in strom.v1.UpsertRequest; did you mean "targetColumns"?`},
		{"nested field", &stromv1.CreateTableRequest{}, `{"database":"d","name":"t","schema":{"columns":[{"name":"id","type":"BIGINT"}],"primarykey":["id"]}}`,
			`unknown field "primarykey" in strom.v1.Schema at schema.primarykey; did you mean "primaryKey"?`},
		{"field of a list element", &stromv1.AlterTableRequest{}, `{"add_columns":[{"name":"a","type":"INT"},{"name":"b","type":"INT","nulable":true}]}`,
			`unknown field "nulable" in strom.v1.Column at add_columns[1].nulable; did you mean "nullable"?`},
		{"nothing close", &stromv1.ListDatabasesRequest{}, `{"bogus":1}`,
			`unknown field "bogus" in strom.v1.ListDatabasesRequest`},
		{"enum name typo", &stromv1.ListOffsetsRequest{}, `{"database":"d","table":"t","spec":"OFFSET_SPEC_EARLYEST"}`,
			`unknown value "OFFSET_SPEC_EARLYEST" for field spec of strom.v1.ListOffsetsRequest (enum strom.v1.OffsetSpec); did you mean "OFFSET_SPEC_EARLIEST"?`},
		{"enum number", &stromv1.ListOffsetsRequest{}, `{"database":"d","table":"t","spec":99}`,
			`unknown value 99 for field spec of strom.v1.ListOffsetsRequest (enum strom.v1.OffsetSpec); want one of OFFSET_SPEC_UNSPECIFIED, OFFSET_SPEC_EARLIEST, OFFSET_SPEC_LATEST, OFFSET_SPEC_TIMESTAMP`},
		{"enum name far from any", &stromv1.AppendRequest{}, `{"durability":"DURABILITY_BOGUS"}`,
			`unknown value "DURABILITY_BOGUS" for field durability of strom.v1.AppendRequest (enum strom.v1.Durability); want one of DURABILITY_UNSPECIFIED, DURABILITY_DURABLE, DURABILITY_WAL`},
		{"enum plural", &stromv1.FetchRequest{}, `{"format":"FORMAT_ARROWS"}`,
			`unknown value "FORMAT_ARROWS" for field format of strom.v1.FetchRequest (enum strom.v1.Format); did you mean "FORMAT_ARROW"?`},
		{"enum without its prefix, nested", &stromv1.SubscribeRequest{}, `{"fetch":{"database":"d","format":"arrow"}}`,
			`unknown value "arrow" for field format of strom.v1.FetchRequest (enum strom.v1.Format) at fetch.format; did you mean "FORMAT_ARROW"?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := strict.UnmarshalJSON([]byte(tc.json), tc.msg)
			var se *strict.Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *strict.Error", err)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
}

func TestUnmarshalJSONAccepts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		msg   proto.Message
		json  string
		check func(proto.Message) bool
	}{
		{"snake_case", &stromv1.UpsertRequest{}, `{"database":"d","table":"t","target_columns":["v"],"writer_id":"w","durability":"DURABILITY_WAL"}`,
			func(m proto.Message) bool {
				u := m.(*stromv1.UpsertRequest)
				return len(u.GetTargetColumns()) == 1 && u.GetWriterId() == "w" && u.GetDurability() == stromv1.Durability_DURABILITY_WAL
			}},
		{"camelCase", &stromv1.UpsertRequest{}, `{"database":"d","table":"t","targetColumns":["v"],"writerId":"w","durability":2}`,
			func(m proto.Message) bool {
				u := m.(*stromv1.UpsertRequest)
				return len(u.GetTargetColumns()) == 1 && u.GetWriterId() == "w" && u.GetDurability() == stromv1.Durability_DURABILITY_WAL
			}},
		{"free-form rows and a timestamp", &stromv1.AppendRequest{}, `{"rows":[{"anything":1,"nested":{"x":[null,"y"]}}]}`,
			func(m proto.Message) bool { return len(m.(*stromv1.AppendRequest).GetRows()) == 1 }},
		{"timestamp", &stromv1.ListOffsetsRequest{}, `{"spec":"OFFSET_SPEC_TIMESTAMP","timestamp":"2025-01-02T03:04:05Z"}`,
			func(m proto.Message) bool { return m.(*stromv1.ListOffsetsRequest).GetTimestamp().GetSeconds() > 0 }},
		{"null fields", &stromv1.FetchRequest{}, `{"columns":null,"format":null}`,
			func(m proto.Message) bool { return len(m.(*stromv1.FetchRequest).GetColumns()) == 0 }},
		{"properties map", &stromv1.CreateTableRequest{}, `{"properties":{"table.log.ttl":"7d"}}`,
			func(m proto.Message) bool {
				return m.(*stromv1.CreateTableRequest).GetProperties()["table.log.ttl"] == "7d"
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := strict.UnmarshalJSON([]byte(tc.json), tc.msg); err != nil {
				t.Fatal(err)
			}
			if !tc.check(tc.msg) {
				t.Fatalf("decoded %v", tc.msg)
			}
		})
	}
}

// TestUnmarshalJSONOtherErrors: JSON that is wrong in other ways keeps
// protojson's error, with the message named.
func TestUnmarshalJSONOtherErrors(t *testing.T) {
	for _, in := range []string{`{"database":`, `{"bucket":"x"}`, `[1]`, `{"database":"a","database":"b"}`} {
		err := strict.UnmarshalJSON([]byte(in), &stromv1.FetchRequest{})
		var se *strict.Error
		if err == nil || errors.As(err, &se) {
			t.Fatalf("%s: error %v, want protojson's", in, err)
		}
		if got := err.Error(); len(got) < len("strom.v1.FetchRequest") || got[:len("strom.v1.FetchRequest")] != "strom.v1.FetchRequest" {
			t.Fatalf("%s: error %q does not name the message", in, got)
		}
	}
}

// withUnknown is the binary m followed by field 999 (a varint), which m
// does not define.
func withUnknown(t *testing.T, m proto.Message) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	data = protowire.AppendTag(data, 999, protowire.VarintType)
	return protowire.AppendVarint(data, 1)
}

func TestUnmarshalBinary(t *testing.T) {
	// Field 1 (fetch) of a SubscribeRequest holding a FetchRequest with an
	// unknown field.
	inner := withUnknown(t, &stromv1.FetchRequest{Database: "d"})
	nested := protowire.AppendTag(nil, 1, protowire.BytesType)
	nested = protowire.AppendBytes(nested, inner)
	for _, tc := range []struct {
		name string
		msg  proto.Message
		data []byte
		want string
	}{
		{"unknown field", &stromv1.FetchRequest{}, withUnknown(t, &stromv1.FetchRequest{Database: "d"}),
			"unknown field number 999 in strom.v1.FetchRequest"},
		{"unknown field, nested", &stromv1.SubscribeRequest{}, nested,
			"unknown field number 999 in strom.v1.FetchRequest at fetch.#999"},
		{"enum number", &stromv1.SubscribeRequest{}, marshal(t, &stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{Format: 99}}),
			"unknown value 99 for field format of strom.v1.FetchRequest (enum strom.v1.Format) at fetch.format; want one of FORMAT_UNSPECIFIED, FORMAT_JSON, FORMAT_ARROW"},
		{"negative enum number", &stromv1.DeleteRequest{}, marshal(t, &stromv1.DeleteRequest{Durability: -1}),
			"unknown value -1 for field durability of strom.v1.DeleteRequest (enum strom.v1.Durability); want one of DURABILITY_UNSPECIFIED, DURABILITY_DURABLE, DURABILITY_WAL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := strict.Unmarshal(tc.data, tc.msg)
			var se *strict.Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *strict.Error", err)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
	ok := &stromv1.AppendRequest{Database: "d", Table: "t", Durability: stromv1.Durability_DURABILITY_WAL}
	var got stromv1.AppendRequest
	if err := strict.Unmarshal(marshal(t, ok), &got); err != nil || !proto.Equal(&got, ok) {
		t.Fatalf("valid message: %v, decoded %v", err, &got)
	}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzUnmarshal: neither decoder panics, and whatever they accept has no
// unknown fields and no undefined enum values.
func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(nil))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"fetch":{"format":"arrow","colums":["a"]}}`))
	f.Add([]byte(`{"fetch":{"format":7}}`))
	f.Add([]byte(`{"fetch":`))
	seed, err := proto.Marshal(&stromv1.SubscribeRequest{Fetch: &stromv1.FetchRequest{Format: 99, Columns: []string{"a"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{0x0a, 0x03, 0xc8, 0x3e, 0x01})
	f.Add([]byte{0x0a, 0x05, 0xc8})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, dec := range []func([]byte, proto.Message) error{strict.Unmarshal, strict.UnmarshalJSON} {
			var m stromv1.SubscribeRequest
			if err := dec(data, &m); err != nil {
				continue
			}
			if err := strict.Check(&m); err != nil {
				t.Fatalf("accepted %q, but Check says %v", data, err)
			}
			if len(m.ProtoReflect().GetUnknown()) > 0 || len(m.GetFetch().ProtoReflect().GetUnknown()) > 0 {
				t.Fatalf("accepted %q with unknown fields", data)
			}
			if _, ok := stromv1.Format_name[int32(m.GetFetch().GetFormat())]; !ok {
				t.Fatalf("accepted %q with format %d", data, m.GetFetch().GetFormat())
			}
		}
	})
}
