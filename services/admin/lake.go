package admin

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/tiering"
)

// GetLakeStatus implements AdminService: per lake-enabled table and bucket,
// the tiered offset against the stream's next offset.
func (s *Service) GetLakeStatus(ctx context.Context, req *connect.Request[stromv1.GetLakeStatusRequest]) (*connect.Response[stromv1.GetLakeStatusResponse], error) {
	m := req.Msg
	if m.GetTable() != "" && m.GetDatabase() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("table: name the database too"))
	}
	var tables []tiering.LakeTable
	var err error
	switch {
	case m.GetTable() != "":
		t, gerr := s.store.GetTable(ctx, m.GetDatabase(), m.GetTable())
		if gerr != nil {
			return nil, s.connectError(ctx, "lake status", gerr)
		}
		settings, serr := tiering.SettingsOf(t)
		if serr != nil {
			return nil, s.connectError(ctx, "lake status", serr)
		}
		if !settings.Enabled {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("table %s.%s is not tiered into the lake: set %s=true", t.Database, t.Name, catalog.PropDatalakeEnabled))
		}
		tables = []tiering.LakeTable{{Table: t, Settings: settings}}
	default:
		tables, err = tiering.LakeTables(ctx, databaseFilter{s.store, m.GetDatabase()})
		if err != nil {
			return nil, s.connectError(ctx, "lake status", err)
		}
	}
	resp := &stromv1.GetLakeStatusResponse{}
	for _, lt := range tables {
		st, err := s.lakeTableStatus(ctx, lt)
		if err != nil {
			return nil, s.connectError(ctx, "lake status", err)
		}
		resp.Tables = append(resp.Tables, st)
	}
	return connect.NewResponse(resp), nil
}

func (s *Service) lakeTableStatus(ctx context.Context, lt tiering.LakeTable) (*stromv1.LakeTableStatus, error) {
	t := lt.Table
	buckets, err := s.store.ListBuckets(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	tiered, err := s.store.TieredOffsets(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	byBucket := make(map[catalog.BucketID]catalog.TieredOffset, len(tiered))
	out := &stromv1.LakeTableStatus{Database: t.Database, Table: t.Name, FreshnessMs: lt.Settings.Freshness.Milliseconds()}
	for _, o := range tiered {
		byBucket[o.Bucket] = o
		out.SnapshotId = max(out.SnapshotId, o.LakeSnapshotID)
	}
	for _, b := range buckets {
		o, ok := byBucket[b.BucketID]
		bs := &stromv1.LakeBucketStatus{Partition: b.Partition, Bucket: b.Bucket, TieredOffset: o.Offset, NextOffset: b.NextOffset}
		if ok {
			bs.TieredTime = timestamppb.New(o.UpdatedAt)
		}
		out.LagRecords += max(0, b.NextOffset-o.Offset)
		out.Buckets = append(out.Buckets, bs)
	}
	return out, nil
}

// databaseFilter lists the tables of one database, or of all when name is
// empty.
type databaseFilter struct {
	store catalog.Store
	name  string
}

func (d databaseFilter) ListDatabases(ctx context.Context) ([]catalog.Database, error) {
	if d.name == "" {
		return d.store.ListDatabases(ctx)
	}
	db, err := d.store.GetDatabase(ctx, d.name)
	if err != nil {
		return nil, err
	}
	return []catalog.Database{db}, nil
}

func (d databaseFilter) ListTables(ctx context.Context, database string) ([]catalog.Table, error) {
	return d.store.ListTables(ctx, database)
}
