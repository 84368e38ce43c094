package wal

import (
	"sync/atomic"
	"time"
)

// Metrics is a snapshot of a WAL's counters, for the service to export
// (e.g. as strom_wal_* Prometheus metrics). Counters are cumulative since
// Open. For per-batch distributions use Options.OnCommit.
type Metrics struct {
	// Appends is the number of records committed.
	Appends uint64
	// PayloadBytes is the number of payload bytes committed.
	PayloadBytes uint64
	// WrittenBytes is the number of bytes written for committed records,
	// record headers included (file headers excluded).
	WrittenBytes uint64
	// Batches is the number of group commits (one write each); Appends /
	// Batches is the mean batch size.
	Batches uint64
	// Fsyncs is the number of successful record fsyncs (one per batch
	// unless Options.NoSync).
	Fsyncs uint64
	// FsyncDuration is the total time spent in those fsyncs.
	FsyncDuration time.Duration
	// Files is the number of files in the log.
	Files int
	// FilesCreated and FilesDeleted count rollovers and files removed by
	// TruncateBefore.
	FilesCreated, FilesDeleted uint64
	// Failed is true once an I/O error has failed the WAL.
	Failed bool
	// WriteErrors counts failed writes (and file creations) that were
	// rolled back, e.g. on a full disk; the WAL went on.
	WriteErrors uint64
	// FreeBytes is the space available in the WAL's filesystem at the
	// last measurement (at most 100 ms old), -1 if unknown.
	FreeBytes int64
	// SpaceRejections counts CheckSpace calls that refused a write because
	// FreeBytes was below Options.MinFreeBytes.
	SpaceRejections uint64
}

type stats struct {
	appends, payloadBytes, writtenBytes, batches, fsyncs atomic.Uint64
	fsyncNanos                                           atomic.Int64
	files                                                atomic.Int64
	filesCreated, filesDeleted, writeErrors              atomic.Uint64
}

// Metrics returns a snapshot of the WAL's counters. Each counter is read
// atomically; the snapshot as a whole is not. It measures the free space
// if the last measurement is older than 100 ms.
func (w *WAL) Metrics() Metrics {
	w.space.maybeRefresh()
	return Metrics{
		Appends:         w.stats.appends.Load(),
		PayloadBytes:    w.stats.payloadBytes.Load(),
		WrittenBytes:    w.stats.writtenBytes.Load(),
		Batches:         w.stats.batches.Load(),
		Fsyncs:          w.stats.fsyncs.Load(),
		FsyncDuration:   time.Duration(w.stats.fsyncNanos.Load()),
		Files:           int(w.stats.files.Load()),
		FilesCreated:    w.stats.filesCreated.Load(),
		FilesDeleted:    w.stats.filesDeleted.Load(),
		Failed:          w.failure() != nil,
		WriteErrors:     w.stats.writeErrors.Load(),
		FreeBytes:       w.space.free.Load(),
		SpaceRejections: w.space.rejected.Load(),
	}
}
