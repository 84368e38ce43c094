package readsvc

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/tiering/lake"
)

// cursorVersion is the first byte of every page token this server makes.
const cursorVersion = 1

// maxCursorBytes bounds a page token's JSON once inflated.
const maxCursorBytes = 4 << 20

// errBadToken: a page_token this server did not make, or damaged.
var errBadToken = errors.New("page_token: not a token of this scan's pages")

// cursor is where a scan continues: the page token, opaque to clients.
// It holds what the scan was asked for (to refuse a token sent with
// another request), the rows it returned, and the position after the
// last one.
type cursor struct {
	Table   int64    `json:"t"`
	Union   bool     `json:"u,omitempty"`
	Columns []string `json:"c,omitempty"`
	Limit   int64    `json:"l,omitempty"`
	Done    int64    `json:"n,omitempty"` // rows returned so far

	// ScanKV: the bucket and the last key returned in it.
	Partition string `json:"p,omitempty"`
	Bucket    int32  `json:"b,omitempty"`
	After     []byte `json:"k,omitempty"`

	// Union scans: the buckets left with the ends fixed when the scan
	// started, the first the one the scan is in.
	Ends []bucketEnd `json:"e,omitempty"`
	// Snapshot is the lake snapshot a primary-key union scan reads.
	Snapshot int64 `json:"s,omitempty"`
	// Offset: ScanUnionLog: the bucket's next offset; ScanUnionPK: the
	// next offset of its changelog tail, once its lake rows are done.
	Offset int64 `json:"o,omitempty"`
	// Lake: ScanUnionPK: the position in the bucket's lake rows.
	Lake *lake.RowsPos `json:"r,omitempty"`
}

// bucketEnd is a bucket of a union scan and the offset it ends at.
type bucketEnd struct {
	Partition string `json:"p,omitempty"`
	Bucket    int32  `json:"b"`
	End       int64  `json:"e"`
}

// encode returns c as a page token: URL-safe base64 of a version byte and
// the deflated JSON.
func (c cursor) encode() (string, error) {
	js, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	buf.WriteByte(cursorVersion)
	w, err := flate.NewWriter(&buf, flate.BestSpeed)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(js); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(buf.Bytes()), nil
}

// decodeCursor parses a page token strictly.
func decodeCursor(token string) (*cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 2 || raw[0] != cursorVersion {
		return nil, fmt.Errorf("%w: pass the next_page_token of the previous page unchanged", errBadToken)
	}
	r := flate.NewReader(bytes.NewReader(raw[1:]))
	js, err := io.ReadAll(io.LimitReader(r, maxCursorBytes+1))
	if err != nil || len(js) > maxCursorBytes {
		return nil, fmt.Errorf("%w: pass the next_page_token of the previous page unchanged", errBadToken)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var c cursor
	if err := dec.Decode(&c); err != nil || dec.More() {
		return nil, fmt.Errorf("%w: pass the next_page_token of the previous page unchanged", errBadToken)
	}
	if c.Done < 0 || c.Offset < 0 || c.Bucket < 0 || c.Lake != nil && (c.Lake.Chunk < 0 || c.Lake.Row < 0) {
		return nil, fmt.Errorf("%w: pass the next_page_token of the previous page unchanged", errBadToken)
	}
	for _, e := range c.Ends {
		if e.Bucket < 0 || e.End < 0 {
			return nil, fmt.Errorf("%w: pass the next_page_token of the previous page unchanged", errBadToken)
		}
	}
	return &c, nil
}

// check refuses a token of another scan than m of t: the fields that
// choose the rows must be those of the scan's first request.
func (c *cursor) check(t catalog.Table, m *stromv1.ScanRequest) error {
	const again = "a page_token continues the scan that returned it: send it with the first request's database, table, union, columns and limit"
	switch {
	case c.Table != t.ID:
		return fmt.Errorf("page_token: it is of another table than %s.%s; %s", t.Database, t.Name, again)
	case c.Union != m.GetUnion():
		return fmt.Errorf("page_token: it is of a scan with union %t; %s", c.Union, again)
	case !slices.Equal(c.Columns, m.GetColumns()):
		return fmt.Errorf("page_token: it is of a scan of columns %q; %s", c.Columns, again)
	case c.Limit != m.GetLimit():
		return fmt.Errorf("page_token: it is of a scan with limit %d; %s", c.Limit, again)
	case c.Union && len(c.Ends) == 0:
		return fmt.Errorf("%w: pass the next_page_token of the previous page unchanged", errBadToken)
	}
	return nil
}
