package cluster

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/strom-io/strom/catalog"
)

func buckets(tables, perTable int) []catalog.BucketID {
	var out []catalog.BucketID
	for t := 1; t <= tables; t++ {
		for b := 0; b < perTable; b++ {
			out = append(out, catalog.BucketID{TableID: int64(t), Bucket: int32(b)})
		}
	}
	return out
}

func TestAssignIsEvenPerTable(t *testing.T) {
	for _, tc := range []struct{ tables, perTable, members int }{
		{1, 8, 3}, {3, 6, 3}, {5, 16, 4}, {2, 1, 3}, {10, 3, 2}, {4, 7, 5},
	} {
		t.Run(fmt.Sprintf("%dx%d/%d", tc.tables, tc.perTable, tc.members), func(t *testing.T) {
			var members []string
			for i := range tc.members {
				members = append(members, fmt.Sprintf("f%d", i))
			}
			all := buckets(tc.tables, tc.perTable)
			got := Assign(all, members)
			if len(got) != len(all) {
				t.Fatalf("assigned %d buckets, want %d", len(got), len(all))
			}
			fair := (tc.perTable + tc.members - 1) / tc.members
			perTable := map[[2]any]int{}
			total := map[string]int{}
			for b, m := range got {
				if m == "" {
					t.Fatalf("bucket %v unassigned", b)
				}
				perTable[[2]any{b.TableID, m}]++
				total[m]++
			}
			for k, n := range perTable {
				if n > fair {
					t.Errorf("table %v: member %v has %d buckets, fair share %d", k[0], k[1], n, fair)
				}
			}
			// Overall no member is more than one fair share per table above
			// the mean.
			mean := float64(len(all)) / float64(tc.members)
			for m, n := range total {
				if float64(n) > mean+float64(tc.tables) {
					t.Errorf("member %s has %d buckets overall, mean %.1f", m, n, mean)
				}
			}
		})
	}
}

func TestAssignIsDeterministic(t *testing.T) {
	all := buckets(4, 8)
	a := Assign(all, []string{"a", "b", "c"})
	// Input order does not matter.
	rev := make([]catalog.BucketID, len(all))
	for i, b := range all {
		rev[len(all)-1-i] = b
	}
	if b := Assign(rev, []string{"a", "b", "c"}); !maps.Equal(a, b) {
		t.Fatalf("assignment depends on bucket order")
	}
}

func TestAssignMovesFewBuckets(t *testing.T) {
	all := buckets(6, 12) // 72 buckets
	before := Assign(all, []string{"a", "b", "c"})
	after := Assign(all, []string{"a", "b", "c", "d"})
	moved := 0
	toNew := 0
	for b, m := range after {
		if before[b] != m {
			moved++
			if m == "d" {
				toNew++
			}
		}
	}
	// The new member takes about a quarter; few others move.
	if toNew < 12 || moved > 36 {
		t.Fatalf("joining moved %d of 72 buckets, %d to the new member", moved, toNew)
	}
	// A member leaving moves only its own buckets, plus few for balance.
	left := Assign(all, []string{"a", "c"})
	stay := 0
	for b, m := range before {
		if m != "b" && left[b] == m {
			stay++
		}
	}
	if stay < 36 {
		t.Fatalf("only %d buckets of the remaining members stayed put", stay)
	}
}

func TestAssignNoMembers(t *testing.T) {
	if got := Assign(buckets(1, 3), nil); len(got) != 0 {
		t.Fatalf("got %v without members", got)
	}
	if got := Owner(catalog.BucketID{TableID: 1}, nil); got != "" {
		t.Fatalf("Owner without members = %q", got)
	}
}

func TestParseRoles(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"all", "write,read,tiering", ""},
		{"read,write", "write,read", ""},
		{" tiering ", "tiering", ""},
		{"write,write", "write", ""},
		{"", "", "no role given"},
		{"writer", "", `unknown role "writer"`},
	} {
		got, err := ParseRoles(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRoles(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseRoles(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestOwnsTableSpreadsTables(t *testing.T) {
	counts := map[string]int{}
	members := []string{"t1", "t2", "t3"}
	for id := range int64(300) {
		counts[Owner(catalog.BucketID{TableID: id, Bucket: -1}, members)]++
	}
	for _, m := range members {
		if counts[m] < 60 {
			t.Fatalf("tables per tiering member %v: uneven", counts)
		}
	}
}
