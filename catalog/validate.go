package catalog

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ValidationError says which field of a request is wrong and why. Field is a
// path in the API's snake_case spelling, e.g. "schema.columns[2].type" or
// `properties["table.log.ttl"]`. errors.Is(err, ErrInvalid) holds for every
// ValidationError.
type ValidationError struct {
	Field  string
	Reason string
}

// Error returns "field: reason".
func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Limits on names and buckets.
const (
	MaxNameLength = 128
	MaxBuckets    = 1024
)

// Table property keys Strom interprets. Keys starting with "table." must be
// one of these; every other key is free-form user metadata.
const (
	// PropLogTTL: how long log segments are kept; a Go duration ("36h") or
	// whole days ("7d"); > 0.
	PropLogTTL = "table.log.ttl"
	// PropLogCompression: Arrow IPC buffer compression: zstd, lz4 or none.
	PropLogCompression = "table.log.compression"
	// PropDatalakeEnabled: tier the table into the lake: true or false.
	PropDatalakeEnabled = "table.datalake.enabled"
	// PropDatalakeFreshness: target lag of the lake behind the log; a
	// duration > 0.
	PropDatalakeFreshness = "table.datalake.freshness"
	// PropMergeEngine: last_row (default), first_row, versioned or
	// aggregation; primary-key tables only.
	PropMergeEngine = "table.merge-engine"
	// PropMergeEngineAggregatePrefix starts the per-column properties of
	// the aggregation merge engine: table.merge-engine.aggregate.<column>
	// = sum, max, min, last_value, last_non_null_value, first_value or
	// count (default last_non_null_value).
	PropMergeEngineAggregatePrefix = "table.merge-engine.aggregate."
	// PropMergeEngineVersionColumn: the integer or timestamp column the
	// versioned merge engine compares; required iff it is versioned.
	PropMergeEngineVersionColumn = "table.merge-engine.version-column"
)

// ValidateDatabaseName checks a database name: 1..128 characters from
// [A-Za-z0-9_-], starting with a letter or digit.
func ValidateDatabaseName(name string) error { return validateName("database", name) }

// ValidateTableName checks a table name by the rules of ValidateDatabaseName.
func ValidateTableName(name string) error { return validateName("name", name) }

// ValidateColumnName checks a column name by the rules of
// ValidateDatabaseName; names starting with '_' are reserved for system
// columns (_offset, _timestamp, _change_type, __bucket, ...).
func ValidateColumnName(name string) error { return validateName("name", name) }

func validateName(field, name string) error {
	if name == "" {
		return invalid(field, "name is empty")
	}
	if len(name) > MaxNameLength {
		return invalid(field, "name %.20q... is %d bytes long; the limit is %d", name, len(name), MaxNameLength)
	}
	if name[0] == '_' {
		return invalid(field, "name %q starts with '_', which is reserved for system columns", name)
	}
	if !isAlnum(name[0]) {
		return invalid(field, "name %q must start with a letter or digit", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) && c != '_' && c != '-' {
			return invalid(field, "name %q has character %q at byte %d; use only A-Z, a-z, 0-9, '_' and '-'", name, c, i)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// prefixed returns err with its field prefixed by prefix; non-validation
// errors pass unchanged.
func prefixed(prefix string, err error) error {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return &ValidationError{Field: prefix + ve.Field, Reason: ve.Reason}
	}
	return err
}

// validateColumn checks one column's name and type; field is its path.
func validateColumn(field string, c Column) error {
	if err := validateName(field+".name", c.Name); err != nil {
		return err
	}
	if err := c.Type.Validate(); err != nil {
		return invalid(field+".type", "%s", err.Error())
	}
	return nil
}

// columnIndex finds a column by exact name; a case-insensitive match only
// improves the error.
func columnIndex(cols []Column, name string) (int, string) {
	for i, c := range cols {
		if c.Name == name {
			return i, ""
		}
	}
	for _, c := range cols {
		if strings.EqualFold(c.Name, name) {
			return -1, fmt.Sprintf("unknown column %q (did you mean %q?)", name, c.Name)
		}
	}
	return -1, fmt.Sprintf("unknown column %q", name)
}

// Validate checks a table spec: database and table names; at least one
// column, no duplicate column names (case-insensitively), valid types;
// primary key columns exist, are unique and NOT NULL; bucket key columns exist
// and, for primary-key tables, belong to the primary key; 1..1024 buckets;
// the partition key, if set, is an existing NOT NULL column of type STRING,
// INT, BIGINT or DATE and, for primary-key tables, in the primary key; and
// the "table." properties (see the Prop constants). The error is a
// *ValidationError naming the first offending field.
func (s TableSpec) Validate() error {
	if err := ValidateDatabaseName(s.Database); err != nil {
		return err
	}
	if err := ValidateTableName(s.Name); err != nil {
		return err
	}
	if err := s.Schema.Validate(); err != nil {
		return prefixed("schema.", err)
	}
	cols := s.Schema.Columns
	pk := s.Schema.PrimaryKey
	isPK := len(pk) > 0
	if s.Buckets < 1 || s.Buckets > MaxBuckets {
		return invalid("buckets", "%d buckets out of range 1..%d", s.Buckets, MaxBuckets)
	}
	seen := map[string]bool{}
	for i, k := range s.BucketKey {
		field := fmt.Sprintf("bucket_key[%d]", i)
		if idx, why := columnIndex(cols, k); idx < 0 {
			return invalid(field, "%s", why)
		}
		if seen[k] {
			return invalid(field, "column %q appears twice in the bucket key", k)
		}
		seen[k] = true
		if isPK && !slices.Contains(pk, k) {
			return invalid(field, "bucket key column %q is not in the primary key %v; a primary-key table's bucket key must be a subset of its primary key", k, pk)
		}
	}
	if s.PartitionKey != "" {
		idx, why := columnIndex(cols, s.PartitionKey)
		if idx < 0 {
			return invalid("partition_key", "%s", why)
		}
		c := cols[idx]
		switch c.Type.Kind {
		case KindString, KindInt, KindBigInt, KindDate:
		default:
			return invalid("partition_key", "column %q has type %s; a partition column must be STRING, INT, BIGINT or DATE", c.Name, c.Type)
		}
		if c.Nullable {
			return invalid("partition_key", "column %q is nullable; a partition column must be NOT NULL", c.Name)
		}
		if isPK && !slices.Contains(pk, c.Name) {
			return invalid("partition_key", "column %q is not in the primary key %v; a primary-key table's partition column must be part of its primary key", c.Name, pk)
		}
	}
	return validateProperties(s.Properties, cols, s.Schema.PrimaryKey)
}

// Validate checks a schema on its own: at least one column, valid and
// case-insensitively unique column names, valid types, and a primary key of
// existing, distinct, NOT NULL columns. Fields are relative to the schema
// ("columns[2].type").
func (s Schema) Validate() error {
	if len(s.Columns) == 0 {
		return invalid("columns", "a table needs at least one column")
	}
	byFold := map[string]int{}
	for i, c := range s.Columns {
		field := fmt.Sprintf("columns[%d]", i)
		if err := validateColumn(field, c); err != nil {
			return err
		}
		key := strings.ToLower(c.Name)
		if j, dup := byFold[key]; dup {
			return invalid(field+".name", "column %q duplicates columns[%d] %q (names are case-insensitive)", c.Name, j, s.Columns[j].Name)
		}
		byFold[key] = i
	}
	seen := map[string]bool{}
	for i, k := range s.PrimaryKey {
		field := fmt.Sprintf("primary_key[%d]", i)
		idx, why := columnIndex(s.Columns, k)
		if idx < 0 {
			return invalid(field, "%s", why)
		}
		if seen[k] {
			return invalid(field, "column %q appears twice in the primary key", k)
		}
		seen[k] = true
		if s.Columns[idx].Nullable {
			return invalid(field, "primary key column %q is nullable; make it NOT NULL", k)
		}
	}
	return nil
}

// ValidateAddColumns checks columns to be appended to schema: each must be
// valid, nullable and not clash (case-insensitively) with an existing or
// another new column. Fields are "columns[i]...", indexing the new columns.
func ValidateAddColumns(schema Schema, columns []Column) error {
	if len(columns) == 0 {
		return invalid("columns", "no columns to add")
	}
	names := map[string]bool{}
	for _, c := range schema.Columns {
		names[strings.ToLower(c.Name)] = true
	}
	for i, c := range columns {
		field := fmt.Sprintf("columns[%d]", i)
		if err := validateColumn(field, c); err != nil {
			return err
		}
		if !c.Nullable {
			return invalid(field+".nullable", "added column %q must be nullable: existing rows have no value for it", c.Name)
		}
		key := strings.ToLower(c.Name)
		if names[key] {
			return invalid(field+".name", "column %q already exists (names are case-insensitive)", c.Name)
		}
		names[key] = true
	}
	return nil
}

// ParseDuration parses a Go duration ("90m", "36h") or a whole number of
// days ("7d").
func ParseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("duration %q: want a Go duration like \"36h\" or days like \"7d\"", s)
		}
		if n > int64(1<<63-1)/int64(24*time.Hour) || n < -int64(1<<63-1)/int64(24*time.Hour) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a Go duration like \"36h\" or days like \"7d\"", s)
	}
	return d, nil
}

func validateProperties(props map[string]string, cols []Column, primaryKey []string) error {
	isPK := len(primaryKey) > 0
	field := func(k string) string { return fmt.Sprintf("properties[%q]", k) }
	positive := func(k, v string) error {
		d, err := ParseDuration(v)
		if err != nil {
			return invalid(field(k), "%s", err.Error())
		}
		if d <= 0 {
			return invalid(field(k), "duration %q must be > 0", v)
		}
		return nil
	}
	// Check keys in a fixed order so the first error is deterministic.
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := props[k]
		switch k {
		case PropLogTTL, PropDatalakeFreshness:
			if err := positive(k, v); err != nil {
				return err
			}
		case PropLogCompression:
			if v != "zstd" && v != "lz4" && v != "none" {
				return invalid(field(k), "compression %q: want zstd, lz4 or none", v)
			}
		case PropDatalakeEnabled:
			if v != "true" && v != "false" {
				return invalid(field(k), "%q: want true or false", v)
			}
		case PropMergeEngine:
			switch v {
			case "last_row", "first_row", "versioned", "aggregation":
			default:
				return invalid(field(k), "merge engine %q: want last_row, first_row, versioned or aggregation", v)
			}
			if !isPK {
				return invalid(field(k), "a merge engine needs a primary-key table; this table has no primary key")
			}
		case PropMergeEngineVersionColumn:
			if props[PropMergeEngine] != "versioned" {
				return invalid(field(k), "a version column is only allowed with %s=versioned", PropMergeEngine)
			}
			idx, why := columnIndex(cols, v)
			if idx < 0 {
				return invalid(field(k), "%s", why)
			}
			if t := cols[idx].Type; !t.IsInteger() && !t.IsTimestamp() {
				return invalid(field(k), "version column %q has type %s; want an integer or timestamp type", v, t)
			}
		default:
			if col, ok := strings.CutPrefix(k, PropMergeEngineAggregatePrefix); ok {
				if err := validateAggregate(field(k), col, v, props, cols, primaryKey); err != nil {
					return err
				}
				continue
			}
			if strings.HasPrefix(k, "table.") {
				return invalid(field(k), "unknown table property %q; keys starting with \"table.\" are reserved", k)
			}
		}
	}
	if props[PropMergeEngine] == "versioned" {
		if _, ok := props[PropMergeEngineVersionColumn]; !ok {
			return invalid(field(PropMergeEngineVersionColumn), "the versioned merge engine needs a version column")
		}
	}
	return nil
}

// AggregateFunctions are the values of a
// table.merge-engine.aggregate.<column> property.
var AggregateFunctions = []string{"sum", "max", "min", "last_value", "last_non_null_value", "first_value", "count"}

// validateAggregate checks one per-column aggregation of the aggregation
// merge engine: a non-key column of a type the function applies to.
func validateAggregate(field, col, fn string, props map[string]string, cols []Column, primaryKey []string) error {
	if props[PropMergeEngine] != "aggregation" {
		return invalid(field, "per-column aggregations are only allowed with %s=aggregation", PropMergeEngine)
	}
	idx, why := columnIndex(cols, col)
	if idx < 0 {
		return invalid(field, "%s", why)
	}
	if slices.Contains(primaryKey, cols[idx].Name) {
		return invalid(field, "column %q is in the primary key; key columns are not aggregated", col)
	}
	if !slices.Contains(AggregateFunctions, fn) {
		return invalid(field, "unknown aggregation %q; want one of %s", fn, strings.Join(AggregateFunctions, ", "))
	}
	t := cols[idx].Type
	numeric := t.IsInteger() || t.Kind == KindFloat || t.Kind == KindDouble || t.Kind == KindDecimal
	switch {
	case fn == "sum" && !numeric:
		return invalid(field, "sum cannot apply to column %q of type %s; it needs a numeric column", col, t)
	case fn == "count" && !t.IsInteger():
		return invalid(field, "count cannot apply to column %q of type %s; it needs an integer column", col, t)
	case (fn == "max" || fn == "min") && (t.Kind == KindBoolean || t.Kind == KindBytes):
		return invalid(field, "%s cannot apply to column %q of type %s", fn, col, t)
	}
	return nil
}

// Validate checks a segment's shape before it is committed: a non-empty
// object key, at least one range, every range a non-empty offset interval
// [BaseOffset, EndOffset) with BaseOffset >= 0, non-negative byte offsets,
// an ObjectKey that is empty or the segment's, and no bucket twice.
func (s Segment) Validate() error {
	if s.ObjectKey == "" {
		return invalid("object_key", "object key is empty")
	}
	if len(s.Ranges) == 0 {
		return invalid("ranges", "a segment needs at least one range")
	}
	seen := make(map[BucketID]int, len(s.Ranges))
	for i, r := range s.Ranges {
		field := fmt.Sprintf("ranges[%d]", i)
		if r.ObjectKey != "" && r.ObjectKey != s.ObjectKey {
			return invalid(field+".object_key", "range names object %q, the segment is %q", r.ObjectKey, s.ObjectKey)
		}
		if r.BaseOffset < 0 || r.EndOffset <= r.BaseOffset {
			return invalid(field, "offsets [%d, %d) are not a non-empty range of non-negative offsets", r.BaseOffset, r.EndOffset)
		}
		if r.ByteOffset < 0 || r.ByteLength < 0 {
			return invalid(field, "negative byte range %d+%d", r.ByteOffset, r.ByteLength)
		}
		if j, dup := seen[r.Bucket]; dup {
			return invalid(field+".bucket", "bucket %v also in ranges[%d]", r.Bucket, j)
		}
		seen[r.Bucket] = i
		writers := make(map[string]int, len(r.Writers))
		for j, w := range r.Writers {
			wf := fmt.Sprintf("%s.writers[%d]", field, j)
			if w.WriterID == "" {
				return invalid(wf+".writer_id", "writer id is empty")
			}
			if k, dup := writers[w.WriterID]; dup {
				return invalid(wf+".writer_id", "writer %q also in writers[%d]", w.WriterID, k)
			}
			writers[w.WriterID] = j
			if w.BaseOffset < r.BaseOffset || w.EndOffset > r.EndOffset || w.EndOffset < w.BaseOffset {
				return invalid(wf, "offsets [%d, %d) are not within the range's [%d, %d)", w.BaseOffset, w.EndOffset, r.BaseOffset, r.EndOffset)
			}
		}
	}
	return nil
}

// Compare orders bucket ids by table, partition (bytewise), then bucket; it
// returns -1, 0 or +1. Stores lock buckets in this order.
func (b BucketID) Compare(o BucketID) int {
	if c := cmp.Compare(b.TableID, o.TableID); c != 0 {
		return c
	}
	if c := strings.Compare(b.Partition, o.Partition); c != 0 {
		return c
	}
	return cmp.Compare(b.Bucket, o.Bucket)
}

// String formats a bucket id as "table 7 partition \"2024-01-01\" bucket 3".
func (b BucketID) String() string {
	return fmt.Sprintf("table %d partition %q bucket %d", b.TableID, b.Partition, b.Bucket)
}

// ValidateLeaseRequest checks the arguments of AcquireLease and RenewLease
// that need no stored state: a non-empty holder, a ttl of at least 1ms and a
// non-negative bucket index.
func ValidateLeaseRequest(b BucketID, holder string, ttl time.Duration) error {
	if holder == "" {
		return invalid("holder", "holder is empty")
	}
	if ttl < time.Millisecond {
		return invalid("ttl", "ttl %v is under the minimum of 1ms", ttl)
	}
	if b.Bucket < 0 {
		return invalid("bucket.bucket", "bucket %d is negative", b.Bucket)
	}
	return nil
}

// Limits on a Member.
const (
	MaxMemberIDLength      = 200
	MaxMemberRoles         = 16
	MaxMemberAddressLength = 1024
)

// ValidateMember checks the arguments of Heartbeat: an id of
// 1..MaxMemberIDLength bytes, at most MaxMemberRoles roles, none empty,
// addresses of at most MaxMemberAddressLength bytes, every string valid
// UTF-8 without NUL bytes (what PostgreSQL's text holds), and a ttl of at
// least 1ms. Started and Expiry are not checked: the store sets them.
func ValidateMember(m Member, ttl time.Duration) error {
	switch {
	case m.ID == "":
		return invalid("member.id", "id is empty")
	case len(m.ID) > MaxMemberIDLength:
		return invalid("member.id", "id %.20q... is %d bytes long; the limit is %d", m.ID, len(m.ID), MaxMemberIDLength)
	case len(m.Roles) > MaxMemberRoles:
		return invalid("member.roles", "%d roles; the limit is %d", len(m.Roles), MaxMemberRoles)
	case ttl < time.Millisecond:
		return invalid("ttl", "ttl %v is under the minimum of 1ms", ttl)
	}
	if err := validText("member.id", m.ID); err != nil {
		return err
	}
	for _, a := range []struct{ field, v string }{{"member.address", m.Address}, {"member.api_address", m.APIAddress}} {
		if len(a.v) > MaxMemberAddressLength {
			return invalid(a.field, "address %.20q... is %d bytes long; the limit is %d", a.v, len(a.v), MaxMemberAddressLength)
		}
		if err := validText(a.field, a.v); err != nil {
			return err
		}
	}
	for i, r := range m.Roles {
		field := fmt.Sprintf("member.roles[%d]", i)
		if r == "" {
			return invalid(field, "role is empty")
		}
		if err := validText(field, r); err != nil {
			return err
		}
	}
	return nil
}

// validText checks that s is valid UTF-8 without NUL bytes.
func validText(field, s string) error {
	if !utf8.ValidString(s) {
		return invalid(field, "%q is not valid UTF-8", s)
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		return invalid(field, "%q has a NUL byte at byte %d", s, i)
	}
	return nil
}

// ValidatePartition checks that p can name a partition of t: empty for a
// table without a partition column; otherwise the partition column's value
// as the write path names partitions: the string itself, an
// integer in decimal, a date as YYYY-MM-DD. A partition need not exist
// yet: one is created by its first write.
func (t Table) ValidatePartition(p string) error {
	if t.PartitionKey == "" {
		if p != "" {
			return invalid("partition", "table %s.%s is not partitioned: leave partition empty", t.Database, t.Name)
		}
		return nil
	}
	idx, _ := columnIndex(t.Schema.Columns, t.PartitionKey)
	if idx < 0 {
		return fmt.Errorf("catalog: table %s.%s: partition column %q not in the schema", t.Database, t.Name, t.PartitionKey)
	}
	typ := t.Schema.Columns[idx].Type
	if p == "" {
		return invalid("partition", "required: table %s.%s is partitioned by column %q (%s)", t.Database, t.Name, t.PartitionKey, typ)
	}
	var ok bool
	var form string
	switch typ.Kind {
	case KindInt, KindBigInt:
		bits := 64
		if typ.Kind == KindInt {
			bits = 32
		}
		n, err := strconv.ParseInt(p, 10, bits)
		ok, form = err == nil && strconv.FormatInt(n, 10) == p, "a decimal integer without sign or leading zeros"
	case KindDate:
		d, err := time.Parse(time.DateOnly, p)
		ok, form = err == nil && d.Format(time.DateOnly) == p, "YYYY-MM-DD"
	default:
		ok = true
	}
	if !ok {
		return invalid("partition", "%q is not a value of partition column %q (%s): write it as %s", p, t.PartitionKey, typ, form)
	}
	return nil
}
