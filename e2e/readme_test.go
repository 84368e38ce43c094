package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strom-io/strom/testenv"
)

// TestREADME runs the shell examples of README.md and docs/*.md as a reader
// would paste them, and checks that each prints what the document shows.
//
// # What runs
//
// Every ```sh block runs, unless docNotRunnable lists it with the reason
// (a block listed there that no longer exists fails the test too). A code
// block in another language or none that starts with a user-facing command
// (docShellCommands: curl, strom, grpcurl, make, …) fails the test: tag
// it ```sh. Other blocks — yaml, go, python, output, diagrams, the
// development notes of docs/ — are not run.
//
// # Sessions
//
// The blocks of one level-2 section (a "## " heading, with its
// subsections) run in order as one bash script (set -euo pipefail), so
// variables like S carry from one block to the next; each section gets a
// fresh shell, a fresh server and a fresh data directory. README.md runs
// first, then docs/*.md; all sections share one working directory, so a
// file an earlier section wrote (strom.yaml, token.txt) is there for a
// later one, as for a reader who stays in one directory.
//
// Each command is wrapped so that its stdout and stderr are captured on
// their own; the first command that exits non-zero stops the section and
// fails the test, naming the document line.
//
// # The server and the tools
//
// `strom` and `bin/strom` are the binary TestMain built (the README's
// `go build -o bin/strom …` line becomes a no-op: bin/strom is already
// there). `strom server ARGS` starts the real server in the
// background, after stopping the one running, on the section's port with
// the section's data directory (ARGS may override the latter), and
// returns once it answers /readyz. A section without a `strom server`
// command gets one started with no flags (what `make run` does) before
// its first command. Every `localhost:9123` in a command is replaced by
// 127.0.0.1 and the section's port, STROM_ADDR points the CLI there, and
// in the output the address is replaced back, so outputs read as the
// document shows them. grpcurl is the pinned one of `make tools`; a
// missing grpcurl fails the test.
//
// Files a reader brings: tls.crt, tls.key (a server certificate for
// localhost and 127.0.0.1) and ca.pem (its CA) are in the working
// directory. When the documents mention STROM_POSTGRES_URL, a PostgreSQL
// database and an S3 bucket from testenv are the environment variables
// STROM_POSTGRES_URL, S3_ACCESS_KEY and S3_SECRET_KEY (the same for every
// section, as a reader's deployment would be), and docSubstitutions put
// the S3 endpoint and bucket into the commands.
//
// # Expected output
//
// The comment lines right after a command (no blank line between) are its
// expected output, without their "# " prefix; a comment after a blank line
// is prose. A command without them must succeed, and if it prints a
// Connect error ({"code": …, "message": …}) the test fails: an error the
// document means to show must be shown.
//
// Output that starts with { or [ is compared as a sequence of JSON values
// (one per line for JSON lines, or pretty-printed), semantically: key
// order and white space do not matter. Placeholders for volatile values:
//
//   - the string "…" matches any value;
//   - a string with … in it matches any string where … stands for any
//     text ("strom_…", "row 17…");
//   - the key "…" in an object (with any value) allows keys the document
//     does not show; a last array element "…" allows more elements;
//   - values of the keys _timestamp, __timestamp and of keys ending in
//     Time (createTime, startTime, …) match any RFC 3339 time, so the
//     document can show realistic ones.
//
// Other output is compared line by line, with every run of blanks taken
// as one (columns may align differently); … in a line matches any text,
// and a line that is only … matches any number of lines.
func TestREADME(t *testing.T) {
	grpcurl := testenv.Binary(t, "grpcurl")
	paths, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	paths = append([]string{"../README.md"}, paths...)
	type doc struct {
		name     string
		sections []*docSection
	}
	var (
		docs     []doc
		texts    []string
		excluded = map[docBlockID]bool{}
	)
	for _, path := range paths {
		name := strings.TrimPrefix(path, "../")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(raw))
		blocks, err := parseDocBlocks(name, string(raw))
		if err != nil {
			t.Fatal(err)
		}
		d := doc{name: name}
		for _, b := range blocks {
			if !b.isShell() {
				continue
			}
			id := docBlockID{name, b.firstLine()}
			if _, ok := docNotRunnable[id]; ok {
				excluded[id] = true
				continue
			}
			if len(d.sections) == 0 || d.sections[len(d.sections)-1].heading != b.section {
				d.sections = append(d.sections, &docSection{doc: name, heading: b.section})
			}
			s := d.sections[len(d.sections)-1]
			s.blocks = append(s.blocks, b)
		}
		for _, s := range d.sections {
			if _, err := s.commands(); err != nil {
				t.Fatal(err)
			}
		}
		docs = append(docs, d)
	}
	for id := range docNotRunnable {
		if !excluded[id] {
			t.Errorf("docNotRunnable lists a block of %s starting %q that is not there: remove it from the list", id.doc, id.first)
		}
	}

	env := newDocEnv(t, strings.Join(texts, "\n"), grpcurl)
	for _, d := range docs {
		if len(d.sections) == 0 {
			continue
		}
		t.Run(d.name, func(t *testing.T) {
			for _, s := range d.sections {
				t.Run(s.heading, func(t *testing.T) { env.run(t, s) })
			}
		})
	}
}

// docBlockID names a code block by its document and its first line.
type docBlockID struct{ doc, first string }

// docNotRunnable lists the ```sh blocks the test does not run, and why.
var docNotRunnable = map[docBlockID]string{
	{"README.md", "make run      # starts Strom with embedded defaults: no PostgreSQL or S3 needed, data under ./data"}:                             "make run is `strom server` with no flags, which every section without its own `strom server` runs; make test is the whole test suite",
	{"README.md", "docker build -t strom-io/strom .          # the image: the Dockerfile at the root"}:                                              "needs a Docker engine and a Kubernetes cluster; TestLocalstackCompose checks the Dockerfile, charts/ renders and validates the chart",
	{"README.md", "strom server -config.file strom.yaml -config.expand-env -frontend.id f1 -data-dir /var/lib/strom \\"}:                            "needs several hosts (10.0.0.11) and `...` stands for the flags of the first line; TestCluster* run several frontends",
	{"docs/lake.md", "grpcurl -plaintext -d '{\"fetch\":{\"database\":\"shop\",\"table\":\"orders\",\"bucket\":0,\"offset\":0},\"full\":true}' \\"}: "a live stream that never ends (Ctrl-C stops it); services/server's subscribe_full_test covers full subscribes",
}

// docSubstitutions replace, in every command, what names a reader's
// deployment with the test's: the S3 endpoint and bucket of the
// configuration examples (each key by its value).
func docSubstitutions(s3 testenv.S3Endpoint) map[string]string {
	bucket := "bucket: " + s3.Bucket
	if s3.Prefix != "" {
		bucket += "\n    prefix: " + s3.Prefix
	}
	return map[string]string{
		"http://minio:9000": s3.Endpoint,
		"bucket: strom":     bucket,
	}
}

// docShellCommands are the words that start a command line; a block that
// is not tagged sh but starts with one of them fails the test.
var docShellCommands = []string{"curl", "grpcurl", "strom", "bin/strom", "make", "docker", "helm", "kubectl"}

// docBlock is one fenced code block of a document.
type docBlock struct {
	doc     string
	line    int    // of the opening fence, 1-based
	lang    string // the fence's info string: sh, yaml, "" …
	section string // the level-2 heading it is under
	lines   []string
}

func (b docBlock) isShell() bool {
	switch b.lang {
	case "sh", "bash", "shell":
		return true
	}
	return false
}

func (b docBlock) firstLine() string {
	for _, l := range b.lines {
		if strings.TrimSpace(l) != "" {
			return l
		}
	}
	return ""
}

// parseDocBlocks returns the fenced code blocks of a Markdown document.
func parseDocBlocks(doc, md string) ([]docBlock, error) {
	var (
		blocks  []docBlock
		cur     *docBlock
		section = "(top)"
	)
	for i, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &docBlock{doc: doc, line: i + 1, lang: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), section: section}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		case strings.HasPrefix(line, "## "):
			section = strings.TrimSpace(strings.TrimPrefix(line, "## "))
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: unterminated code block", doc, cur.line)
	}
	for _, b := range blocks {
		if b.isShell() {
			continue
		}
		word, _, _ := strings.Cut(strings.TrimSpace(b.firstLine()), " ")
		if slices.Contains(docShellCommands, word) {
			return nil, fmt.Errorf("%s:%d: a ```%s block starts with the command %q: tag it ```sh so that TestREADME runs it (or lists it in docNotRunnable)", doc, b.line, b.lang, word)
		}
	}
	return blocks, nil
}

// docCommand is one command of a shell block and the output shown after it.
type docCommand struct {
	line   int // document line of its first line
	text   string
	output []string // expected output lines, without "# "; nil: not shown
}

func (c docCommand) title() string {
	first, _, _ := strings.Cut(c.text, "\n")
	return first
}

// splitDocCommands splits a shell block into commands as bash would for
// what documents use: quotes ('…', "…") and backslash continuations across
// lines, here-documents, and comments.
func splitDocCommands(b docBlock) ([]docCommand, error) {
	var (
		cmds []docCommand
		cur  *docCommand
		lx   shLexer
		// outputOpen: comment lines now are the last command's output.
		outputOpen bool
	)
	for i, line := range b.lines {
		n := b.line + 1 + i
		if cur == nil {
			trimmed := strings.TrimSpace(line)
			switch {
			case trimmed == "":
				outputOpen = false
				continue
			case strings.HasPrefix(trimmed, "#"):
				if outputOpen {
					out := strings.TrimPrefix(strings.TrimPrefix(trimmed, "#"), " ")
					last := &cmds[len(cmds)-1]
					last.output = append(last.output, out)
				}
				continue
			}
			cur = &docCommand{line: n}
		} else {
			cur.text += "\n"
		}
		cur.text += line
		if err := lx.line(line); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", b.doc, n, err)
		}
		if lx.complete() {
			cmds = append(cmds, *cur)
			cur = nil
			outputOpen = true
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: the command starting here does not end in its block (an open quote, here-document or trailing backslash)", b.doc, cur.line)
	}
	return cmds, nil
}

// shLexer follows the quoting state of shell lines.
type shLexer struct {
	quote    byte     // ' or " while inside quotes
	cont     bool     // the last line ended in a backslash
	heredocs []string // delimiters of pending here-documents
	inDoc    bool     // reading here-document bodies
}

func (l *shLexer) complete() bool {
	return l.quote == 0 && !l.cont && len(l.heredocs) == 0
}

var heredocStart = regexp.MustCompile(`^<<-?\s*(?:'([^']+)'|"([^"]+)"|([A-Za-z_][A-Za-z0-9_]*))`)

func (l *shLexer) line(s string) error {
	if l.inDoc {
		if strings.TrimLeft(s, "\t") == l.heredocs[0] {
			l.heredocs = l.heredocs[1:]
			l.inDoc = len(l.heredocs) > 0
		}
		return nil
	}
	l.cont = false
	wordStart := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch l.quote {
		case '\'':
			if c == '\'' {
				l.quote = 0
			}
			continue
		case '"':
			switch c {
			case '\\':
				i++
			case '"':
				l.quote = 0
			}
			continue
		}
		switch {
		case c == '\\':
			if i == len(s)-1 {
				l.cont = true
			}
			i++
		case c == '\'' || c == '"':
			l.quote = c
		case c == '#' && wordStart:
			return nil // a comment to the end of the line
		case c == '<' && strings.HasPrefix(s[i:], "<<") && !strings.HasPrefix(s[i:], "<<<"):
			m := heredocStart.FindStringSubmatch(s[i:])
			if m == nil {
				return fmt.Errorf("a here-document without a delimiter word")
			}
			l.heredocs = append(l.heredocs, m[1]+m[2]+m[3])
			i += len(m[0]) - 1
		}
		wordStart = c == ' ' || c == '\t' || c == ';' || c == '|' || c == '&' || c == '(' || c == '$'
	}
	if l.quote == 0 && len(l.heredocs) > 0 {
		l.inDoc = true
	}
	return nil
}

// docSection is the runnable blocks of one level-2 section.
type docSection struct {
	doc, heading string
	blocks       []docBlock
}

// docEnv is what the sections of every document share.
type docEnv struct {
	dir    string // the working directory
	binDir string // first on PATH: strom, grpcurl
	env    []string
	subst  map[string]string
}

func newDocEnv(t *testing.T, text, grpcurl string) *docEnv {
	dir := t.TempDir()
	binDir := filepath.Join(dir, ".testbin")
	for _, d := range []string{binDir, filepath.Join(dir, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		filepath.Join(binDir, "strom"):   stromBin,
		filepath.Join(dir, "bin/strom"):  stromBin,
		filepath.Join(binDir, "grpcurl"): grpcurl,
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	ca := testenv.NewCA(t)
	ca.WriteServerCert(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}

	e := &docEnv{dir: dir, binDir: binDir, subst: map[string]string{}}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "STROM_") || k == "PATH" {
			continue // the reader's shell has none of the test's settings
		}
		e.env = append(e.env, kv)
	}
	e.env = append(e.env, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	if strings.Contains(text, "STROM_POSTGRES_URL") {
		s3 := testenv.S3(t)
		e.env = append(e.env, "STROM_POSTGRES_URL="+testenv.Postgres(t), "S3_ACCESS_KEY="+s3.AccessKey, "S3_SECRET_KEY="+s3.SecretKey)
		e.subst = docSubstitutions(s3)
	}
	return e
}

// docPrelude defines the `strom` function that runs servers in the
// background, then runs a default server unless the section starts its
// own. It expects STROM_BIN, DOC_PORT, DOC_DATA and DOC_LOG.
const docPrelude = `set -euo pipefail
__strom_pid=
__strom_started=0
strom() {
	if [ "${1-}" != server ]; then
		"$STROM_BIN" "$@"
		return
	fi
	shift
	__strom_stop
	"$STROM_BIN" server -data-dir "$DOC_DATA" -server.internal-listen-address 127.0.0.1:0 "$@" \
		-server.http-listen-address "127.0.0.1:$DOC_PORT" >>"$DOC_LOG" 2>&1 </dev/null &
	__strom_pid=$!
	__strom_started=$((__strom_started + 1))
	local i scheme
	for i in $(seq 1200); do
		if ! kill -0 "$__strom_pid" 2>/dev/null; then
			echo "strom server exited before it was ready; its log:" >&2
			tail -n 30 "$DOC_LOG" >&2
			return 1
		fi
		if [ "$(grep -c 'Strom is ready' "$DOC_LOG")" -ge "$__strom_started" ]; then
			scheme=$(grep 'Strom is ready' "$DOC_LOG" | tail -n 1 | sed 's/.*curl -s \(https*\):.*/\1/')
			if curl -skf -o /dev/null "$scheme://127.0.0.1:$DOC_PORT/readyz"; then
				return 0
			fi
		fi
		sleep 0.05
	done
	echo "strom server not ready after 60s" >&2
	return 1
}
__strom_stop() {
	if [ -n "$__strom_pid" ]; then
		kill -TERM "$__strom_pid" 2>/dev/null || true
		wait "$__strom_pid" || true
		__strom_pid=
	fi
}
trap __strom_stop EXIT
`

// commands returns the section's commands.
func (s *docSection) commands() ([]docCommand, error) {
	var cmds []docCommand
	for _, b := range s.blocks {
		c, err := splitDocCommands(b)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, c...)
	}
	return cmds, nil
}

// docBuildLine is the README's build command; bin/strom is already there.
var docBuildLine = regexp.MustCompile(`^go build -o bin/strom \./services/cmd/strom\b`)

var docServerLine = regexp.MustCompile(`(^|\n)\s*strom server\b`)

func (e *docEnv) run(t *testing.T, s *docSection) {
	cmds, err := s.commands()
	if err != nil {
		t.Fatal(err)
	}
	port := docFreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	work := t.TempDir() // the section's data directory, outputs, script
	outDir := filepath.Join(work, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(work, "server.log")

	var script strings.Builder
	script.WriteString(docPrelude)
	ownServer := slices.ContainsFunc(cmds, func(c docCommand) bool { return docServerLine.MatchString(c.text) })
	if !ownServer {
		script.WriteString("strom server\n")
	}
	for i, c := range cmds {
		text := c.text
		if docBuildLine.MatchString(text) {
			text = ": " + strconv.Quote(text) // TestMain built it
		}
		text = strings.ReplaceAll(text, "localhost:9123", addr)
		for from, to := range e.subst {
			text = strings.ReplaceAll(text, from, to)
		}
		fmt.Fprintf(&script, "echo %d >%q\n{\n%s\n} >%q 2>&1\n", i, filepath.Join(work, "current"), text, filepath.Join(outDir, strconv.Itoa(i)))
	}
	script.WriteString("echo done >" + strconv.Quote(filepath.Join(work, "current")) + "\n")
	scriptFile := filepath.Join(work, "section.sh")
	if err := os.WriteFile(scriptFile, []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", scriptFile)
	// The script and the servers it starts are one process group: a
	// timeout kills them all, and nothing outlives the section.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Dir = e.dir
	cmd.Env = append(slices.Clone(e.env),
		"STROM_BIN="+stromBin, "DOC_PORT="+strconv.Itoa(port), "DOC_DATA="+filepath.Join(work, "data"), "DOC_LOG="+logFile,
		"STROM_ADDR=http://"+addr)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	runErr := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}

	serverLog := func() string {
		b, _ := os.ReadFile(logFile)
		if len(b) > 8<<10 {
			b = b[len(b)-8<<10:]
		}
		return string(b)
	}
	output := func(i int) string {
		b, _ := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i)))
		return strings.ReplaceAll(string(b), addr, "localhost:9123")
	}
	ran := len(cmds)
	if runErr != nil {
		cur, _ := os.ReadFile(filepath.Join(work, "current"))
		i, err := strconv.Atoi(strings.TrimSpace(string(cur)))
		if err != nil {
			t.Fatalf("%s, section %q: the script failed before its first command: %v\n%s\nserver log:\n%s", s.doc, s.heading, runErr, stderr.String(), serverLog())
		}
		c := cmds[i]
		t.Errorf("%s:%d: `%s` failed: %v\noutput:\n%s", s.doc, c.line, c.title(), runErr, output(i))
		if stderr.Len() > 0 {
			t.Logf("script stderr:\n%s", stderr.String())
		}
		t.Logf("server log (tail):\n%s", serverLog())
		ran = i // compare what ran before it
	}
	for i, c := range cmds[:ran] {
		if msg := checkDocOutput(c, output(i)); msg != "" {
			t.Errorf("%s:%d: `%s`: %s", s.doc, c.line, c.title(), msg)
		}
	}
}

// docFreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func docFreePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// checkDocOutput compares a command's output with what the document shows;
// it returns "" when they match, else what differs.
func checkDocOutput(c docCommand, got string) string {
	got = strings.TrimRight(got, "\n")
	if c.output == nil {
		if isConnectError(got) {
			return fmt.Sprintf("answered an error the document does not show:\n%s", got)
		}
		return ""
	}
	want := strings.Join(c.output, "\n")
	if t := strings.TrimSpace(want); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		wantVals, err := decodeJSONValues(want)
		if err != nil {
			return fmt.Sprintf("the document's expected output is not JSON (%v):\n%s\ngot:\n%s", err, want, got)
		}
		gotVals, err := decodeJSONValues(got)
		if err != nil {
			return fmt.Sprintf("want JSON, got output that is not (%v):\n%s", err, got)
		}
		if diff := matchJSONValues(wantVals, gotVals); diff != "" {
			return fmt.Sprintf("%s\nwant:\n%s\ngot:\n%s", diff, want, got)
		}
		return ""
	}
	if !matchLines(c.output, strings.Split(got, "\n")) {
		return fmt.Sprintf("output differs\nwant:\n%s\ngot:\n%s", want, got)
	}
	return ""
}

// isConnectError reports whether s is a Connect error in JSON.
func isConnectError(s string) bool {
	var e struct {
		Code    *string `json:"code"`
		Message *string `json:"message"`
	}
	return json.Unmarshal([]byte(s), &e) == nil && e.Code != nil && e.Message != nil
}

func decodeJSONValues(s string) ([]any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var vals []any
	for {
		var v any
		err := d.Decode(&v)
		if errors.Is(err, io.EOF) {
			return vals, nil
		}
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
}

const ellipsis = "…"

func matchJSONValues(want, got []any) string {
	for i := range min(len(want), len(got)) {
		if d := matchJSON(fmt.Sprintf("value %d", i+1), "", want[i], got[i]); d != "" {
			return d
		}
	}
	if len(want) != len(got) {
		return fmt.Sprintf("want %d JSON values, got %d", len(want), len(got))
	}
	return ""
}

// matchJSON compares want (with placeholders) with got at path; key is
// the object key the values are under.
func matchJSON(path, key string, want, got any) string {
	if want == ellipsis {
		return ""
	}
	if key == "_timestamp" || key == "__timestamp" || strings.HasSuffix(key, "Time") {
		if s, ok := got.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return ""
			}
		}
		return fmt.Sprintf("%s: want an RFC 3339 time, got %s", path, jsonText(got))
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %s", path, jsonText(got))
		}
		_, open := w[ellipsis]
		for k, wv := range w {
			if k == ellipsis {
				continue
			}
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s: missing key %q", path, k)
			}
			if d := matchJSON(path+"."+k, k, wv, gv); d != "" {
				return d
			}
		}
		if !open {
			for k := range g {
				if _, ok := w[k]; !ok {
					return fmt.Sprintf("%s: unexpected key %q (value %s)", path, k, jsonText(g[k]))
				}
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: want an array, got %s", path, jsonText(got))
		}
		open := len(w) > 0 && w[len(w)-1] == ellipsis
		if open {
			w = w[:len(w)-1]
		}
		if len(g) < len(w) || (!open && len(g) != len(w)) {
			return fmt.Sprintf("%s: want %d elements, got %d", path, len(w), len(g))
		}
		for i := range w {
			if d := matchJSON(fmt.Sprintf("%s[%d]", path, i), key, w[i], g[i]); d != "" {
				return d
			}
		}
		return ""
	case string:
		g, ok := got.(string)
		if !ok || !matchGlob(w, g) {
			return fmt.Sprintf("%s: want %s, got %s", path, jsonText(want), jsonText(got))
		}
		return ""
	default: // json.Number, bool, nil
		if want != got {
			return fmt.Sprintf("%s: want %s, got %s", path, jsonText(want), jsonText(got))
		}
		return ""
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// matchGlob reports whether s matches pattern, where … matches any text.
func matchGlob(pattern, s string) bool {
	parts := strings.Split(pattern, ellipsis)
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// matchLines matches output lines against expected ones, where a line
// that is only … matches any number of lines. Runs of blanks compare
// equal to one blank, so columns may align differently.
func matchLines(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	w := collapseBlanks(want[0])
	if w == ellipsis {
		for i := 0; i <= len(got); i++ {
			if matchLines(want[1:], got[i:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && matchGlob(w, collapseBlanks(got[0])) && matchLines(want[1:], got[1:])
}

// collapseBlanks trims a line and turns each run of blanks into one space.
func collapseBlanks(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
