package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCreateIfNotExists: `db create` and `table create` with
// --if-not-exists say whether they created or found the database or table.
func TestCreateIfNotExists(t *testing.T) {
	url := startStrom(t)
	for _, tc := range []struct {
		args        []string
		first, then string
	}{
		{[]string{"db", "create", "shop", "--if-not-exists"}, "created database shop", "database shop already exists"},
		{[]string{"table", "create", "shop.orders", "-c", "id BIGINT NOT NULL", "--if-not-exists"}, "created log table shop.orders", "log table shop.orders already exists (schema version 1); nothing was changed"},
	} {
		for i, want := range []string{tc.first, tc.then} {
			out, err := runStrom(t, "", append([]string{"--addr", url}, tc.args...)...)
			if err != nil {
				t.Fatalf("strom %s (run %d): %v", strings.Join(tc.args, " "), i+1, err)
			}
			if strings.TrimSpace(out) != want {
				t.Errorf("strom %s (run %d) printed %q, want %q", strings.Join(tc.args, " "), i+1, out, want)
			}
		}
	}
	out, err := runStrom(t, "", "--addr", url, "-o", "json", "db", "create", "shop", "--if-not-exists")
	var resp struct{ Existed bool }
	if err != nil || json.Unmarshal([]byte(out), &resp) != nil || !resp.Existed {
		t.Errorf("-o json: %v, %s; want \"existed\": true", err, out)
	}
	if _, err := runStrom(t, "", "--addr", url, "db", "create", "shop"); err == nil || !strings.Contains(err.Error(), "already_exists") {
		t.Errorf("without --if-not-exists: %v, want already_exists", err)
	}
}
