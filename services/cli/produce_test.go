package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// fakeWrite is a WriteService that keeps rows and rejects a row holding
// the column "bad".
type fakeWrite struct {
	stromv1connect.UnimplementedWriteServiceHandler
	mu   sync.Mutex
	rows []map[string]any
}

func (f *fakeWrite) Append(_ context.Context, req *connect.Request[stromv1.AppendRequest]) (*connect.Response[stromv1.AppendResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range req.Msg.GetRows() {
		if r.GetFields()["bad"] != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("row %d: unknown column \"bad\"", i))
		}
	}
	base := len(f.rows)
	for _, r := range req.Msg.GetRows() {
		f.rows = append(f.rows, r.AsMap())
	}
	return connect.NewResponse(&stromv1.AppendResponse{Offsets: []*stromv1.BucketOffsets{{BaseOffset: int64(base), Count: int64(len(req.Msg.GetRows()))}}}), nil
}

func produceTo(t *testing.T, input, format string, batchRows int) (*fakeWrite, produceStats, error) {
	t.Helper()
	f := &fakeWrite{}
	mux := http.NewServeMux()
	mux.Handle(stromv1connect.NewWriteServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := client.New(srv.URL)
	st, err := produce(t.Context(), func(opts ...client.ProducerOption) *client.Producer {
		return c.NewProducer("db", "t", append(opts, client.WithBatchRows(batchRows))...)
	}, strings.NewReader(input), format)
	return f, st, err
}

func TestProduceJSONLines(t *testing.T) {
	f, st, err := produceTo(t, "{\"id\": 1, \"big\": 12345678901234567890}\n\n  {\"id\": 2.5}\n", "json", 10)
	if err != nil {
		t.Fatal(err)
	}
	if st.rows != 2 || len(f.rows) != 2 || f.rows[0]["big"] != "12345678901234567890" || f.rows[1]["id"] != 2.5 {
		t.Errorf("stats %+v, rows %v", st, f.rows)
	}
	if s := st.summary(); !strings.Contains(s, "produced 2 rows") {
		t.Errorf("summary %q", s)
	}
}

func TestProduceBadJSONLine(t *testing.T) {
	f, st, err := produceTo(t, "{\"id\": 1}\n{\"id\": 2}\n\n{\"id\": \n{\"id\": 4}\n", "json", 10)
	if err == nil || !strings.Contains(err.Error(), "line 4: invalid JSON") {
		t.Fatalf("err %v, want line 4", err)
	}
	if st.rows != 2 || len(f.rows) != 2 {
		t.Errorf("rows before the bad line: sent %d, written %d; want 2", st.rows, len(f.rows))
	}
	for _, bad := range []string{"[1]\n", "null\n", "{} {}\n"} {
		if _, _, err := produceTo(t, bad, "json", 10); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err %v, want line 1", bad, err)
		}
	}
}

func TestProduceServerErrorNamesLines(t *testing.T) {
	input := "{\"id\": 1}\n{\"id\": 2}\n\n{\"bad\": 3}\n{\"id\": 4}\n"
	_, st, err := produceTo(t, input, "json", 2)
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "lines 4 to 5") {
		t.Fatalf("err %v, want the rejected batch at lines 4 to 5", err)
	}
	if st.failed != 2 {
		t.Errorf("failed %d rows, want 2", st.failed)
	}
}

func TestProduceCSV(t *testing.T) {
	input := "id,name,note\n1,ann,\n2,\"bo\nb\",x\n3,cy,z\n"
	f, st, err := produceTo(t, input, "csv", 10)
	if err != nil {
		t.Fatal(err)
	}
	if st.rows != 3 || f.rows[0]["id"] != "1" || f.rows[0]["note"] != nil || f.rows[1]["name"] != "bo\nb" {
		t.Errorf("rows %v", f.rows)
	}
	if _, _, err := produceTo(t, "id,name\n1,a\n2\n", "csv", 10); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("short record: err %v, want line 3", err)
	}
}

func TestLineMap(t *testing.T) {
	var m lineMap
	for row, line := range []int64{1, 2, 4, 5, 9} {
		m.add(int64(row), line)
	}
	for row, want := range []int64{1, 2, 4, 5, 9} {
		if got := m.line(int64(row)); got != want {
			t.Errorf("line(%d) = %d, want %d", row, got, want)
		}
	}
}
