package catalogtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/strom-io/strom/catalog"
)

// watchEvent is one table change or sync a watch reported, in order.
type watchEvent struct {
	table  *catalog.TableChange
	synced time.Time
}

// tableRecorder runs Watch with table changes and syncs and records them
// in the order reported.
type tableRecorder struct {
	mu     sync.Mutex
	events []watchEvent
	signal chan struct{}
}

func startTableWatch(t *testing.T, s catalog.Store, syncEvery time.Duration) *tableRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &tableRecorder{signal: make(chan struct{}, 1)}
	add := func(e watchEvent) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
		select {
		case r.signal <- struct{}{}:
		default:
		}
	}
	listening := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, catalog.Events{
			Listening:    func() { close(listening) },
			Table:        func(c catalog.TableChange) { add(watchEvent{table: &c}) },
			Synced:       func(at time.Time) { add(watchEvent{synced: at}) },
			SyncInterval: syncEvery,
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch after cancel = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Watch did not return within 5s of the end of its test")
		}
	})
	select {
	case <-listening:
	case err := <-done:
		t.Fatalf("Watch ended before it listened: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("Watch did not call Listening within 10s")
	}
	return r
}

// syncedAfter waits up to 10s for a Synced(at) with at after ts and
// returns the table changes reported before it.
func (r *tableRecorder) syncedAfter(t *testing.T, ts time.Time) []catalog.TableChange {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		var changes []catalog.TableChange
		for _, e := range r.events {
			if e.table != nil {
				changes = append(changes, *e.table)
			} else if e.synced.After(ts) {
				r.mu.Unlock()
				return changes
			}
		}
		r.mu.Unlock()
		select {
		case <-r.signal:
		case <-deadline:
			t.Fatalf("no Synced after %v within 10s", ts)
		}
	}
}

// testWatchTables changes tables through one handle (another process's,
// with WithHandles) and watches through another: every change is
// reported, in order, with its table's id, name and new schema version (0
// for a drop), failed changes are not, and each change is reported before
// any Synced(at) whose at is after its call returned.
func testWatchTables(t *testing.T, s catalog.Store, writer catalog.Store) {
	ctx := ctxT(t)
	r := startTableWatch(t, s, 20*time.Millisecond)
	var want []catalog.TableChange
	// step makes a change through writer and checks that the first sync
	// after it returned follows its report.
	step := func(what string, fn func() []catalog.TableChange) {
		t.Helper()
		want = append(want, fn()...)
		returned := time.Now()
		got := r.syncedAfter(t, returned)
		if !slices.Equal(got, want) {
			t.Fatalf("after %s: changes reported before the next sync = %+v, want %+v", what, got, want)
		}
	}
	_, err := writer.CreateDatabase(ctx, "db")
	noErr(t, err, "CreateDatabase")
	var a, b catalog.Table
	step("CreateTable", func() []catalog.TableChange {
		a, err = writer.CreateTable(ctx, logSpec("db", "a"))
		noErr(t, err, "CreateTable a")
		return []catalog.TableChange{{ID: a.ID, Database: "db", Name: "a", SchemaVersion: 1}}
	})
	for v := int32(2); v <= 6; v++ {
		step("AddColumns", func() []catalog.TableChange {
			_, err := writer.AddColumns(ctx, "db", "a", []catalog.Column{{Name: fmt.Sprintf("c%d", v), Type: catalog.Int, Nullable: true}})
			noErr(t, err, "AddColumns")
			return []catalog.TableChange{{ID: a.ID, Database: "db", Name: "a", SchemaVersion: v}}
		})
	}
	step("failed changes", func() []catalog.TableChange {
		_, err := writer.AddColumns(ctx, "db", "a", []catalog.Column{{Name: "c2", Type: catalog.Int, Nullable: true}})
		wantErr(t, err, catalog.ErrInvalid, "AddColumns of an existing column")
		wantErr(t, writer.DropTable(ctx, "db", "nope"), catalog.ErrNotFound, "DropTable of a missing table")
		_, err = writer.CreateTable(ctx, logSpec("db", "a"))
		wantErr(t, err, catalog.ErrAlreadyExists, "CreateTable twice")
		return nil
	})
	step("DropTable", func() []catalog.TableChange {
		noErr(t, writer.DropTable(ctx, "db", "a"), "DropTable")
		return []catalog.TableChange{{ID: a.ID, Database: "db", Name: "a"}}
	})
	step("tables of a database dropped with it", func() []catalog.TableChange {
		b = setup(t, writer, pkSpec("db", "b"))
		c := setup(t, writer, logSpec("db", "c"))
		noErr(t, writer.DropDatabase(ctx, "db", true), "DropDatabase cascade")
		return []catalog.TableChange{
			{ID: b.ID, Database: "db", Name: "b", SchemaVersion: 1}, {ID: c.ID, Database: "db", Name: "c", SchemaVersion: 1},
			{ID: b.ID, Database: "db", Name: "b"}, {ID: c.ID, Database: "db", Name: "c"},
		}
	})
}
