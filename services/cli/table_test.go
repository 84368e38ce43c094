package cli

import "testing"

func TestParseColumn(t *testing.T) {
	for in, want := range map[string]struct {
		name, typ string
		nullable  bool
	}{
		"id BIGINT NOT NULL":           {"id", "BIGINT", false},
		"id bigint not null":           {"id", "bigint", false},
		"amount DECIMAL(10, 2)":        {"amount", "DECIMAL(10, 2)", true},
		"  note   STRING   NULL  ":     {"note", "STRING", true},
		"ts TIMESTAMP_LTZ(3) NOT NULL": {"ts", "TIMESTAMP_LTZ(3)", false},
	} {
		c, err := parseColumn(in)
		if err != nil {
			t.Errorf("parseColumn(%q): %v", in, err)
			continue
		}
		if c.GetName() != want.name || c.GetType() != want.typ || c.GetNullable() != want.nullable {
			t.Errorf("parseColumn(%q) = %v, want %+v", in, c, want)
		}
	}
	for _, bad := range []string{"", "id", "  id  "} {
		if _, err := parseColumn(bad); err == nil {
			t.Errorf("parseColumn(%q) succeeded", bad)
		}
	}
}

func TestSplitTableName(t *testing.T) {
	if db, tbl, err := splitTableName("shop.orders"); err != nil || db != "shop" || tbl != "orders" {
		t.Errorf("splitTableName = %q %q %v", db, tbl, err)
	}
	for _, bad := range []string{"orders", ".orders", "shop.", ""} {
		if _, _, err := splitTableName(bad); err == nil {
			t.Errorf("splitTableName(%q) succeeded", bad)
		}
	}
}

func TestDisplayAddr(t *testing.T) {
	for in, want := range map[string]string{"[::]:9123": "localhost:9123", "0.0.0.0:1": "localhost:1", "127.0.0.1:5": "127.0.0.1:5"} {
		if got := displayAddr(in); got != want {
			t.Errorf("displayAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
