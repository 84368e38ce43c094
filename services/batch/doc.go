// Package batch converts table rows between the encodings clients send and
// receive — JSON objects and Arrow IPC streams — and Arrow record batches
// typed by a table's catalog.Schema. Values converts single rows between
// JSON objects and Go values (the values of a primary-key table's rows)
// with the same rules and errors, for lookups, which need no batch.
//
// # Type mapping
//
// ArrowSchema maps each SQL column type to one Arrow type (see its doc).
// Every batch this package returns has exactly that schema, so downstream code
// (segment writer, readers) sees one Arrow schema per table schema version.
//
// # Value domains
//
// Every value a batch built here holds is in the domain of its SQL type, and
// every value can be written by ToJSON and read back by FromJSON to the
// identical bits:
//
//   - DECIMAL(p,s): at most p digits, exactly s of them fractional.
//   - DATE: 0000-01-01 .. 9999-12-31 (proleptic Gregorian, as Flink and Fluss).
//   - TIME: 00:00:00 .. 23:59:59.999999 (microseconds; no leap second).
//   - TIMESTAMP(p) and TIMESTAMP_LTZ(p): years 0000..9999 (for p 7..9 also the
//     int64-nanosecond range, 1677-09-21 .. 2262-04-11), with no non-zero
//     digit after the p-th fractional digit.
//   - STRING: valid UTF-8.
//
// FromJSON rejects values outside these domains; DecodeIPC rejects batches
// holding them.
//
// # JSON encoding
//
// One row is one JSON object keyed by column name. A null or absent key is
// SQL NULL. The encoding of each type (what ToJSON writes; FromJSON also
// accepts everything in the last column):
//
//	SQL type          ToJSON writes                        FromJSON also accepts
//	BOOLEAN           true / false                         -
//	TINYINT..INT      number                               integral number or numeric string ("12", "1.2e1")
//	BIGINT            number if |v| < 2^53, else string    the same; a float64 of 2^53 or more is refused
//	FLOAT, DOUBLE     number; "NaN", "Infinity",           numeric string
//	                  "-Infinity" as strings; a FLOAT as
//	                  its shortest decimal (0.1, not
//	                  0.10000000149011612)
//	DECIMAL(p,s)      string with exactly s fraction       number (read as its shortest decimal
//	                  digits: "-12.30"                     text, e.g. 0.1 is "0.1"), string with
//	                                                       fewer fraction digits or an exponent
//	STRING            string                               -
//	BYTES             standard base64 with padding         []byte (Go callers)
//	DATE              "2024-05-01"                         -
//	TIME              "13:45:00.123456"                    "13:45:00", 1..9 fraction digits
//	TIMESTAMP(p)      "2024-05-01T13:45:00.123" (p digits) ' ' for 'T'; 0..9 fraction digits
//	TIMESTAMP_LTZ(p)  "2024-05-01T11:45:00.123Z" (UTC)     any offset: "...+02:00", "z", ' ' for 'T'
//
// Rules common to all types:
//
//   - Values are exact or rejected; nothing is rounded or truncated. A
//     number with more fractional digits than the type holds is rejected
//     unless the extra digits are zeros ("12.340" fits DECIMAL(10,2), "12.345"
//     does not; the same for TIMESTAMP(p) and TIME). FLOAT is the exception:
//     a number is rounded to the nearest float32, as every JSON library does.
//   - Integers out of the type's range, and FLOAT/DOUBLE numbers beyond the
//     largest finite value, are rejected (never saturated, never ±Inf).
//   - Temporal values are strings only: an integer epoch would be ambiguous
//     between seconds, milliseconds and microseconds, a classic source of
//     silent corruption. TIMESTAMP takes no offset; TIMESTAMP_LTZ requires one.
//   - Numbers may arrive as float64 (encoding/json's default, and
//     google.protobuf.Struct), json.Number (Decoder.UseNumber), any Go integer
//     type or float32. Prefer UseNumber: a float64 cannot carry a BIGINT
//     beyond 2^53 exactly, which is why ToJSON writes those as strings.
//
// Every bad value is reported as a *RowError naming the row and column:
//
//	row 17, column "price": want DECIMAL(10,2), got string "abc"
//
// # Arrow IPC
//
// DecodeIPC reads an Arrow IPC stream from an untrusted client. The stream's
// schema must match the table (see CheckSchema); the decoded batches are
// validated in full (buffer sizes, offsets, UTF-8, null counts, value
// domains) before they are returned, and no input makes it panic or allocate
// more than its limit. EncodeIPC writes batches as a stream for responses.
package batch
