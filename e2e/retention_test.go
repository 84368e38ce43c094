package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRetentionDeletesExpiredSegments: with table.log.ttl, committed
// segments older than the TTL disappear from the catalog and the object
// store, the earliest offset moves, and reading before it is out_of_range;
// on each backend.
func TestRetentionDeletesExpiredSegments(t *testing.T) {
	onBackends(t, testRetentionDeletesExpiredSegments)
}

func testRetentionDeletesExpiredSegments(t *testing.T, be backend) {
	dir := t.TempDir()
	p := startServer(t, dir, append(be.args, "-retention.interval", "200ms")...)
	post := func(method, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(p.url()+"/strom.v1."+method, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cli(t, p, "db", "create", "r")
	cli(t, p, "table", "create", "r.short", "-c", "id BIGINT NOT NULL", "-p", "table.log.ttl=1s")
	for i := 0; i < 3; i++ {
		if code, body := post("WriteService/Append", `{"database":"r","table":"short","rows":[{"id":1},{"id":2}]}`); code != 200 {
			t.Fatalf("append: %d %s", code, body)
		}
	}
	objects := func() int { return be.segmentObjects(t, dir) }
	if objects() == 0 {
		t.Fatal("no segment object written")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := post("ReadService/ListOffsets", `{"database":"r","table":"short","spec":"OFFSET_SPEC_EARLIEST"}`)
		if strings.Contains(body, `"offset":"6"`) && objects() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("segments not expired after 20s: earliest %s, %d objects left", body, objects())
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, body := post("ReadService/Fetch", `{"database":"r","table":"short","bucket":0,"offset":0}`)
	if code != 400 || !strings.Contains(body, "out_of_range") {
		t.Fatalf("fetch of an expired offset: %d %s", code, body)
	}
	// New data is still written and read after the sweep.
	if code, body := post("WriteService/Append", `{"database":"r","table":"short","rows":[{"id":3}]}`); code != 200 || !strings.Contains(body, `"baseOffset":"6"`) {
		t.Fatalf("append after retention: %d %s", code, body)
	}
	p.stop(t)
}
