package segment

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestStringStatsMatchSort: the min and max of random strings, empty ones
// and shared prefixes included, with and without nulls, are those a sort
// finds.
func TestStringStatsMatchSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"", "a", "b", "ab", "abc", "b\x00", "\xff", "https://x/1", "https://x/2", "z"}
	for trial := range 500 {
		b := array.NewStringBuilder(memory.DefaultAllocator)
		var valid []string
		n := 1 + rng.IntN(12)
		for range n {
			if trial%2 == 1 && rng.IntN(4) == 0 {
				b.AppendNull()
				continue
			}
			v := alphabet[rng.IntN(len(alphabet))] + alphabet[rng.IntN(len(alphabet))]
			b.Append(v)
			valid = append(valid, v)
		}
		a := b.NewStringArray()
		lo, hi, ok := columnStats(a)
		a.Release()
		b.Release()
		if len(valid) == 0 {
			if ok {
				t.Fatalf("stats of an all-null column")
			}
			continue
		}
		slices.Sort(valid)
		if !ok || string(lo) != valid[0] || string(hi) != valid[len(valid)-1] {
			t.Fatalf("values %q: stats %q..%q (%v), want %q..%q", valid, lo, hi, ok, valid[0], valid[len(valid)-1])
		}
	}
}
