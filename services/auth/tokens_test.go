package auth_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/strom-io/strom/catalog"
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

// FuzzParse: no tokens file makes Parse panic; a file it refuses gets an
// error that says it is about the tokens file; and a file it accepts means
// what its YAML says: written back in canonical YAML it parses to the same
// identities with the same grants.
//
//	cd services && go test ./auth -run '^$' -fuzz '^FuzzParse$' -fuzztime 1m
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
			if !strings.HasPrefix(err.Error(), "auth: tokens file: ") {
				t.Fatalf("Parse error %q does not say it is about the tokens file", err)
			}
			return
		}
		// Decode the file as plain YAML (the first document, as Parse
		// does) and write it back canonically.
		var doc struct {
			Tokens []struct {
				Name   string `yaml:"name"`
				SHA256 string `yaml:"sha256"`
				Grants []struct {
					Database string   `yaml:"database"`
					Scopes   []string `yaml:"scopes"`
				} `yaml:"grants"`
			} `yaml:"tokens"`
		}
		if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("Parse accepted a file that is not YAML: %v", err)
		}
		if tok.Len() != len(doc.Tokens) {
			t.Fatalf("Parse found %d tokens, the file lists %d", tok.Len(), len(doc.Tokens))
		}
		canonical, err := yaml.Marshal(&doc)
		if err != nil {
			t.Fatal(err)
		}
		again, err := auth.Parse(canonical)
		if err != nil {
			t.Fatalf("Parse accepted a file but not its canonical form: %v\n%s", err, canonical)
		}
		ids, againIDs := tok.Identities(), again.Identities()
		for i, id := range ids {
			if id.Name != doc.Tokens[i].Name || againIDs[i].Name != id.Name {
				t.Fatalf("identity %d is %q, the file names %q", i, id.Name, doc.Tokens[i].Name)
			}
			if g, h := strings.Join(id.Grants(), ","), strings.Join(againIDs[i].Grants(), ","); g != h {
				t.Fatalf("%q: grants %s, in the canonical file %s", id.Name, g, h)
			}
		}
	})
}

// FuzzParseEntries builds tokens files of two entries from arbitrary names,
// tokens, a database and a scope: Parse accepts exactly the valid ones;
// then each token finds its identity, with its grant, and nothing else
// does; an invalid one gets an error naming the entry and never the hash.
//
//	cd services && go test ./auth -run '^$' -fuzz FuzzParseEntries -fuzztime 1m
func FuzzParseEntries(f *testing.F) {
	f.Add("ingest", "secret-1", "shop", "write", false, "admin", "secret-2")
	f.Add("ingest", "secret-1", "*", "read", true, "admin", "secret-2")
	f.Add("", "secret-1", "shop", "read", false, "admin", "secret-2")             // no name
	f.Add("same", "secret-1", "shop", "read", false, "same", "secret-2")          // name twice
	f.Add("ingest", "same", "shop", "read", false, "admin", "same")               // token twice
	f.Add("ingest", "secret-1", "Shop Floor", "read", false, "admin", "secret-2") // bad database
	f.Add("ingest", "secret-1", "shop", "owner", false, "admin", "secret-2")      // bad scope
	f.Add("ingest", "secret-1", "", "admin", false, "admin", "secret-2")          // no database
	f.Add("in\"gest: x", "\x00", "_shop", "write", true, "\xff", "")
	f.Fuzz(func(t *testing.T, name1, token1, db, scope string, upper bool, name2, token2 string) {
		type grant struct {
			Database string   `yaml:"database"`
			Scopes   []string `yaml:"scopes"`
		}
		type entry struct {
			Name   string  `yaml:"name"`
			SHA256 string  `yaml:"sha256"`
			Grants []grant `yaml:"grants"`
		}
		hash1, hash2 := auth.Hash(token1), auth.Hash(token2)
		if upper {
			hash1 = strings.ToUpper(hash1)
		}
		data, err := yaml.Marshal(map[string][]entry{"tokens": {
			{Name: name1, SHA256: hash1, Grants: []grant{{Database: db, Scopes: []string{scope}}}},
			{Name: name2, SHA256: hash2, Grants: []grant{{Database: auth.AllDatabases, Scopes: []string{"read"}}}},
		}})
		if err != nil {
			t.Fatalf("cannot write the file as YAML: %v", err)
		}
		need, scopeErr := auth.ParseScope(scope)
		valid := name1 != "" && name2 != "" && name1 != name2 && token1 != token2 &&
			(db == auth.AllDatabases || catalog.ValidateDatabaseName(db) == nil) && scopeErr == nil

		tok, err := auth.Parse(data)
		if !valid {
			if err == nil {
				t.Fatalf("Parse accepted an invalid file:\n%s", data)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "auth: tokens file: tokens[") {
				t.Fatalf("error %q does not name the entry", msg)
			}
			for _, h := range []string{hash1, hash2} {
				if strings.Contains(strings.ToLower(msg), strings.ToLower(h)) && !strings.Contains(name1+name2, h) {
					t.Fatalf("error %q repeats a hash", msg)
				}
			}
			return
		}
		if err != nil {
			t.Fatalf("Parse refused a valid file: %v\n%s", err, data)
		}
		if got := tok.Names(); len(got) != 2 || got[0] != name1 || got[1] != name2 {
			t.Fatalf("names %q, want %q and %q", got, name1, name2)
		}
		id1, id2 := tok.Lookup(token1), tok.Lookup(token2)
		if id1 == nil || id1.Name != name1 || id2 == nil || id2.Name != name2 {
			t.Fatalf("Lookup(token1) = %v, Lookup(token2) = %v; want %q and %q", id1, id2, name1, name2)
		}
		if other := token1 + "x"; other != token2 && tok.Lookup(other) != nil {
			t.Fatalf("Lookup of an unknown token found %q", tok.Lookup(other).Name)
		}
		if got := strings.Join(id1.Grants(), ","); got != db+":"+scope {
			t.Fatalf("%q grants %s, want %s:%s", name1, got, db, scope)
		}
		on := db
		if db == auth.AllDatabases {
			on = "" // a grant on every database covers the cluster-wide operations
		}
		if !id1.Allows(on, need) || (need < auth.ScopeAdmin && id1.Allows(on, need+1)) {
			t.Fatalf("%q with %s on %q: Allows(%q, %s) = %v, Allows(%q, %s) = %v", name1, scope, db,
				on, need, id1.Allows(on, need), on, need+1, id1.Allows(on, need+1))
		}
	})
}
