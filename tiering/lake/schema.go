package lake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	icecatalog "github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/strom-io/strom/catalog"
)

// System columns that every lake table has after the table's own columns.
const (
	// ColumnBucket is the record's bucket (int, required).
	ColumnBucket = "__bucket"
	// ColumnOffset is the record's offset in its bucket (long, required).
	ColumnOffset = "__offset"
	// ColumnTimestamp is the record's commit timestamp (timestamptz in
	// microseconds, required).
	ColumnTimestamp = "__timestamp"
)

// IcebergType maps a Strom column type to its Iceberg type:
//
//	BOOLEAN                    boolean
//	TINYINT, SMALLINT, INT     int
//	BIGINT                     long
//	FLOAT                      float
//	DOUBLE                     double
//	DECIMAL(p,s)               decimal(p,s)
//	STRING                     string
//	BYTES                      binary
//	DATE                       date
//	TIME                       time (microseconds)
//	TIMESTAMP(p)               timestamp (microseconds, no zone)
//	TIMESTAMP_LTZ(p)           timestamptz (microseconds, UTC)
//
// Iceberg v2 has no narrower integers and no nanosecond timestamps:
// TINYINT and SMALLINT widen, and TIMESTAMP(7..9) is truncated to
// microseconds.
func IcebergType(t catalog.Type) (iceberg.Type, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	switch t.Kind {
	case catalog.KindBoolean:
		return iceberg.PrimitiveTypes.Bool, nil
	case catalog.KindTinyInt, catalog.KindSmallInt, catalog.KindInt:
		return iceberg.PrimitiveTypes.Int32, nil
	case catalog.KindBigInt:
		return iceberg.PrimitiveTypes.Int64, nil
	case catalog.KindFloat:
		return iceberg.PrimitiveTypes.Float32, nil
	case catalog.KindDouble:
		return iceberg.PrimitiveTypes.Float64, nil
	case catalog.KindDecimal:
		return iceberg.DecimalTypeOf(int(t.Precision), int(t.Scale)), nil
	case catalog.KindString:
		return iceberg.PrimitiveTypes.String, nil
	case catalog.KindBytes:
		return iceberg.PrimitiveTypes.Binary, nil
	case catalog.KindDate:
		return iceberg.PrimitiveTypes.Date, nil
	case catalog.KindTime:
		return iceberg.PrimitiveTypes.Time, nil
	case catalog.KindTimestamp:
		return iceberg.PrimitiveTypes.Timestamp, nil
	case catalog.KindTimestampLTZ:
		return iceberg.PrimitiveTypes.TimestampTz, nil
	}
	return nil, fmt.Errorf("unsupported type %s", t)
}

// systemColumns are the lake's own columns, in order, with their types.
var systemColumns = []struct {
	name string
	typ  iceberg.Type
}{
	{ColumnBucket, iceberg.PrimitiveTypes.Int32},
	{ColumnOffset, iceberg.PrimitiveTypes.Int64},
	{ColumnTimestamp, iceberg.PrimitiveTypes.TimestampTz},
}

// CheckPrimaryKey reports whether t can be tiered as far as its primary key
// goes: nil for a log table and for a primary-key table whose key columns
// all map to Iceberg types that identify a row exactly; ErrUnsupportedKey
// naming the column otherwise (FLOAT, DOUBLE, TIMESTAMP(7..9),
// TIMESTAMP_LTZ(7..9)).
func CheckPrimaryKey(t catalog.Table) error {
	for _, k := range t.Schema.PrimaryKey {
		i := slices.IndexFunc(t.Schema.Columns, func(c catalog.Column) bool { return c.Name == k })
		if i < 0 {
			return fmt.Errorf("%w: table %s.%s: primary-key column %q is not a column", ErrUnsupportedKey, t.Database, t.Name, k)
		}
		typ := t.Schema.Columns[i].Type
		switch {
		case typ.Kind == catalog.KindFloat || typ.Kind == catalog.KindDouble:
			return fmt.Errorf("%w: table %s.%s: primary-key column %q is %s; Iceberg equality deletes cannot use floating-point columns",
				ErrUnsupportedKey, t.Database, t.Name, k, typ)
		case (typ.Kind == catalog.KindTimestamp || typ.Kind == catalog.KindTimestampLTZ) && typ.Precision > 6:
			return fmt.Errorf("%w: table %s.%s: primary-key column %q is %s; the lake keeps microseconds, so distinct keys could merge",
				ErrUnsupportedKey, t.Database, t.Name, k, typ)
		}
	}
	return nil
}

// IcebergSchema returns the Iceberg schema of a new lake table for t: its
// columns in order (NOT NULL columns required, the others optional), then
// __bucket, __offset and __timestamp (required). For a primary-key table
// the primary-key columns are the schema's identifier fields (see
// CheckPrimaryKey for the keys that cannot be). Field ids are 1, 2, ...;
// the catalog may assign others when it creates the table.
func IcebergSchema(t catalog.Table) (*iceberg.Schema, error) {
	if err := CheckPrimaryKey(t); err != nil {
		return nil, err
	}
	fields := make([]iceberg.NestedField, 0, len(t.Schema.Columns)+len(systemColumns))
	var identifiers []int
	for _, c := range t.Schema.Columns {
		typ, err := IcebergType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("lake: table %s.%s column %q: %w", t.Database, t.Name, c.Name, err)
		}
		fields = append(fields, iceberg.NestedField{ID: len(fields) + 1, Name: c.Name, Type: typ, Required: !c.Nullable})
	}
	for _, k := range t.Schema.PrimaryKey {
		identifiers = append(identifiers, slices.IndexFunc(fields, func(f iceberg.NestedField) bool { return f.Name == k })+1)
	}
	for _, c := range systemColumns {
		fields = append(fields, iceberg.NestedField{ID: len(fields) + 1, Name: c.name, Type: c.typ, Required: true})
	}
	return iceberg.NewSchemaWithIdentifiers(0, identifiers, fields...), nil
}

// PartitionSpec returns the partition spec of a new lake table with schema
// sc (from IcebergSchema): identity of the partition column, if t has one,
// then identity of __bucket. Every data file thus holds the records of one
// bucket of one partition.
func PartitionSpec(t catalog.Table, sc *iceberg.Schema) (iceberg.PartitionSpec, error) {
	var names []string
	if t.PartitionKey != "" {
		names = append(names, t.PartitionKey)
	}
	names = append(names, ColumnBucket)
	fields := make([]iceberg.PartitionField, 0, len(names))
	for i, name := range names {
		f, ok := sc.FindFieldByName(name)
		if !ok {
			return iceberg.PartitionSpec{}, fmt.Errorf("lake: table %s.%s: partition column %q not in schema", t.Database, t.Name, name)
		}
		fields = append(fields, iceberg.PartitionField{
			SourceIDs: []int{f.ID},
			FieldID:   iceberg.PartitionDataIDStart + i,
			Name:      name,
			Transform: iceberg.IdentityTransform{},
		})
	}
	return iceberg.NewPartitionSpec(fields...), nil
}

// EnsureTable returns the lake table of t, creating it (and its namespace)
// when missing. An existing table is checked against t: it must carry t's
// id (else ErrForeignTable), and every column it shares with t must have
// t's type and its identifier fields must be t's primary key (else
// ErrSchemaMismatch); columns t gained since (AddColumns) are added to the
// Iceberg schema as optional columns. A primary key that cannot be tiered
// is ErrUnsupportedKey. Safe to call concurrently, also from several
// processes.
func (l *Lake) EnsureTable(ctx context.Context, t catalog.Table) (*table.Table, error) {
	if err := CheckPrimaryKey(t); err != nil {
		return nil, err
	}
	ident := Identifier(t)
	tbl, err := l.load(ctx, ident)
	if errors.Is(err, icecatalog.ErrNoSuchTable) || errors.Is(err, icecatalog.ErrNoSuchNamespace) {
		tbl, err = l.createTable(ctx, t)
	}
	if err != nil {
		return nil, fmt.Errorf("lake: load %s: %w", ident, err)
	}
	// Two attempts: a concurrent tierer may evolve the schema first.
	for attempt := 0; ; attempt++ {
		missing, err := checkTable(t, tbl)
		if err != nil || len(missing) == 0 {
			return tbl, err
		}
		evolved, err := addColumns(ctx, tbl, missing)
		if err == nil {
			return l.withFS(ctx, evolved)
		}
		if attempt == 2 {
			return nil, fmt.Errorf("lake: add columns to %s: %w", ident, err)
		}
		if tbl, err = l.load(ctx, ident); err != nil {
			return nil, fmt.Errorf("lake: load %s: %w", ident, err)
		}
	}
}

func (l *Lake) createTable(ctx context.Context, t catalog.Table) (*table.Table, error) {
	ident := Identifier(t)
	ns := table.Identifier{t.Database}
	if err := l.cat.CreateNamespace(ctx, ns, iceberg.Properties{"comment": "Strom database " + t.Database}); err != nil &&
		!errors.Is(err, icecatalog.ErrNamespaceAlreadyExists) {
		return nil, fmt.Errorf("create namespace %s: %w", t.Database, err)
	}
	sc, err := IcebergSchema(t)
	if err != nil {
		return nil, err
	}
	spec, err := PartitionSpec(t, sc)
	if err != nil {
		return nil, err
	}
	props := iceberg.Properties{}
	for k, v := range l.tableProp {
		props[k] = v
	}
	props[PropTableID] = strconv.FormatInt(t.ID, 10)
	tbl, err := l.cat.CreateTable(ctx, ident, sc, icecatalog.WithPartitionSpec(&spec), icecatalog.WithProperties(props))
	if errors.Is(err, icecatalog.ErrTableAlreadyExists) {
		return l.load(ctx, ident)
	}
	if err != nil {
		return nil, err
	}
	return l.withFS(ctx, tbl)
}

// checkTable compares an existing lake table with t and returns t's
// columns that the lake table lacks.
func checkTable(t catalog.Table, tbl *table.Table) ([]catalog.Column, error) {
	ident := Identifier(t)
	if id := tbl.Properties()[PropTableID]; id != strconv.FormatInt(t.ID, 10) {
		return nil, fmt.Errorf("%w: %s has %s=%q, but the Strom table's id is %d; drop the Iceberg table (it belonged to a dropped Strom table of the same name) or rename it",
			ErrForeignTable, ident, PropTableID, id, t.ID)
	}
	sc := tbl.Schema()
	var missing []catalog.Column
	for _, c := range t.Schema.Columns {
		want, err := IcebergType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("lake: table %s column %q: %w", ident, c.Name, err)
		}
		f, ok := sc.FindFieldByName(c.Name)
		if !ok {
			missing = append(missing, c)
			continue
		}
		if !f.Type.Equals(want) {
			return nil, fmt.Errorf("%w: %s column %q is %s in Iceberg, want %s for Strom type %s",
				ErrSchemaMismatch, ident, c.Name, f.Type, want, c.Type)
		}
	}
	for _, c := range systemColumns {
		f, ok := sc.FindFieldByName(c.name)
		if !ok || !f.Type.Equals(c.typ) {
			return nil, fmt.Errorf("%w: %s lacks the system column %s %s", ErrSchemaMismatch, ident, c.name, c.typ)
		}
	}
	if got := identifierNames(sc); !slices.Equal(got, t.Schema.PrimaryKey) && (len(got) > 0 || len(t.Schema.PrimaryKey) > 0) {
		return nil, fmt.Errorf("%w: %s has identifier fields %v, the Strom table's primary key is %v",
			ErrSchemaMismatch, ident, got, t.Schema.PrimaryKey)
	}
	return missing, nil
}

// identifierNames returns the names of sc's identifier fields, in the
// order of the schema's identifier-field-ids.
func identifierNames(sc *iceberg.Schema) []string {
	var out []string
	for _, id := range sc.IdentifierFieldIDs {
		name, _ := sc.FindColumnName(id)
		out = append(out, name)
	}
	return out
}

// addColumns adds optional columns to the lake table in one commit.
func addColumns(ctx context.Context, tbl *table.Table, cols []catalog.Column) (*table.Table, error) {
	txn := tbl.NewTransaction()
	us := txn.UpdateSchema(true, false)
	for _, c := range cols {
		typ, err := IcebergType(c.Type)
		if err != nil {
			return nil, err
		}
		us.AddColumn([]string{c.Name}, typ, "", false, nil)
	}
	if err := us.Commit(); err != nil {
		return nil, err
	}
	return txn.Commit(ctx)
}

// ArrowSchema returns the Arrow schema that Append's records must have for
// tbl: one field per column of the table's current Iceberg schema, in
// order, with Iceberg's Arrow types (int32 for int, timestamp[us] and
// timestamp[us, UTC], time64[us], decimal128, utf8, binary) and the field
// ids as Parquet field-id metadata.
func ArrowSchema(tbl *table.Table) (*arrow.Schema, error) {
	return table.SchemaToArrowSchema(tbl.Schema(), nil, true, false)
}
