package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/strom-io/strom/api/client"
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// fakeScan serves ScanStream over rows 0..n-1 ({"id": i}): pages of
// page_size rows whose token is the next row's index, breaking a stream
// after breakAfter[k] pages of its k-th call (with unavailable, or
// cleanly when clean is set).
type fakeScan struct {
	stromv1connect.UnimplementedReadServiceHandler
	n          int
	breakAfter []int
	clean      bool

	mu    sync.Mutex
	calls []*stromv1.ScanRequest
}

func (f *fakeScan) ScanStream(ctx context.Context, req *connect.Request[stromv1.ScanStreamRequest], st *connect.ServerStream[stromv1.ScanStreamResponse]) error {
	m := req.Msg.GetScan()
	f.mu.Lock()
	call := len(f.calls)
	f.calls = append(f.calls, m)
	f.mu.Unlock()
	from := 0
	if m.GetPageToken() != "" {
		var err error
		if from, err = strconv.Atoi(m.GetPageToken()); err != nil {
			return connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	size := int(m.GetPageSize())
	for pages := 0; ; pages++ {
		if call < len(f.breakAfter) && pages == f.breakAfter[call] {
			if f.clean {
				return nil
			}
			return connect.NewError(connect.CodeUnavailable, errors.New("frontend went away"))
		}
		page := &stromv1.ScanResponse{}
		to := min(from+size, f.n)
		for i := from; i < to; i++ {
			r, _ := structpb.NewStruct(map[string]any{"id": i})
			page.Rows = append(page.Rows, r)
		}
		if to < f.n {
			page.NextPageToken = strconv.Itoa(to)
		}
		if err := st.Send(&stromv1.ScanStreamResponse{Page: page}); err != nil {
			return err
		}
		if to == f.n {
			return nil
		}
		from = to
	}
}

func newFakeScan(t *testing.T, f *fakeScan) *client.Client {
	mux := http.NewServeMux()
	mux.Handle(stromv1connect.NewReadServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return client.New(srv.URL)
}

func scanIDs(t *testing.T, ctx context.Context, s *client.Scanner, most int) ([]int, error) {
	t.Helper()
	var ids []int
	for row, err := range s.Rows(ctx) {
		if err != nil {
			return ids, err
		}
		ids = append(ids, int(row["id"].(float64)))
		if len(ids) == most {
			break
		}
	}
	return ids, nil
}

func wantIDs(t *testing.T, got []int, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("got %d rows %v, want ids %d..%d", len(got), got, from, to-1)
	}
	for i, id := range got {
		if id != from+i {
			t.Fatalf("row %d is id %d, want %d", i, id, from+i)
		}
	}
}

// TestScannerResumes: streams broken by retryable errors (and one that
// ends cleanly before its last page) are opened again from the token of
// the last page delivered: every row once, in order, and each call after
// the first carries the scan's request with that token.
func TestScannerResumes(t *testing.T) {
	for _, clean := range []bool{false, true} {
		f := &fakeScan{n: 50, breakAfter: []int{2, 0, 3, 1}, clean: clean}
		c := newFakeScan(t, f)
		s := c.Scan("db", "t", client.ScanUnion(), client.ScanColumns("id"), client.ScanPageSize(4),
			client.WithScanRetry(client.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
		ids, err := scanIDs(t, t.Context(), s, -1)
		if err != nil {
			t.Fatal(err)
		}
		wantIDs(t, ids, 0, 50)
		if !s.Done() || s.Token() != "" {
			t.Fatalf("after the last page: done %v, token %q", s.Done(), s.Token())
		}
		wantTokens := []string{"", "8", "8", "20", "24"}
		if len(f.calls) != len(wantTokens) {
			t.Fatalf("%d ScanStream calls, want %d", len(f.calls), len(wantTokens))
		}
		for i, m := range f.calls {
			if m.GetPageToken() != wantTokens[i] || !m.GetUnion() || m.GetPageSize() != 4 || len(m.GetColumns()) != 1 || m.GetTable() != "t" {
				t.Fatalf("call %d: %v, want the scan with token %q", i, m, wantTokens[i])
			}
		}
	}
}

// TestScannerRowsAgainContinues: Rows stopped in the middle of a page
// continues with the next row; a Scanner made from Token continues the
// scan; a non-retryable error ends the iteration with it.
func TestScannerRowsAgainContinues(t *testing.T) {
	f := &fakeScan{n: 30}
	c := newFakeScan(t, f)
	s := c.Scan("db", "t", client.ScanPageSize(7))
	ids, err := scanIDs(t, t.Context(), s, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, ids, 0, 10)
	if s.Token() != "14" || s.Done() {
		t.Fatalf("token %q, done %v after 10 rows of pages of 7", s.Token(), s.Done())
	}
	ids, err = scanIDs(t, t.Context(), s, 5)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, ids, 10, 15)
	// Another Scanner from the token: the pages after the second.
	other := c.Scan("db", "t", client.ScanPageSize(7), client.ScanFromToken(s.Token()))
	ids, err = scanIDs(t, t.Context(), other, -1)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, ids, 21, 30)
	ids, err = scanIDs(t, t.Context(), s, -1)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, ids, 15, 30)
	if ids, err := scanIDs(t, t.Context(), s, -1); err != nil || len(ids) != 0 {
		t.Fatalf("a done Scanner yielded %v, %v", ids, err)
	}

	bad := c.Scan("db", "t", client.ScanPageSize(7), client.ScanFromToken("x"))
	if _, err := scanIDs(t, t.Context(), bad, -1); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a refused scan: %v, want invalid_argument", err)
	}
	arrow := c.Scan("db", "t", client.ScanArrow())
	if _, err := scanIDs(t, t.Context(), arrow, -1); err == nil {
		t.Fatal("Rows of an Arrow scan: no error")
	}
}
