package objstore

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Key limits.
const (
	// MaxKeyLen is the longest key in bytes, S3's limit. For S3 it includes
	// the configured prefix.
	MaxKeyLen = 1024
	// MaxSegmentLen is the longest '/'-separated key segment in bytes, the
	// file-name limit of common filesystems (the FS implementation and
	// filesystem-backed S3 servers store each segment as a file name).
	MaxSegmentLen = 255
)

// ValidateKey reports whether key is a valid object key, with an error
// wrapping ErrInvalidKey that says what is wrong if not. A key:
//
//   - is not empty and at most MaxKeyLen bytes of valid UTF-8 without
//     control characters;
//   - is a '/'-separated path: no leading or trailing '/', no "//";
//   - has no segment longer than MaxSegmentLen bytes and no segment that
//     starts with '.': this excludes "." and "..", which filesystems
//     resolve, and keeps names free for temporary files of the FS
//     implementation and of S3 servers (versitygw's ".sgwtmp").
//
// Besides, one key must never be another key plus "/..." (see [Bucket]);
// ValidateKey cannot check that, as it sees one key.
func ValidateKey(key string) error {
	if reason := keyProblem(key); reason != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, reason)
	}
	return nil
}

func keyProblem(key string) string {
	switch {
	case key == "":
		return "empty"
	case len(key) > MaxKeyLen:
		return fmt.Sprintf("%d bytes long, the limit is %d", len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return "not valid UTF-8"
	case strings.HasPrefix(key, "/"):
		return "starts with '/'"
	case strings.HasSuffix(key, "/"):
		return "ends with '/'"
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return fmt.Sprintf("contains control character %U", r)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		if reason := segmentProblem(seg); reason != "" {
			return reason
		}
	}
	return ""
}

func segmentProblem(seg string) string {
	switch {
	case seg == "":
		return "contains \"//\""
	case seg[0] == '.':
		return fmt.Sprintf("segment %q starts with '.'", seg)
	case len(seg) > MaxSegmentLen:
		return fmt.Sprintf("segment of %d bytes, the limit is %d", len(seg), MaxSegmentLen)
	}
	return ""
}

// prefixMatchesSome reports whether some valid key could start with prefix.
// List uses it to answer nothing, not an error, for such a prefix.
func prefixMatchesSome(prefix string) bool {
	if prefix == "" {
		return true
	}
	if len(prefix) > MaxKeyLen || strings.HasPrefix(prefix, "/") {
		return false
	}
	for _, r := range prefix {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	segs := strings.Split(prefix, "/")
	for _, seg := range segs[:len(segs)-1] {
		if segmentProblem(seg) != "" {
			return false
		}
	}
	last := segs[len(segs)-1]
	return len(last) <= MaxSegmentLen && !strings.HasPrefix(last, ".")
}
