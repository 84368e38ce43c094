package catalog

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the family of a SQL column type.
type Kind uint8

// Kinds of column types. The zero Kind is invalid: a zero Type never
// validates.
const (
	KindInvalid Kind = iota
	KindBoolean
	KindTinyInt
	KindSmallInt
	KindInt
	KindBigInt
	KindFloat
	KindDouble
	KindDecimal // Precision and Scale
	KindString
	KindBytes
	KindDate
	KindTime
	KindTimestamp    // Precision: fractional-second digits
	KindTimestampLTZ // Precision: fractional-second digits
)

// Limits and defaults of parameterised types.
const (
	MaxDecimalPrecision       = 38
	DefaultDecimalPrecision   = 10
	MaxTimestampPrecision     = 9
	DefaultTimestampPrecision = 6
)

var kindNames = [...]string{
	KindInvalid:      "INVALID",
	KindBoolean:      "BOOLEAN",
	KindTinyInt:      "TINYINT",
	KindSmallInt:     "SMALLINT",
	KindInt:          "INT",
	KindBigInt:       "BIGINT",
	KindFloat:        "FLOAT",
	KindDouble:       "DOUBLE",
	KindDecimal:      "DECIMAL",
	KindString:       "STRING",
	KindBytes:        "BYTES",
	KindDate:         "DATE",
	KindTime:         "TIME",
	KindTimestamp:    "TIMESTAMP",
	KindTimestampLTZ: "TIMESTAMP_LTZ",
}

// kindByName maps upper-case SQL names (and aliases) to kinds.
var kindByName = map[string]Kind{
	"BOOLEAN":       KindBoolean,
	"TINYINT":       KindTinyInt,
	"SMALLINT":      KindSmallInt,
	"INT":           KindInt,
	"INTEGER":       KindInt,
	"BIGINT":        KindBigInt,
	"FLOAT":         KindFloat,
	"DOUBLE":        KindDouble,
	"DECIMAL":       KindDecimal,
	"STRING":        KindString,
	"BYTES":         KindBytes,
	"DATE":          KindDate,
	"TIME":          KindTime,
	"TIMESTAMP":     KindTimestamp,
	"TIMESTAMP_LTZ": KindTimestampLTZ,
}

// String returns the kind's canonical SQL name, e.g. "DECIMAL".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Type is a SQL column type. Precision is used by DECIMAL (total digits) and
// TIMESTAMP/TIMESTAMP_LTZ (fractional-second digits); Scale only by DECIMAL.
// Both are zero for every other kind. Types are comparable with ==; two
// types are equal exactly when their canonical strings are.
type Type struct {
	Kind      Kind
	Precision int32
	Scale     int32
}

// Convenience constructors for the common types.
var (
	Boolean  = Type{Kind: KindBoolean}
	TinyInt  = Type{Kind: KindTinyInt}
	SmallInt = Type{Kind: KindSmallInt}
	Int      = Type{Kind: KindInt}
	BigInt   = Type{Kind: KindBigInt}
	Float    = Type{Kind: KindFloat}
	Double   = Type{Kind: KindDouble}
	String   = Type{Kind: KindString}
	Bytes    = Type{Kind: KindBytes}
	Date     = Type{Kind: KindDate}
	Time     = Type{Kind: KindTime}
)

// Decimal returns DECIMAL(precision, scale); it is not validated.
func Decimal(precision, scale int32) Type {
	return Type{Kind: KindDecimal, Precision: precision, Scale: scale}
}

// Timestamp returns TIMESTAMP(precision); it is not validated.
func Timestamp(precision int32) Type { return Type{Kind: KindTimestamp, Precision: precision} }

// TimestampLTZ returns TIMESTAMP_LTZ(precision); it is not validated.
func TimestampLTZ(precision int32) Type { return Type{Kind: KindTimestampLTZ, Precision: precision} }

// ParseType parses a SQL type name such as "int", "DECIMAL(10, 2)" or
// " timestamp_ltz(3) ". Names are case-insensitive and whitespace around
// names, parentheses, commas and numbers is ignored. INTEGER is an alias of
// INT; DECIMAL alone is DECIMAL(10,0); TIMESTAMP and TIMESTAMP_LTZ alone have
// precision 6. The result is valid; errors say what is wrong, e.g.
// `unknown type "VARCHAR"` or "DECIMAL precision 40 out of range 1..38".
func ParseType(s string) (Type, error) {
	text := strings.TrimSpace(s)
	name, args, hasArgs := text, "", false
	if i := strings.IndexByte(text, '('); i >= 0 {
		if !strings.HasSuffix(text, ")") {
			return Type{}, fmt.Errorf("type %q: missing closing parenthesis", s)
		}
		name = strings.TrimSpace(text[:i])
		args = text[i+1 : len(text)-1]
		hasArgs = true
	}
	upper := strings.ToUpper(name)
	kind, ok := kindByName[upper]
	if !ok {
		if name == "" {
			return Type{}, fmt.Errorf("empty type")
		}
		return Type{}, fmt.Errorf("unknown type %q", name)
	}
	t := Type{Kind: kind}
	if hasArgs && kind != KindDecimal && kind != KindTimestamp && kind != KindTimestampLTZ {
		return Type{}, fmt.Errorf("%s takes no parameters", kind)
	}
	var params []int32
	if hasArgs {
		parts := strings.Split(args, ",")
		for i, p := range parts {
			p = strings.TrimSpace(p)
			n, err := strconv.ParseInt(p, 10, 32)
			if err != nil {
				return Type{}, fmt.Errorf("%s parameter %d: %q is not an integer", kind, i+1, p)
			}
			params = append(params, int32(n))
		}
	}
	switch kind {
	case KindDecimal:
		switch len(params) {
		case 0:
			if hasArgs {
				return Type{}, fmt.Errorf("DECIMAL takes (precision) or (precision, scale)")
			}
			t.Precision = DefaultDecimalPrecision
		case 1:
			t.Precision = params[0]
		case 2:
			t.Precision, t.Scale = params[0], params[1]
		default:
			return Type{}, fmt.Errorf("DECIMAL takes at most 2 parameters, got %d", len(params))
		}
	case KindTimestamp, KindTimestampLTZ:
		switch len(params) {
		case 0:
			t.Precision = DefaultTimestampPrecision
		case 1:
			t.Precision = params[0]
		default:
			return Type{}, fmt.Errorf("%s takes at most 1 parameter, got %d", kind, len(params))
		}
	}
	if err := t.Validate(); err != nil {
		return Type{}, err
	}
	return t, nil
}

// MustParseType is ParseType that panics on error; for tests and literals.
func MustParseType(s string) Type {
	t, err := ParseType(s)
	if err != nil {
		panic(err)
	}
	return t
}

// Validate reports whether t is a well-formed type: a known kind with its
// parameters in range (DECIMAL precision 1..38 and scale 0..precision,
// TIMESTAMP precision 0..9) and no parameters on other kinds.
func (t Type) Validate() error {
	switch t.Kind {
	case KindInvalid:
		return fmt.Errorf("missing type")
	case KindDecimal:
		if t.Precision < 1 || t.Precision > MaxDecimalPrecision {
			return fmt.Errorf("DECIMAL precision %d out of range 1..%d", t.Precision, MaxDecimalPrecision)
		}
		if t.Scale < 0 || t.Scale > t.Precision {
			return fmt.Errorf("DECIMAL scale %d out of range 0..%d (the precision)", t.Scale, t.Precision)
		}
		return nil
	case KindTimestamp, KindTimestampLTZ:
		if t.Precision < 0 || t.Precision > MaxTimestampPrecision {
			return fmt.Errorf("%s precision %d out of range 0..%d", t.Kind, t.Precision, MaxTimestampPrecision)
		}
		if t.Scale != 0 {
			return fmt.Errorf("%s takes no scale", t.Kind)
		}
		return nil
	}
	if int(t.Kind) >= len(kindNames) {
		return fmt.Errorf("unknown type kind %d", t.Kind)
	}
	if t.Precision != 0 || t.Scale != 0 {
		return fmt.Errorf("%s takes no parameters", t.Kind)
	}
	return nil
}

// String returns the canonical SQL spelling, e.g. "INT", "DECIMAL(10,2)",
// "TIMESTAMP(6)". For a valid type, ParseType(t.String()) == t.
func (t Type) String() string {
	switch t.Kind {
	case KindDecimal:
		return fmt.Sprintf("DECIMAL(%d,%d)", t.Precision, t.Scale)
	case KindTimestamp, KindTimestampLTZ:
		return fmt.Sprintf("%s(%d)", t.Kind, t.Precision)
	}
	return t.Kind.String()
}

// IsInteger reports whether t is TINYINT, SMALLINT, INT or BIGINT.
func (t Type) IsInteger() bool {
	switch t.Kind {
	case KindTinyInt, KindSmallInt, KindInt, KindBigInt:
		return true
	}
	return false
}

// IsTimestamp reports whether t is TIMESTAMP or TIMESTAMP_LTZ.
func (t Type) IsTimestamp() bool {
	return t.Kind == KindTimestamp || t.Kind == KindTimestampLTZ
}

// MarshalText implements encoding.TextMarshaler with the canonical string.
// It fails for an invalid type.
func (t Type) MarshalText() ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return []byte(t.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseType.
func (t *Type) UnmarshalText(b []byte) error {
	v, err := ParseType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}
