package batch_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strom-io/strom/services/batch"
)

// FuzzDecodeIPC feeds arbitrary bytes to DecodeIPC: it must never panic or
// leak, and whatever it accepts must convert to JSON and back identically.
//
//	go test -run '^$' -fuzz FuzzDecodeIPC ./batch/
func FuzzDecodeIPC(f *testing.F) {
	mem := memory.NewGoAllocator()
	valid := validStream(f, mem)
	f.Add([]byte{})
	f.Add(valid)
	f.Add(validStream(f, mem, ipc.WithLZ4()))
	f.Add(validStream(f, mem, ipc.WithZstd()))
	f.Add(valid[:len(valid)/2])
	f.Add(valid[:9])
	for _, at := range []int{8, 40, 100, 200, len(valid) / 2, len(valid) - 12} {
		corrupt := bytes.Clone(valid)
		corrupt[at] ^= 0xff
		f.Add(corrupt)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		recs, err := batch.DecodeIPC(mem, allTypes, data, 1<<20)
		if err != nil {
			mem.AssertSize(t, 0)
			return
		}
		for _, rec := range recs {
			rows, err := batch.ToJSON(rec)
			if err != nil {
				t.Fatalf("ToJSON of a decoded batch: %v", err)
			}
			back, err := batch.FromJSON(mem, allTypes, rows)
			if err != nil {
				t.Fatalf("FromJSON of ToJSON of a decoded batch: %v", err)
			}
			if !identical(rec, back) {
				t.Fatalf("not identical:\n%v\n%v", rec, back)
			}
			back.Release()
			rec.Release()
		}
		mem.AssertSize(t, 0)
	})
}

// FuzzFromJSON feeds arbitrary JSON to FromJSON against a schema of every
// type: it must never panic or leak, and whatever it accepts must survive
// ToJSON → FromJSON identically.
//
//	go test -run '^$' -fuzz FuzzFromJSON ./batch/
func FuzzFromJSON(f *testing.F) {
	f.Add([]byte(allTypesRows))
	f.Add([]byte(`[{"id": 1, "dec": "1e-5"}]`))
	f.Add([]byte(`[{"id": "-9223372036854775808", "f32": 3.4028235e38, "ltz": "0000-01-01T00:00:00-23:59"}]`))
	f.Add([]byte(`[{"id": 1, "ts": "2024-05-01 13:45:00.1234567"}]`))
	f.Add([]byte(`[{"id": 1e400}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var rows []map[string]any
		if dec.Decode(&rows) != nil {
			return
		}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		rec, err := batch.FromJSON(mem, allTypes, rows)
		if err != nil {
			return
		}
		defer rec.Release()
		out, err := batch.ToJSON(rec)
		if err != nil {
			t.Fatalf("ToJSON: %v", err)
		}
		back, err := batch.FromJSON(mem, allTypes, out)
		if err != nil {
			t.Fatalf("FromJSON(ToJSON): %v", err)
		}
		defer back.Release()
		if !identical(rec, back) {
			t.Fatalf("not identical:\n%v\n%v", rec, back)
		}
	})
}
