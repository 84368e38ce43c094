package readsvc

import (
	"context"
	"iter"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/tiering/lake"
)

// lakeAhead is how many batches a lake read hands over ahead of the scan;
// lakeAheadBuckets how many buckets after the current one are read ahead.
const (
	lakeAhead        = 4
	lakeAheadBuckets = 2
)

// lakeRead reads the lake part of one bucket of a union scan in its own
// goroutine, ahead of the scan: the scan reads a bucket's lake rows while
// the next bucket's are read and decoded (Parquet decoding and object
// store latency dominate a union scan). It holds the batch it reads and
// lakeAhead more.
type lakeRead struct {
	bucket int            // the scan's bucket it reads
	snap   *lake.Snapshot // the snapshot it reads
	ch     chan lakeItem
	cancel context.CancelFunc
	done   chan struct{}
}

// lakeItem is a batch of a lakeRead with the position of its first row
// (RowsFrom), or the read's error.
type lakeItem struct {
	rec arrow.RecordBatch
	at  lake.RowsPos
	err error
}

// startLakeRead starts reading seq, the lake part of the scan's bucket
// bucket in snapshot snap.
func startLakeRead(ctx context.Context, snap *lake.Snapshot, bucket int, seq iter.Seq2[lakeItem, error]) *lakeRead {
	ctx, cancel := context.WithCancel(ctx)
	lr := &lakeRead{bucket: bucket, snap: snap, ch: make(chan lakeItem, lakeAhead), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(lr.done)
		defer close(lr.ch)
		for it, err := range seq {
			if err != nil {
				it = lakeItem{err: err}
			}
			select {
			case lr.ch <- it:
			case <-ctx.Done():
				if it.rec != nil {
					it.rec.Release()
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return lr
}

// records is Snapshot.Records as lake items.
func records(ctx context.Context, snap *lake.Snapshot, b catalog.BucketID, from, to int64, columns []string) iter.Seq2[lakeItem, error] {
	return func(yield func(lakeItem, error) bool) {
		for rec, err := range snap.Records(ctx, b, from, to, columns) {
			if !yield(lakeItem{rec: rec}, err) {
				return
			}
		}
	}
}

// rowsFrom is Snapshot.RowsFrom as lake items.
func rowsFrom(ctx context.Context, snap *lake.Snapshot, b catalog.BucketID, columns []string, from lake.RowsPos) iter.Seq2[lakeItem, error] {
	return func(yield func(lakeItem, error) bool) {
		for rb, err := range snap.RowsFrom(ctx, b, columns, from) {
			if !yield(lakeItem{rec: rb.Rec, at: rb.At}, err) {
				return
			}
		}
	}
}

// items yields what the read hands over; the caller owns each batch.
func (lr *lakeRead) items() iter.Seq2[lakeItem, error] {
	return func(yield func(lakeItem, error) bool) {
		for it := range lr.ch {
			if !yield(it, it.err) {
				return
			}
		}
	}
}

// lakeSeq is the lake part of the scan's bucket i in snapshot snap from
// position from: a log bucket's records [from.offset, end), a primary-key
// bucket's rows from from.lake.
func (r *unionReader) lakeSeq(ctx context.Context, snap *lake.Snapshot, i int, from position) iter.Seq2[lakeItem, error] {
	if r.t.IsPrimaryKey() {
		var at lake.RowsPos
		if from.lake != nil {
			at = *from.lake
		}
		return rowsFrom(ctx, snap, r.bucket(i), r.lakeColumns(), at)
	}
	return records(ctx, snap, r.bucket(i), from.offset, r.ends[i].End, r.columns)
}

// lakeRead returns a read of the lake part of the scan's bucket i from
// from: the one started ahead when it is of bucket i, from its start, in
// the current snapshot; else a new one. Then it starts reading the next
// lakeAheadBuckets buckets ahead. The caller closes the read.
func (r *unionReader) lakeRead(ctx context.Context, i int, from position) *lakeRead {
	var lr *lakeRead
	for len(r.ahead) > 0 && r.ahead[0].bucket <= i {
		a := r.ahead[0]
		r.ahead = r.ahead[1:]
		if a.bucket == i && a.snap == r.snap && from.offset == 0 && from.lake == nil {
			lr = a
		} else {
			a.close()
		}
	}
	if len(r.ahead) > 0 && r.ahead[0].snap != r.snap {
		r.closeAhead() // a newer snapshot: the reads ahead are of the old one
	}
	if lr == nil {
		lr = startLakeRead(ctx, r.snap, i, r.lakeSeq(ctx, r.snap, i, from))
	}
	next := i + 1
	if n := len(r.ahead); n > 0 {
		next = r.ahead[n-1].bucket + 1
	}
	for ; next <= i+lakeAheadBuckets && next < len(r.ends); next++ {
		r.ahead = append(r.ahead, startLakeRead(ctx, r.snap, next, r.lakeSeq(ctx, r.snap, next, position{})))
	}
	return lr
}

// closeAhead stops the reads ahead.
func (r *unionReader) closeAhead() {
	for _, a := range r.ahead {
		a.close()
	}
	r.ahead = nil
}

// close stops the read and releases what it read ahead.
func (lr *lakeRead) close() {
	lr.cancel()
	for it := range lr.ch {
		if it.rec != nil {
			it.rec.Release()
		}
	}
	<-lr.done
}
