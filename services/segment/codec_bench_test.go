package segment

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/klauspost/compress/zstd"

	"github.com/strom-io/strom/services/batch"
)

// eventRecord builds rows of the system benchmark's event data (the same
// generator as e2e's wideBatch): 20 columns, half BIGINT (ids, timestamps,
// small enums, random), half STRING (hex ids, word pairs, URLs).
func eventRecord(seed uint64, rows int) arrow.RecordBatch {
	fields := make([]arrow.Field, 20)
	for i := range fields {
		var dt arrow.DataType = arrow.PrimitiveTypes.Int64
		if i%2 == 1 {
			dt = arrow.BinaryTypes.String
		}
		fields[i] = arrow.Field{Name: fmt.Sprintf("c%02d", i), Type: dt, Nullable: true}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"}
	bld := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	defer bld.Release()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() + int64(seed)*1e9
	for r := 0; r < rows; r++ {
		for c := 0; c < 20; c++ {
			f := bld.Field(c)
			switch c % 8 {
			case 0:
				f.(*array.Int64Builder).Append(int64(seed)<<32 | int64(r))
			case 2:
				f.(*array.Int64Builder).Append(base + int64(r)*1000 + rng.Int64N(1000))
			case 4:
				f.(*array.Int64Builder).Append(rng.Int64N(16))
			case 6:
				f.(*array.Int64Builder).Append(rng.Int64())
			case 1, 5:
				f.(*array.StringBuilder).Append(fmt.Sprintf("%016x", rng.Uint64()))
			case 3:
				f.(*array.StringBuilder).Append(words[rng.IntN(len(words))] + "-" + words[rng.IntN(len(words))])
			case 7:
				f.(*array.StringBuilder).Append(fmt.Sprintf("https://example.com/%s/%d?q=%x", words[rng.IntN(len(words))], rng.IntN(1000), rng.Uint32()))
			}
		}
	}
	return bld.NewRecordBatch()
}

// BenchmarkChunkCodec compresses the buffers of the benchmark's event data
// (batches of 4096 rows) with each candidate codec and level, reporting
// the stored fraction of the Arrow bytes and the compression and
// decompression speed of one core. It is how DefaultZstdLevel was picked.
//
//	cd services && go test ./segment/ -run '^$' -bench BenchmarkChunkCodec -benchtime 20x
func BenchmarkChunkCodec(b *testing.B) {
	var bufs [][]byte
	var raw int64
	for s := range uint64(4) {
		rec := eventRecord(s+1, 4096)
		for _, col := range rec.Columns() {
			layout, ok := batch.FlatBuffers(col)
			if !ok {
				b.Fatal("not a flat layout")
			}
			for _, buf := range layout {
				if len(buf) > 0 {
					bufs = append(bufs, buf)
					raw += int64(len(buf))
				}
			}
		}
	}
	for _, lvl := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		comp := make([][]byte, len(bufs))
		b.Run("zstd-"+lvl.String()+"/encode", func(b *testing.B) {
			b.SetBytes(raw)
			var stored int64
			for b.Loop() {
				stored = 0
				for i, buf := range bufs {
					comp[i] = enc.EncodeAll(buf, comp[i][:0])
					stored += int64(len(comp[i])) + 8
				}
			}
			b.ReportMetric(float64(stored)/float64(raw), "stored/arrow")
		})
		b.Run("zstd-"+lvl.String()+"/decode", func(b *testing.B) {
			b.SetBytes(raw)
			out := make([][]byte, len(bufs))
			for b.Loop() {
				for i := range comp {
					if out[i], err = dec.DecodeAll(comp[i], out[i][:0]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	b.Run("lz4/encode", func(b *testing.B) {
		b.SetBytes(raw)
		var stored int64
		for b.Loop() {
			stored = 0
			for _, buf := range bufs {
				out, err := appendBuffer(nil, CodecLZ4, buf)
				if err != nil {
					b.Fatal(err)
				}
				stored += int64(len(out))
			}
		}
		b.ReportMetric(float64(stored)/float64(raw), "stored/arrow")
	})
	_ = runtime.GOMAXPROCS(0)
}

// BenchmarkEncodeEvents encodes a section of four 4096-row batches of the
// benchmark's event data: what one flush of the ingest benchmark holds.
//
//	cd services && go test ./segment/ -run '^$' -bench BenchmarkEncodeEvents -benchtime 20x
func BenchmarkEncodeEvents(b *testing.B) {
	sec := Section{TableID: 1, Codec: CodecZstd}
	var raw int64
	for i := range 4 {
		rec := eventRecord(uint64(i+1), 4096)
		defer rec.Release()
		sec.Batches = append(sec.Batches, Batch{BaseOffset: int64(i * 4096), Timestamp: time.Now(), Record: rec})
		for _, c := range rec.Columns() {
			for _, buf := range c.Data().Buffers() {
				if buf != nil {
					raw += int64(buf.Len())
				}
			}
		}
	}
	b.SetBytes(raw)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if _, _, err := Encode([]Section{sec}); err != nil {
			b.Fatal(err)
		}
	}
	// CPU per GB does not depend on how busy the machine is, unlike MB/s.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/(float64(raw)*float64(b.N)/1e9), "cpu-s/GB")
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
