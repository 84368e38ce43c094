package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/strom-io/strom/catalog"
)

// file is the YAML layout of a tokens file.
type file struct {
	Tokens []fileToken `yaml:"tokens"`
}

type fileToken struct {
	Name   string      `yaml:"name"`
	SHA256 string      `yaml:"sha256"`
	Grants []fileGrant `yaml:"grants"`
}

type fileGrant struct {
	Database string   `yaml:"database"`
	Scopes   []string `yaml:"scopes"`
}

// Tokens is a parsed tokens file: the identities and the hashes of their
// tokens. It is immutable and safe for concurrent use.
type Tokens struct {
	hashes [][sha256.Size]byte
	ids    []*Identity
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.ids) }

// Identities returns the identities in file order.
func (t *Tokens) Identities() []*Identity { return slices.Clone(t.ids) }

// Names returns the identities' names in file order.
func (t *Tokens) Names() []string {
	out := make([]string, len(t.ids))
	for i, id := range t.ids {
		out[i] = id.Name
	}
	return out
}

// Lookup returns the identity whose hash is the SHA-256 of token, or nil.
// It compares the hash with every entry in constant time, so its duration
// does not depend on which entry, or how much of one, matches.
func (t *Tokens) Lookup(token string) *Identity {
	sum := sha256.Sum256([]byte(token))
	var found *Identity
	for i := range t.hashes {
		if subtle.ConstantTimeCompare(sum[:], t.hashes[i][:]) == 1 {
			found = t.ids[i]
		}
	}
	return found
}

// Parse parses a tokens file, strictly: unknown keys, malformed hashes,
// unknown scopes, invalid database names, and duplicate names or hashes are
// errors that name the entry (by index and name, never by hash). An empty
// file has no tokens, so every request is refused.
func Parse(data []byte) (*Tokens, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("auth: tokens file: %s", redactYAML(err))
	}
	t := &Tokens{}
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	for i, ft := range f.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		if ft.Name == "" {
			return nil, fmt.Errorf("auth: tokens file: %s: name is empty", where)
		}
		where += fmt.Sprintf(" (%q)", ft.Name)
		if names[ft.Name] {
			return nil, fmt.Errorf("auth: tokens file: %s: the name is used twice; names identify tokens in logs and metrics", where)
		}
		names[ft.Name] = true
		h, err := parseHash(ft.SHA256)
		if err != nil {
			return nil, fmt.Errorf("auth: tokens file: %s: sha256: %w", where, err)
		}
		if other, dup := hashes[h]; dup {
			return nil, fmt.Errorf("auth: tokens file: %s: same sha256 as %q; give each token its own secret", where, other)
		}
		hashes[h] = ft.Name
		id := &Identity{Name: ft.Name, grants: map[string]Scope{}}
		for j, g := range ft.Grants {
			gwhere := fmt.Sprintf("%s: grants[%d]", where, j)
			if g.Database != AllDatabases {
				if err := catalog.ValidateDatabaseName(g.Database); err != nil {
					return nil, fmt.Errorf("auth: tokens file: %s: database: want a database name or \"*\": %w", gwhere, err)
				}
			}
			if len(g.Scopes) == 0 {
				return nil, fmt.Errorf("auth: tokens file: %s: scopes is empty; want read, write or admin", gwhere)
			}
			for _, s := range g.Scopes {
				sc, err := ParseScope(s)
				if err != nil {
					return nil, fmt.Errorf("auth: tokens file: %s: %w", gwhere, err)
				}
				id.grants[g.Database] = max(id.grants[g.Database], sc)
			}
		}
		t.hashes = append(t.hashes, h)
		t.ids = append(t.ids, id)
	}
	return t, nil
}

// yamlValue matches the values YAML type errors quote (`value`).
var yamlValue = regexp.MustCompile("`[^`]*`")

// redactYAML is the message of a YAML error without the values it quotes,
// which might be a hash, or a token pasted in by mistake.
func redactYAML(err error) string {
	return yamlValue.ReplaceAllString(err.Error(), "(value redacted)")
}

// parseHash decodes a hex SHA-256 (either case). Its error never repeats
// the value.
func parseHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	s = strings.TrimSpace(s)
	if len(s) != hex.EncodedLen(sha256.Size) {
		return h, fmt.Errorf("want %d hex digits (the SHA-256 of the token, from `strom token hash`), got %d characters", hex.EncodedLen(sha256.Size), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, errors.New("not hexadecimal; want the SHA-256 of the token, from `strom token hash`")
	}
	return h, nil
}

// Hash returns the hex SHA-256 of token, as the tokens file holds it.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenPrefix starts every generated token, so that secret scanners and
// people recognise one.
const TokenPrefix = "strom_"

// Generate returns a new random token: TokenPrefix and 256 random bits in
// unpadded base64url.
func Generate() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: generate token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
