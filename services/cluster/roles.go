package cluster

import (
	"fmt"
	"slices"
	"strings"
)

// The roles a Strom process can serve.
const (
	// RoleWrite leads buckets: WAL, offsets, segment flushes, KV state.
	RoleWrite = "write"
	// RoleRead serves fetches, subscriptions and lookups (forwarding
	// primary-key reads to the bucket's leader).
	RoleRead = "read"
	// RoleTiering keeps the Iceberg copies of lake-enabled tables.
	RoleTiering = "tiering"
)

// AllRoles is what `all` stands for.
var AllRoles = []string{RoleWrite, RoleRead, RoleTiering}

// Roles is a set of roles, in the order of AllRoles.
type Roles []string

// ParseRoles parses a comma-separated list of roles, or "all".
func ParseRoles(s string) (Roles, error) {
	var out Roles
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		switch {
		case r == "all":
			out = append(out, AllRoles...)
		case slices.Contains(AllRoles, r):
			out = append(out, r)
		case r == "":
			continue
		default:
			return nil, fmt.Errorf("unknown role %q: want a comma-separated list of %s, or all", r, strings.Join(AllRoles, ", "))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no role given: want a comma-separated list of %s, or all", strings.Join(AllRoles, ", "))
	}
	var sorted Roles
	for _, r := range AllRoles {
		if slices.Contains(out, r) {
			sorted = append(sorted, r)
		}
	}
	return sorted, nil
}

// Has reports whether r includes role.
func (r Roles) Has(role string) bool { return slices.Contains(r, role) }

// String renders r as ParseRoles reads it.
func (r Roles) String() string { return strings.Join(r, ",") }
