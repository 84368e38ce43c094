// Package segment is Strom's segment object format: the bytes a frontend
// writes to object storage on every flush (by default every 50 ms or 8 MiB),
// holding the new Arrow record batches of every bucket it leads.
//
// An object holds one section per bucket. A section stores each batch column
// by column: every column chunk is a complete, standalone Arrow IPC stream
// (schema message, one single-column record batch, end-of-stream marker)
// written by arrow-go's ipc.Writer with the section's compression codec. So a
// projection is a set of byte ranges, and every range decodes with a stock
// Arrow IPC stream reader. Each section ends with a binary index (per batch:
// row count, append timestamp, schema version; per column chunk: name, length,
// CRC-32C, null count, min/max) so that a reader of one bucket fetches the
// section's tail, then only the chunks it needs, coalescing neighbours.
//
// The object layout, byte by byte, is in docs/segment.md. In short:
//
//	"STROMSEG" | u16 format version
//	per section (ordered by table id, partition, bucket):
//	    column chunks of batch 0 (in column order), of batch 1, ...
//	    section index | u32 index length | u32 crc32c(index)
//	object footer | u32 footer length | u32 crc32c(footer) | "STROMSEG"
//
// The write side is [Encode]; the catalog records each section's byte range
// from the returned [SectionInfo] (see [SectionInfo.SegmentRange]). The read
// side is [ReadSection] over any [RangeReader] (an objstore.BucketReader is
// one). [DecodeSectionIndex] and [DecodeObjectFooter] decode the metadata
// for checkers and tools.
//
// Every decoder treats its input as untrusted: it checks bounds and CRCs,
// recovers from panics inside arrow-go, validates decoded arrays, and fails
// with an error wrapping [ErrCorrupt] that names what is wrong.
package segment
