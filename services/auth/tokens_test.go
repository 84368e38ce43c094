package auth_test

import (
	"strings"
	"testing"

	"github.com/strom-io/strom/services/auth"
)

var (
	ingestHash = auth.Hash("ingest-token")
	adminHash  = auth.Hash("admin-token")
)

const goodFile = `
tokens:
  - name: ingest
    sha256: %INGEST%
    grants:
      - {database: shop, scopes: [write]}
      - {database: "*", scopes: [read]}
  - name: admin
    sha256: %ADMIN%
    grants: [{database: "*", scopes: [admin]}]
  - name: nothing
    sha256: 0000000000000000000000000000000000000000000000000000000000000000
`

func tokensFile(s string) []byte {
	return []byte(strings.NewReplacer("%INGEST%", ingestHash, "%ADMIN%", strings.ToUpper(adminHash)).Replace(s))
}

func TestParse(t *testing.T) {
	tok, err := auth.Parse(tokensFile(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tok.Names(), ","); got != "ingest,admin,nothing" {
		t.Errorf("names = %s", got)
	}
	ingest := tok.Lookup("ingest-token")
	if ingest == nil || ingest.Name != "ingest" {
		t.Fatalf("Lookup(ingest-token) = %v", ingest)
	}
	if admin := tok.Lookup("admin-token"); admin == nil || admin.Name != "admin" {
		t.Errorf("Lookup(admin-token) = %v (upper-case hex must match)", admin)
	}
	for _, bad := range []string{"", "ingest-token ", "INGEST-TOKEN", ingestHash} {
		if id := tok.Lookup(bad); id != nil {
			t.Errorf("Lookup(%q) = %s, want nil", bad, id.Name)
		}
	}
	if got := strings.Join(ingest.Grants(), " "); got != "*:read shop:write" {
		t.Errorf("grants = %s", got)
	}
	empty, err := auth.Parse(nil)
	if err != nil || empty.Len() != 0 {
		t.Errorf("Parse(empty) = %v, %v; want no tokens", empty, err)
	}
}

func TestParseErrors(t *testing.T) {
	h := ingestHash
	for name, c := range map[string]struct{ file, want string }{
		"unknown key":       {"tokens:\n  - name: a\n    sha256: " + h + "\n    token: x\n", "field token not found"},
		"top-level key":     {"token: []\n", "field token not found"},
		"no name":           {"tokens:\n  - sha256: " + h + "\n", "tokens[0]: name is empty"},
		"duplicate name":    {"tokens:\n  - {name: a, sha256: " + h + "}\n  - {name: a, sha256: " + adminHash + "}\n", `tokens[1] ("a"): the name is used twice`},
		"duplicate hash":    {"tokens:\n  - {name: a, sha256: " + h + "}\n  - {name: b, sha256: " + h + "}\n", `same sha256 as "a"`},
		"short hash":        {"tokens:\n  - {name: a, sha256: abc}\n", "want 64 hex digits"},
		"token not hash":    {"tokens:\n  - {name: a, sha256: strom_0123456789012345678901234567890123456789012345678901234567}\n", "not hexadecimal"},
		"no hash":           {"tokens:\n  - {name: a}\n", "want 64 hex digits"},
		"bad scope":         {"tokens:\n  - {name: a, sha256: " + h + ", grants: [{database: shop, scopes: [delete]}]}\n", `scope "delete": want read, write or admin`},
		"no scopes":         {"tokens:\n  - {name: a, sha256: " + h + ", grants: [{database: shop}]}\n", "scopes is empty"},
		"bad database":      {"tokens:\n  - {name: a, sha256: " + h + ", grants: [{database: 'shop ', scopes: [read]}]}\n", `grants[0]: database`},
		"empty database":    {"tokens:\n  - {name: a, sha256: " + h + ", grants: [{scopes: [read]}]}\n", `grants[0]: database`},
		"wrong type":        {"tokens:\n  - {name: a, sha256: " + h + ", grants: secret-value}\n", "cannot unmarshal"},
		"not yaml":          {"tokens: [", "tokens file"},
		"scopes not a list": {"tokens:\n  - {name: a, sha256: " + h + ", grants: [{database: shop, scopes: read}]}\n", "cannot unmarshal"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auth.Parse([]byte(c.file))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error holding %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not hold %q", err, c.want)
			}
			for _, secret := range []string{h, "secret-value", "strom_0123"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q repeats the value %q", err, secret)
				}
			}
		})
	}
}

func TestAllows(t *testing.T) {
	tok, err := auth.Parse(tokensFile(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	ingest, admin, nothing := tok.Lookup("ingest-token"), tok.Lookup("admin-token"), tok.Identities()[2]
	for _, c := range []struct {
		id       *auth.Identity
		database string
		need     auth.Scope
		want     bool
	}{
		{ingest, "shop", auth.ScopeRead, true},
		{ingest, "shop", auth.ScopeWrite, true},
		{ingest, "shop", auth.ScopeAdmin, false},
		{ingest, "other", auth.ScopeRead, true}, // "*": read
		{ingest, "other", auth.ScopeWrite, false},
		{ingest, "", auth.ScopeRead, true}, // cluster-wide read
		{ingest, "", auth.ScopeWrite, false},
		{ingest, "", auth.ScopeAny, true},
		{admin, "shop", auth.ScopeAdmin, true},
		{admin, "", auth.ScopeAdmin, true},
		{nothing, "shop", auth.ScopeRead, false},
		{nothing, "", auth.ScopeRead, false},
		{nothing, "", auth.ScopeAny, true},
	} {
		if got := c.id.Allows(c.database, c.need); got != c.want {
			t.Errorf("%s.Allows(%q, %s) = %v, want %v", c.id.Name, c.database, c.need, got, c.want)
		}
	}
}

func TestGenerateAndHash(t *testing.T) {
	a, err := auth.Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := auth.Generate()
	if a == b || !strings.HasPrefix(a, auth.TokenPrefix) || len(a) != len(auth.TokenPrefix)+43 {
		t.Errorf("Generate = %q, %q", a, b)
	}
	// echo -n test | sha256sum
	if got := auth.Hash("test"); got != "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
		t.Errorf("Hash(test) = %s", got)
	}
}

// FuzzParse: no tokens file makes Parse panic, and every file it accepts
// has tokens that can be looked up.
func FuzzParse(f *testing.F) {
	good := tokensFile(goodFile)
	f.Add(good)
	f.Add([]byte{})
	f.Add(good[:len(good)/2])                                  // truncated
	f.Add([]byte("tokens:\n  - name: a\n    sha256: zz\n"))    // corrupt hash
	f.Add([]byte("tokens: {a: b}\n"))                          // wrong shape
	f.Add([]byte("tokens:\n  - &a {name: x}\n  - *a\n"))       // aliases
	f.Add([]byte("\xff\xfe\x00tokens"))                        // not UTF-8
	f.Add([]byte("tokens:\n  - grants: [{database: '*'}]\n"))  // partial
	f.Add([]byte("--- \ntokens: []\n---\ntokens: [{}]\n"))     // two documents
	f.Add([]byte("tokens: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]")) // deep
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := auth.Parse(data)
		if err != nil {
			return
		}
		for _, id := range tok.Identities() {
			_ = id.Allows("shop", auth.ScopeRead)
		}
		_ = tok.Lookup("x")
	})
}
