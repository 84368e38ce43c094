package cluster

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"slices"

	"github.com/strom-io/strom/catalog"
)

// Assign spreads buckets over members: every table's buckets evenly (no
// member gets more than its fair share, rounded up, of a table), each
// bucket to the member that ranks highest for it by rendezvous hashing
// among those with room. Every process that sees the same buckets and
// members computes the same assignment, and a member joining or leaving
// moves few buckets. members must not hold duplicates.
func Assign(buckets []catalog.BucketID, members []string) map[catalog.BucketID]string {
	out := make(map[catalog.BucketID]string, len(buckets))
	if len(members) == 0 {
		return out
	}
	sorted := slices.Clone(buckets)
	slices.SortFunc(sorted, compareBuckets)
	total := map[string]int{}
	for start := 0; start < len(sorted); {
		end := start
		for end < len(sorted) && sorted[end].TableID == sorted[start].TableID {
			end++
		}
		table := sorted[start:end]
		fair := (len(table) + len(members) - 1) / len(members)
		count := map[string]int{}
		for _, b := range table {
			best, bestScore := "", uint64(0)
			for _, m := range members {
				if count[m] >= fair {
					continue
				}
				s := score(b, m)
				// Among equal scores (never in practice), the member
				// with fewer buckets overall, then the smaller id.
				if best == "" || s > bestScore || (s == bestScore && (total[m] < total[best] || (total[m] == total[best] && m < best))) {
					best, bestScore = m, s
				}
			}
			out[b] = best
			count[best]++
			total[best]++
		}
		start = end
	}
	return out
}

// Owner is the member Assign would pick for a bucket that is not in the
// assignment yet (the first write to a new partition): the highest
// rendezvous score.
func Owner(b catalog.BucketID, members []string) string {
	best, bestScore := "", uint64(0)
	for _, m := range members {
		if s := score(b, m); best == "" || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

func score(b catalog.BucketID, member string) uint64 {
	h := fnv.New64a()
	var buf [12]byte
	binary.LittleEndian.PutUint64(buf[:8], uint64(b.TableID))
	binary.LittleEndian.PutUint32(buf[8:], uint32(b.Bucket))
	_, _ = h.Write(buf[:])
	_, _ = h.Write([]byte(b.Partition))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(member))
	// fnv's low bits mix poorly for short inputs: finish with a
	// 64-bit mixer (splitmix64's).
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func compareBuckets(a, b catalog.BucketID) int {
	if c := cmp.Compare(a.TableID, b.TableID); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Partition, b.Partition); c != 0 {
		return c
	}
	return cmp.Compare(a.Bucket, b.Bucket)
}
