package admin

import (
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
)

// defaultBuckets is the bucket count of a table created without one.
const defaultBuckets = 1

func tableSpecFromProto(m *stromv1.CreateTableRequest) (catalog.TableSpec, error) {
	cols, err := columnsFromProto("schema.columns", m.GetSchema().GetColumns())
	if err != nil {
		return catalog.TableSpec{}, err
	}
	buckets := int32(defaultBuckets)
	if m.Buckets != nil {
		buckets = m.GetBuckets()
	}
	return catalog.TableSpec{
		Database: m.GetDatabase(),
		Name:     m.GetName(),
		Schema: catalog.Schema{
			Columns:    cols,
			PrimaryKey: m.GetSchema().GetPrimaryKey(),
		},
		Buckets:      buckets,
		BucketKey:    m.GetBucketKey(),
		PartitionKey: m.GetPartitionKey(),
		Properties:   m.GetProperties(),
	}, nil
}

func columnsFromProto(field string, in []*stromv1.Column) ([]catalog.Column, error) {
	out := make([]catalog.Column, 0, len(in))
	for i, c := range in {
		typ, err := catalog.ParseType(c.GetType())
		if err != nil {
			return nil, &catalog.ValidationError{
				Field:  fmt.Sprintf("%s[%d].type", field, i),
				Reason: fmt.Sprintf("column %q: %v", c.GetName(), err),
			}
		}
		out = append(out, catalog.Column{Name: c.GetName(), Type: typ, Nullable: c.GetNullable()})
	}
	return out, nil
}

func columnsToProto(in []catalog.Column) []*stromv1.Column {
	out := make([]*stromv1.Column, 0, len(in))
	for _, c := range in {
		out = append(out, &stromv1.Column{Name: c.Name, Type: c.Type.String(), Nullable: c.Nullable})
	}
	return out
}

func tableToProto(t catalog.Table) *stromv1.Table {
	kind := stromv1.TableKind_TABLE_KIND_LOG
	if t.IsPrimaryKey() {
		kind = stromv1.TableKind_TABLE_KIND_PRIMARY_KEY
	}
	return &stromv1.Table{
		Id:       t.ID,
		Database: t.Database,
		Name:     t.Name,
		Schema: &stromv1.Schema{
			Columns:    columnsToProto(t.Schema.Columns),
			PrimaryKey: t.Schema.PrimaryKey,
		},
		Buckets:       t.Buckets,
		BucketKey:     t.BucketKey,
		PartitionKey:  t.PartitionKey,
		Properties:    t.Properties,
		SchemaVersion: t.SchemaVersion,
		CreateTime:    timestamppb.New(t.CreatedAt),
		Kind:          kind,
	}
}

func databaseToProto(db catalog.Database) *stromv1.Database {
	return &stromv1.Database{Name: db.Name, CreateTime: timestamppb.New(db.CreatedAt)}
}

func bucketToProto(b catalog.BucketState) *stromv1.Bucket {
	out := &stromv1.Bucket{
		Partition:  b.Partition,
		Bucket:     b.Bucket,
		Leader:     b.Leader,
		Epoch:      b.Epoch,
		NextOffset: b.NextOffset,
	}
	if !b.LeaseExpiry.IsZero() {
		out.LeaseExpireTime = timestamppb.New(b.LeaseExpiry)
	}
	return out
}
