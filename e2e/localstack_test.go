package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	icebergrest "github.com/apache/iceberg-go/catalog/rest"
	iceio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // s3:// data files
	"github.com/apache/iceberg-go/table"
	composecli "github.com/compose-spec/compose-go/v2/cli"
	composeloader "github.com/compose-spec/compose-go/v2/loader"
	compose "github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/testenv"
)

// The dev stack (localstack/) cannot run here: there is no Docker engine.
// These tests check it as far as that allows. TestLocalstackCompose loads
// compose.yaml as Compose does and checks how the services fit together;
// TestLocalstackWalkthrough runs the real strom binary once per Strom
// service with exactly that service's flags (only endpoints, addresses and
// directories replaced by the test's PostgreSQL and S3 server), then the
// README walkthrough's commands against those processes.

const stackDir = "../localstack"

// stack is the loaded compose project.
type stack struct {
	project *compose.Project
	// strom maps each Strom service to its `strom server` flags
	// (entrypoint + command without "strom server").
	strom map[string][]stackFlag
	// trino is the Trino catalog file's properties, resolved from the
	// trino service's environment; trinoCatalog its catalog name.
	trino        map[string]string
	trinoCatalog string
}

// stackFlag is one `-name=value` (or `-name value`, or a bare boolean).
type stackFlag struct {
	name, value string
}

// stackServerFlags returns every flag `strom server` knows: name -> whether it
// is a boolean, from the binary's own -h output.
func stackServerFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command(stromBin, "server", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("strom server -h: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	line := regexp.MustCompile(`^  -([a-z0-9.-]+)(?: (\S+))?$`)
	for _, l := range strings.Split(string(out), "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			flags[m[1]] = m[2] == ""
		}
	}
	if len(flags) < 20 || !flags["cache.disabled"] || flags["catalog.backend"] {
		t.Fatalf("cannot read the flags from strom server -h:\n%s", out)
	}
	return flags
}

// loadStack loads localstack/compose.yaml the way `docker compose` does
// (variables from localstack/.env, not from the test's environment) and
// fails on schema errors, unknown keys, unset variables and warnings.
func loadStack(t *testing.T) *stack {
	t.Helper()
	dir, err := filepath.Abs(stackDir)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	hook := &logHook{add: func(e *logrus.Entry) { warnings = append(warnings, e.Message) }}
	std := logrus.StandardLogger()
	saved := std.ReplaceHooks(logrus.LevelHooks{})
	std.AddHook(hook)
	defer std.ReplaceHooks(saved)

	var unset []string
	opts, err := composecli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		composecli.WithWorkingDirectory(dir),
		composecli.WithEnvFiles(filepath.Join(dir, ".env")),
		composecli.WithDotEnv,
		composecli.WithLoadOptions(func(o *composeloader.Options) {
			if o.Interpolate == nil { // reading the files, not loading them
				return
			}
			lookup := o.Interpolate.LookupValue
			o.Interpolate.LookupValue = func(key string) (string, bool) {
				v, ok := lookup(key)
				if !ok {
					unset = append(unset, key)
				}
				return v, ok
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(unset) > 0 {
		t.Fatalf("compose.yaml uses variables that .env does not set: %v", unset)
	}
	if len(warnings) > 0 {
		t.Fatalf("compose-go warns about compose.yaml: %q", warnings)
	}

	s := &stack{project: project, strom: map[string][]stackFlag{}}
	known := stackServerFlags(t)
	for name, svc := range project.Services {
		argv := append(slices.Clone([]string(svc.Entrypoint)), svc.Command...)
		if len(argv) < 2 || argv[0] != "strom" || argv[1] != "server" {
			continue
		}
		var flags []stackFlag
		for i := 2; i < len(argv); i++ {
			arg := argv[i]
			n := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
			if n == arg || n == "" {
				t.Fatalf("service %s: %q is not a flag (strom server takes no arguments)", name, arg)
			}
			n, v, hasValue := strings.Cut(n, "=")
			isBool, ok := known[n]
			if !ok {
				t.Fatalf("service %s: strom server has no flag -%s", name, n)
			}
			switch {
			case isBool && !hasValue:
				v = "true"
			case isBool:
				if _, err := strconv.ParseBool(v); err != nil {
					t.Fatalf("service %s: -%s=%s is not a boolean", name, n, v)
				}
			case !hasValue:
				if i+1 >= len(argv) {
					t.Fatalf("service %s: -%s has no value", name, n)
				}
				i++
				v = argv[i]
			}
			flags = append(flags, stackFlag{n, v})
		}
		s.strom[name] = flags
	}
	if len(s.strom) == 0 {
		t.Fatal("compose.yaml runs no strom server")
	}

	trino, ok := project.Services["trino"]
	if !ok {
		t.Fatal("compose.yaml has no trino service")
	}
	for _, v := range trino.Volumes {
		if dir, file := filepath.Split(v.Target); dir == "/etc/trino/catalog/" && strings.HasSuffix(file, ".properties") {
			if s.trino != nil {
				t.Fatalf("trino mounts several catalogs; the test knows one")
			}
			s.trinoCatalog = strings.TrimSuffix(file, ".properties")
			s.trino = readProperties(t, v.Source, trino.Environment)
		}
	}
	if s.trino == nil {
		t.Fatal("trino mounts no catalog file under /etc/trino/catalog")
	}
	return s
}

type logHook struct{ add func(*logrus.Entry) }

func (h *logHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}
func (h *logHook) Fire(e *logrus.Entry) error { h.add(e); return nil }

// readProperties reads a Trino catalog file, replacing ${ENV:NAME} with
// the value env (the container's environment) gives NAME.
func readProperties(t *testing.T, path string, env compose.MappingWithEquals) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`\$\{ENV:([A-Za-z_][A-Za-z0-9_]*)\}`)
	props := map[string]string{}
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "!") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: not key=value: %q", path, i+1, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if _, dup := props[k]; dup {
			t.Fatalf("%s:%d: %s set twice", path, i+1, k)
		}
		props[k] = ref.ReplaceAllStringFunc(v, func(m string) string {
			name := ref.FindStringSubmatch(m)[1]
			val, ok := env[name]
			if !ok || val == nil || *val == "" {
				t.Fatalf("%s:%d: %s is not set in the trino service's environment", path, i+1, name)
			}
			return *val
		})
	}
	return props
}

// flag returns the last value of -name (the one `strom server` uses).
func (s *stack) flag(service, name string) (string, bool) {
	v, ok := "", false
	for _, f := range s.strom[service] {
		if f.name == name {
			v, ok = f.value, true
		}
	}
	return v, ok
}

// flagOr returns -name's value, or def (the flag's default) when unset.
func (s *stack) flagOr(service, name, def string) string {
	if v, ok := s.flag(service, name); ok {
		return v
	}
	return def
}

func (s *stack) roles(service string) []string {
	return strings.Split(s.flagOr(service, "roles", "all"), ",")
}

// stromServices returns the Strom services, sorted, those with role first
// ("" for all of them).
func (s *stack) stromServices(role string) []string {
	var out []string
	for name := range s.strom {
		r := s.roles(name)
		if role == "" || slices.Contains(r, role) || slices.Contains(r, "all") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// stackPort returns the port of a listen address like ":9123".
func stackPort(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

// TestLocalstackCompose checks how the dev stack's services fit together:
// dependencies, the Strom services' settings against the other services,
// and the Trino catalog against the Strom services.
func TestLocalstackCompose(t *testing.T) {
	s := loadStack(t)
	p := s.project
	svc := func(name string) compose.ServiceConfig {
		t.Helper()
		c, ok := p.Services[name]
		if !ok {
			t.Fatalf("compose.yaml has no service %s", name)
		}
		return c
	}
	env := func(c compose.ServiceConfig, key string) string {
		t.Helper()
		v, ok := c.Environment[key]
		if !ok || v == nil || *v == "" {
			t.Fatalf("service %s: %s is not set", c.Name, key)
		}
		return *v
	}

	// The roles: at least two write frontends, a read frontend, tiering.
	if w := s.stromServices("write"); len(w) < 2 {
		t.Errorf("write frontends: %v, want at least 2", w)
	}
	for _, role := range []string{"read", "tiering"} {
		if len(s.stromServices(role)) == 0 {
			t.Errorf("no Strom service has the %s role", role)
		}
	}

	// PostgreSQL and the bucket job, which every Strom service waits for.
	pg := svc("postgres")
	if !strings.HasPrefix(pg.Image, "postgres:15") {
		t.Errorf("postgres image %s, want postgres:15", pg.Image)
	}
	if pg.HealthCheck == nil || !slices.Contains(pg.HealthCheck.Test, "pg_isready") {
		t.Errorf("postgres: want a pg_isready health check, got %+v", pg.HealthCheck)
	}
	minio := svc("minio")
	minioUser, minioPassword := env(minio, "MINIO_ROOT_USER"), env(minio, "MINIO_ROOT_PASSWORD")
	if slices.Contains(minio.Command, "--address") {
		t.Errorf("minio: the test expects the S3 API on the default port 9000")
	}
	var bucketJob string
	for name, c := range p.Services {
		if strings.HasPrefix(c.Image, "minio/mc") {
			bucketJob = name
		}
	}
	if bucketJob == "" {
		t.Fatal("no service runs minio/mc to create the bucket")
	}
	job := svc(bucketJob)
	if job.Restart != "" && job.Restart != compose.RestartPolicyNo {
		t.Errorf("%s: restart %q; a one-shot job must not restart", bucketJob, job.Restart)
	}
	if d, ok := job.DependsOn["minio"]; !ok || d.Condition != compose.ServiceConditionHealthy {
		t.Errorf("%s must wait for minio to be healthy: %+v", bucketJob, job.DependsOn)
	}
	script := strings.Join(append(slices.Clone([]string(job.Entrypoint)), job.Command...), " ")

	for _, name := range s.stromServices("") {
		c := svc(name)
		flag := func(n string) string {
			v, ok := s.flag(name, n)
			if !ok {
				t.Fatalf("service %s: -%s is not set", name, n)
			}
			return v
		}
		if c.Build == nil || c.Build.Dockerfile == "" {
			t.Fatalf("service %s: no build section", name)
		}
		if _, err := os.Stat(filepath.Join(c.Build.Context, c.Build.Dockerfile)); err != nil {
			t.Errorf("service %s: Dockerfile: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(c.Build.Context, "go.work")); err != nil {
			t.Errorf("service %s: the build context %s is not the repository root", name, c.Build.Context)
		}
		// Dependencies.
		if d := c.DependsOn["postgres"]; d.Condition != compose.ServiceConditionHealthy {
			t.Errorf("service %s must wait for postgres to be healthy: %+v", name, c.DependsOn)
		}
		if d := c.DependsOn[bucketJob]; d.Condition != compose.ServiceConditionCompletedSuccessfully {
			t.Errorf("service %s must wait for %s to complete: %+v", name, bucketJob, c.DependsOn)
		}
		// The catalog is the postgres service.
		if b := flag("catalog.backend"); b != "postgres" {
			t.Errorf("service %s: -catalog.backend=%s, want postgres", name, b)
		}
		u, err := url.Parse(flag("catalog.postgres.url"))
		if err != nil {
			t.Fatalf("service %s: -catalog.postgres.url: %v", name, err)
		}
		pw, _ := u.User.Password()
		if u.Hostname() != "postgres" || u.Port() != "5432" || u.User.Username() != env(pg, "POSTGRES_USER") ||
			pw != env(pg, "POSTGRES_PASSWORD") || strings.TrimPrefix(u.Path, "/") != env(pg, "POSTGRES_DB") {
			t.Errorf("service %s: -catalog.postgres.url %s does not match the postgres service", name, u.Redacted())
		}
		// The object store is MinIO's bucket.
		if b := flag("objstore.backend"); b != "s3" {
			t.Errorf("service %s: -objstore.backend=%s, want s3", name, b)
		}
		if e := flag("objstore.s3.endpoint"); e != "http://minio:9000" {
			t.Errorf("service %s: -objstore.s3.endpoint=%s, want http://minio:9000", name, e)
		}
		if flag("objstore.s3.access-key-id") != minioUser || flag("objstore.s3.secret-access-key") != minioPassword {
			t.Errorf("service %s: the S3 keys are not MinIO's", name)
		}
		bucket := flag("objstore.s3.bucket")
		for _, want := range []string{
			fmt.Sprintf("mc alias set local %s %q %q", flag("objstore.s3.endpoint"), minioUser, minioPassword),
			"mc mb --ignore-existing local/" + bucket + "\n",
		} {
			if !strings.Contains(script, want) {
				t.Errorf("%s does not run %q; its script:\n%s", bucketJob, want, script)
			}
		}
		// Local state on the service's own volume.
		dataDir := flag("data-dir")
		mounted := false
		for _, v := range c.Volumes {
			mounted = mounted || (v.Type == compose.VolumeTypeVolume && v.Target == dataDir)
		}
		if !mounted {
			t.Errorf("service %s: -data-dir %s is not a volume", name, dataDir)
		}
		for _, other := range s.stromServices("") {
			if other != name && s.flagOr(other, "frontend.id", "") == flag("frontend.id") {
				t.Errorf("services %s and %s share -frontend.id", name, other)
			}
		}
		// Write frontends reach each other by service name.
		if slices.Contains(s.roles(name), "write") || slices.Contains(s.roles(name), "all") {
			internal := stackPort(t, s.flagOr(name, "server.internal-listen-address", ":9124"))
			if a := flag("frontend.advertise-address"); a != name+":"+internal {
				t.Errorf("service %s: -frontend.advertise-address=%s, want %s:%s", name, a, name, internal)
			}
		}
		// Health check and published ports on the API port.
		api := stackPort(t, s.flagOr(name, "server.http-listen-address", ":9123"))
		if c.HealthCheck == nil || !slices.Contains(c.HealthCheck.Test, "http://localhost:"+api+"/readyz") {
			t.Errorf("service %s: want a health check on http://localhost:%s/readyz, got %+v", name, api, c.HealthCheck)
		}
		for _, pc := range c.Ports {
			if strconv.Itoa(int(pc.Target)) != api {
				t.Errorf("service %s publishes port %d, not the API port %s", name, pc.Target, api)
			}
		}
	}

	// Trino reads the lake through a Strom service's REST catalog.
	trino := svc("trino")
	props := s.trino
	for k, want := range map[string]string{
		"connector.name":       "iceberg",
		"iceberg.catalog.type": "rest",
		"fs.native-s3.enabled": "true",
		"s3.path-style-access": "true",
	} {
		if props[k] != want {
			t.Errorf("%s.properties: %s=%q, want %q", s.trinoCatalog, k, props[k], want)
		}
	}
	known := []string{"connector.name", "iceberg.catalog.type", "iceberg.rest-catalog.uri", "fs.native-s3.enabled",
		"s3.endpoint", "s3.region", "s3.path-style-access", "s3.aws-access-key", "s3.aws-secret-key"}
	for k := range props {
		if !slices.Contains(known, k) {
			t.Errorf("%s.properties: %s is a property this test does not check", s.trinoCatalog, k)
		}
	}
	u, err := url.Parse(props["iceberg.rest-catalog.uri"])
	if err != nil {
		t.Fatal(err)
	}
	rest := u.Hostname()
	if _, ok := s.strom[rest]; !ok {
		t.Fatalf("iceberg.rest-catalog.uri %s: %s is not a Strom service", u, rest)
	}
	if api := stackPort(t, s.flagOr(rest, "server.http-listen-address", ":9123")); u.Scheme != "http" || u.Port() != api || u.Path != "/iceberg" {
		t.Errorf("iceberg.rest-catalog.uri %s, want http://%s:%s/iceberg", u, rest, api)
	}
	if s.flagOr(rest, "lake.rest.enabled", "true") != "true" {
		t.Errorf("service %s does not serve the REST catalog", rest)
	}
	if d := trino.DependsOn[rest]; d.Condition != compose.ServiceConditionHealthy {
		t.Errorf("trino must wait for %s to be healthy: %+v", rest, trino.DependsOn)
	}
	if s.trinoCatalog != s.flagOr(rest, "lake.catalog-name", "strom") {
		t.Errorf("Trino catalog %q, Strom's lake catalog %q: the walkthrough's queries name the latter", s.trinoCatalog, s.flagOr(rest, "lake.catalog-name", "strom"))
	}
	if props["s3.endpoint"] != s.flagOr(rest, "lake.rest.s3-endpoint", s.flagOr(rest, "objstore.s3.endpoint", "")) ||
		props["s3.region"] != s.flagOr(rest, "objstore.s3.region", "") ||
		props["s3.aws-access-key"] != minioUser || props["s3.aws-secret-key"] != minioPassword {
		t.Errorf("Trino's S3 settings differ from Strom's: %v", props)
	}

	checkDockerfile(t, svc(s.stromServices("")[0]).Build)
}

// checkDockerfile checks what a docker build needs from the repository:
// every go.work module's go.mod copied before `go mod download`, a main
// package at the path built, and a non-root user.
func checkDockerfile(t *testing.T, b *compose.BuildConfig) {
	raw, err := os.ReadFile(filepath.Join(b.Context, b.Dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	work, err := os.ReadFile(filepath.Join(b.Context, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	use := regexp.MustCompile(`(?m)^\s+\./(\S+)$`)
	for _, m := range use.FindAllStringSubmatch(string(work), -1) {
		if !strings.Contains(df, fmt.Sprintf("COPY %s/go.mod %s/go.sum %s/", m[1], m[1], m[1])) {
			t.Errorf("Dockerfile does not copy %s/go.mod: the workspace does not load without it", m[1])
		}
	}
	build := regexp.MustCompile(`go build .* -o (\S+) (\./\S+)`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("Dockerfile: no go build of the strom binary")
	}
	main, err := os.ReadFile(filepath.Join(b.Context, build[2], "main.go"))
	if err != nil || !bytes.Contains(main, []byte("\npackage main\n")) {
		t.Errorf("Dockerfile builds %s, which is not the main package: %v", build[2], err)
	}
	users := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || users[len(users)-1][1] == "root" || strings.HasPrefix(users[len(users)-1][1], "0") {
		t.Errorf("Dockerfile: the image must run as a non-root user, got %v", users)
	}
	if !strings.Contains(df, `ENTRYPOINT ["strom"]`) {
		t.Errorf(`Dockerfile: want ENTRYPOINT ["strom"] (compose and the chart pass "server" and flags)`)
	}
}

// startStack starts one strom process per Strom service with the service's
// flags, replacing only endpoints, credentials, addresses and directories.
func startStack(t *testing.T, s *stack) map[string]*process {
	pg := testenv.Postgres(t)
	s3 := testenv.S3(t)
	procs := map[string]*process{}
	// Write frontends first: they lead the buckets the others forward to.
	names := s.stromServices("write")
	for _, n := range s.stromServices("") {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, name := range names {
		dir := t.TempDir()
		internal := freeAddr(t)
		replace := map[string]string{
			"catalog.postgres.url":           pg,
			"objstore.s3.endpoint":           s3.Endpoint,
			"objstore.s3.region":             s3.Region,
			"objstore.s3.bucket":             s3.Bucket,
			"objstore.s3.prefix":             s3.Prefix,
			"objstore.s3.access-key-id":      s3.AccessKey,
			"objstore.s3.secret-access-key":  s3.SecretKey,
			"lake.rest.s3-endpoint":          s3.Endpoint,
			"data-dir":                       filepath.Join(dir, "data"),
			"wal.dir":                        filepath.Join(dir, "wal"),
			"cache.dir":                      filepath.Join(dir, "cache"),
			"server.http-listen-address":     "127.0.0.1:0",
			"server.internal-listen-address": internal,
			"frontend.advertise-address":     internal,
		}
		var args []string
		var replaced []string
		for _, f := range s.strom[name] {
			v := f.value
			if r, ok := replace[f.name]; ok {
				v = r
				replaced = append(replaced, f.name)
			}
			args = append(args, "-"+f.name+"="+v)
		}
		// The test's place in its S3 server, and the internal listener
		// the advertised address names.
		args = append(args, "-objstore.s3.prefix="+s3.Prefix, "-server.internal-listen-address="+internal)
		t.Logf("%s: strom server %s (replaced: %s)", name, strings.Join(redactFlags(s.strom[name]), " "), strings.Join(replaced, ", "))
		procs[name] = startServer(t, dir, args...)
	}
	return procs
}

func redactFlags(flags []stackFlag) []string {
	var out []string
	for _, f := range flags {
		v := f.value
		if strings.Contains(f.name, "secret") || strings.Contains(f.name, "postgres.url") {
			v = "…"
		}
		out = append(out, "-"+f.name+"="+v)
	}
	return out
}

// TestLocalstackWalkthrough runs the Strom services of the dev stack as
// local processes with the stack's settings, then localstack/README.md's
// walkthrough against them: the `strom` and `curl` commands as written
// (curl's host ports mapped to the services that publish them), Trino's
// queries as an Iceberg REST catalog read with iceberg-go.
func TestLocalstackWalkthrough(t *testing.T) {
	start := time.Now()
	s := loadStack(t)
	procs := startStack(t, s)
	t.Logf("%d Strom services ready in %v", len(procs), time.Since(start).Round(time.Millisecond))

	raw, err := os.ReadFile(filepath.Join(stackDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	w := &walkthrough{t: t, s: s, procs: procs, hostPorts: map[string]string{}, lakeRows: -1}
	for name, c := range s.project.Services {
		for _, p := range c.Ports {
			w.hostPorts[p.Published] = name
		}
	}
	cmds := readmeCommands(t, string(raw))
	for _, c := range cmds {
		w.run(c)
	}
	for _, step := range []string{"produce", "consume", "lake status", "trino", "union scan"} {
		if !w.done[step] {
			t.Errorf("the README walkthrough has no %s step", step)
		}
	}
	t.Logf("walkthrough: %d commands, %d rows; %v in all", len(cmds), len(w.produced), time.Since(start).Round(time.Millisecond))
}

// walkthrough runs README commands against the stack's processes.
type walkthrough struct {
	t         *testing.T
	s         *stack
	procs     map[string]*process
	hostPorts map[string]string // published host port -> service
	// cliService is the service `strom` (an alias) runs in.
	cliService string
	// produced holds every row appended so far, normalized; lakeRows how
	// many of them the lake held when the README last waited for it.
	produced []string
	lakeRows int
	// placed maps a row to the (bucket, offset) the stream gave it, as
	// strom consume printed it.
	placed map[string][2]int64
	done   map[string]bool
}

// shellCommand is one command of a README shell block: its pipeline's
// stages as words, and the comment lines right after it (the output the
// README shows).
type shellCommand struct {
	stages [][]string
	output []string
}

func (c shellCommand) String() string {
	var parts []string
	for _, st := range c.stages {
		parts = append(parts, strings.Join(st, " "))
	}
	return strings.Join(parts, " | ")
}

// readmeCommands splits the ```sh blocks of md into commands, the way sh
// does for what the README uses: words, '…' and "…" quotes (also across
// lines), backslash line continuations, pipes and comments.
func readmeCommands(t *testing.T, md string) []shellCommand {
	var cmds []shellCommand
	in := false
	var block strings.Builder
	for _, line := range strings.Split(md, "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```sh":
			in = true
			block.Reset()
		case in && strings.TrimSpace(line) == "```":
			in = false
			cmds = append(cmds, splitShell(t, block.String())...)
		case in:
			block.WriteString(line + "\n")
		}
	}
	if in {
		t.Fatal("README.md: unterminated ```sh block")
	}
	return cmds
}

func splitShell(t *testing.T, src string) []shellCommand {
	var (
		cmds   []shellCommand
		stages [][]string
		words  []string
		word   strings.Builder
		inWord bool
	)
	endWord := func() {
		if inWord {
			words = append(words, word.String())
		}
		word.Reset()
		inWord = false
	}
	endStage := func() {
		endWord()
		if len(words) > 0 {
			stages = append(stages, words)
		}
		words = nil
	}
	endCommand := func() {
		endStage()
		if len(stages) > 0 {
			cmds = append(cmds, shellCommand{stages: stages})
		}
		stages = nil
	}
	r := []rune(src)
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c == '\'':
			end := slices.Index(r[i+1:], '\'')
			if end < 0 {
				t.Fatalf("README.md: unterminated ' in %q", string(r[i:]))
			}
			word.WriteString(string(r[i+1 : i+1+end]))
			inWord = true
			i += end + 1
		case c == '"':
			inWord = true
			for i++; i < len(r) && r[i] != '"'; i++ {
				if r[i] == '\\' && i+1 < len(r) && strings.ContainsRune("\"\\$`", r[i+1]) {
					i++
				}
				word.WriteRune(r[i])
			}
			if i == len(r) {
				t.Fatal("README.md: unterminated \"")
			}
		case c == '\\' && i+1 < len(r) && r[i+1] == '\n':
			i++
		case c == '\\' && i+1 < len(r):
			i++
			word.WriteRune(r[i])
			inWord = true
		case c == '#' && !inWord:
			end := slices.Index(r[i:], '\n')
			if end < 0 {
				end = len(r) - i
			}
			comment := strings.TrimSpace(string(r[i+1 : i+end]))
			// A comment on a line of its own shows the previous command's output.
			if len(words) == 0 && len(stages) == 0 && len(cmds) > 0 {
				cmds[len(cmds)-1].output = append(cmds[len(cmds)-1].output, comment)
			}
			i += end - 1
		case c == '|':
			endStage()
		case c == '\n':
			endCommand()
		case c == ' ' || c == '\t':
			endWord()
		case c == ';' || c == '&' || c == '>' || c == '<' || c == '$' || c == '`':
			t.Fatalf("README.md: the walkthrough test does not run shell syntax %q: keep commands simple", c)
		default:
			word.WriteRune(c)
			inWord = true
		}
	}
	endCommand()
	return cmds
}

func (w *walkthrough) run(c shellCommand) {
	t := w.t
	t.Helper()
	if w.done == nil {
		w.done = map[string]bool{}
	}
	var stdin []byte
	stages := c.stages
	if len(stages) == 2 && len(stages[0]) >= 2 && stages[0][0] == "printf" && stages[0][1] == `%s\n` {
		stdin = []byte(strings.Join(stages[0][2:], "\n") + "\n")
		stages = stages[1:]
	}
	if len(stages) != 1 {
		t.Fatalf("README command %q: the test runs only `printf '%%s\\n' … | cmd` pipelines", c)
	}
	args := stages[0]
	switch {
	case args[0] == "cd":
	case args[0] == "alias":
		name, target, _ := strings.Cut(args[1], "=")
		f := strings.Fields(target)
		if name != "strom" || len(f) < 5 || strings.Join(f[:3], " ") != "docker compose exec" || f[len(f)-1] != "strom" {
			t.Fatalf("README: alias %q is not `strom='docker compose exec [-T] SERVICE strom'`", args[1])
		}
		w.cliService = f[len(f)-2]
	case args[0] == "strom":
		if w.cliService == "" {
			t.Fatalf("README runs %q before defining the strom alias", c)
		}
		w.strom(w.cliService, args[1:], stdin)
	case args[0] == "curl":
		w.curl(args[1:], stdin)
	case len(args) >= 3 && args[0] == "docker" && args[1] == "compose":
		w.compose(c, args[2:], stdin)
	default:
		t.Fatalf("README command %q: the test does not know how to run it", c)
	}
}

// compose runs the `docker compose` commands that can run here: exec of
// strom in a Strom service, and trino queries (as an Iceberg read).
func (w *walkthrough) compose(c shellCommand, args []string, stdin []byte) {
	t := w.t
	switch args[0] {
	case "up", "ps", "down", "logs", "stop", "start", "restart", "build":
		t.Logf("skipped (needs Docker): docker compose %s", strings.Join(args, " "))
		return
	case "exec":
	default:
		t.Fatalf("README command %q: unknown docker compose command", c)
	}
	args = args[1:]
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		args = args[1:]
	}
	if len(args) < 2 {
		t.Fatalf("README command %q: exec of what?", c)
	}
	service, cmd := args[0], args[1:]
	switch {
	case cmd[0] == "strom":
		if _, ok := w.procs[service]; !ok {
			t.Fatalf("README command %q: %s is not a Strom service", c, service)
		}
		w.strom(service, cmd[1:], stdin)
	case service == "trino" && cmd[0] == "trino" && len(cmd) == 3 && cmd[1] == "--execute":
		w.trino(cmd[2], c.output)
	default:
		t.Fatalf("README command %q: the test does not know how to run it", c)
	}
}

// strom runs the strom CLI as it runs in service's container (its default
// address is that service) and checks what it did.
func (w *walkthrough) strom(service string, args []string, stdin []byte) {
	t := w.t
	p, ok := w.procs[service]
	if !ok {
		t.Fatalf("strom %s: %s is not a Strom service", strings.Join(args, " "), service)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, stromBin, append([]string{"--addr", p.addr}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("strom %s (in %s): %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), service, err, out.String(), errOut.String())
	}
	t.Logf("strom %s (in %s):\n%s", strings.Join(args, " "), service, out.String())
	switch {
	case args[0] == "produce":
		sc := bufio.NewScanner(bytes.NewReader(stdin))
		for sc.Scan() {
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatalf("strom produce: input line %q: %v", sc.Text(), err)
			}
			w.produced = append(w.produced, stackRow(row))
		}
		w.done["produce"] = true
	case args[0] == "consume":
		var got []string
		w.placed = map[string][2]int64{}
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Fatalf("strom consume: output line %q: %v", sc.Text(), err)
			}
			got = append(got, stackRow(row))
			w.placed[stackRow(row)] = stackPlace(t, row)
		}
		sameStackRows(t, "strom consume", got, w.produced)
		w.done["consume"] = true
	case len(args) >= 2 && args[0] == "lake" && args[1] == "status":
		// The README says: run it until LAG RECORDS is 0.
		req := &stromv1.GetLakeStatusRequest{}
		if len(args) > 2 {
			req.Database, req.Table, _ = strings.Cut(args[2], ".")
		}
		w.waitLake(p, req)
		w.lakeRows = len(w.produced)
		w.done["lake status"] = true
	}
}

func (w *walkthrough) waitLake(p *process, req *stromv1.GetLakeStatusRequest) {
	t := w.t
	admin := stromv1connect.NewAdminServiceClient(http.DefaultClient, p.url())
	deadline := time.Now().Add(30 * time.Second)
	start := time.Now()
	for {
		resp, err := admin.GetLakeStatus(context.Background(), connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		lag := int64(0)
		for _, tb := range resp.Msg.GetTables() {
			lag += tb.GetLagRecords()
		}
		if len(resp.Msg.GetTables()) > 0 && lag == 0 {
			t.Logf("the lake caught up in %v", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lake did not catch up within 30s: %v", resp.Msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// curl sends the README's curl request to the service that publishes its
// host port.
func (w *walkthrough) curl(args []string, stdin []byte) {
	t := w.t
	var target, body string
	header := http.Header{}
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-s", "-S", "-sS", "-f", "-fsS":
		case "-H", "-d":
			if i+1 == len(args) {
				t.Fatalf("curl %s: %s without a value", strings.Join(args, " "), a)
			}
			i++
			if a == "-d" {
				body = args[i]
			} else {
				k, v, _ := strings.Cut(args[i], ":")
				header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		default:
			if strings.HasPrefix(a, "-") || target != "" {
				t.Fatalf("curl %s: the test does not know %q", strings.Join(args, " "), a)
			}
			target = a
		}
	}
	if len(stdin) > 0 {
		t.Fatalf("curl %s: stdin is not used", strings.Join(args, " "))
	}
	hostPort, path, _ := strings.Cut(target, "/")
	host, hp, err := net.SplitHostPort(hostPort)
	if err != nil || host != "localhost" {
		t.Fatalf("curl %s: want localhost:PORT/…", target)
	}
	service, ok := w.hostPorts[hp]
	if !ok {
		t.Fatalf("curl %s: no service publishes port %s", target, hp)
	}
	p, ok := w.procs[service]
	if !ok {
		t.Fatalf("curl %s: %s is not a Strom service", target, service)
	}
	method := http.MethodGet
	if body != "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, p.url()+"/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("curl %s (%s): %d %s", target, service, resp.StatusCode, respBody)
	}
	t.Logf("curl %s (%s): %s", target, service, respBody)

	switch path {
	case "strom.v1.WriteService/Append":
		var in struct {
			Rows []map[string]any `json:"rows"`
		}
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatalf("curl %s: body: %v", target, err)
		}
		for _, r := range in.Rows {
			w.produced = append(w.produced, stackRow(r))
		}
		w.done["produce"] = true
	case "strom.v1.ReadService/Scan":
		var in struct {
			Union bool `json:"union"`
		}
		var out struct {
			Rows []map[string]any `json:"rows"`
		}
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(respBody, &out); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range out.Rows {
			got = append(got, stackRow(r))
			w.checkPlace("union scan", stackRow(r), stackPlace(t, r))
		}
		sameStackRows(t, "union scan", got, w.produced)
		if in.Union {
			w.done["union scan"] = true
		}
	}
}

// trino runs what Trino does for sql: loads each table sql names from the
// REST catalog of the Strom service strom.properties names, with the
// catalog file's S3 settings (endpoint and keys replaced by the test's),
// and scans it. The table must hold exactly the rows produced before the
// README last waited for the lake; output lines the README shows are
// compared with the query evaluated on those rows (the shapes this knows).
func (w *walkthrough) trino(sql string, output []string) {
	t := w.t
	w.done["trino"] = true
	if w.lakeRows < 0 {
		t.Fatalf("README queries Trino before waiting for the lake (strom lake status)")
	}
	m := regexp.MustCompile(`(?i)^SELECT (.+) FROM (\w+)\.(\w+)\.(\w+)(.*)$`).FindStringSubmatch(sql)
	if m == nil {
		t.Fatalf("Trino query %q: want SELECT … FROM catalog.schema.table …", sql)
	}
	if m[2] != w.s.trinoCatalog {
		t.Fatalf("Trino query %q: catalog %s, the stack's is %s", sql, m[2], w.s.trinoCatalog)
	}
	u, err := url.Parse(w.s.trino["iceberg.rest-catalog.uri"])
	if err != nil {
		t.Fatal(err)
	}
	p, ok := w.procs[u.Hostname()]
	if !ok {
		t.Fatalf("iceberg.rest-catalog.uri %s: not a Strom service", u)
	}
	s3 := testenv.S3(t)
	ctx := context.Background()
	cat, err := icebergrest.NewCatalog(ctx, w.s.trinoCatalog, p.url()+u.Path, icebergrest.WithAdditionalProps(iceberg.Properties{
		iceio.S3EndpointURL:            s3.Endpoint,
		iceio.S3Region:                 w.s.trino["s3.region"],
		iceio.S3ForceVirtualAddressing: strconv.FormatBool(w.s.trino["s3.path-style-access"] != "true"),
		iceio.S3AccessKeyID:            s3.AccessKey,
		iceio.S3SecretAccessKey:        s3.SecretKey,
	}))
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := cat.LoadTable(ctx, table.Identifier{m[3], m[4]})
	if err != nil {
		t.Fatalf("Trino query %q: load %s.%s: %v", sql, m[3], m[4], err)
	}
	at, err := tbl.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	schema := at.Schema()
	for _, item := range strings.Split(m[1], ",") {
		item = strings.TrimSpace(regexp.MustCompile(`(?i)\s+AS\s+\w+$`).ReplaceAllString(strings.TrimSpace(item), ""))
		col := regexp.MustCompile(`^(?:\w+\()?(\w+)\)?$`).FindStringSubmatch(item)
		if col != nil && len(schema.FieldIndices(col[1])) == 0 {
			t.Errorf("Trino query %q: the Iceberg table has no column %s (it has %v)", sql, col[1], schema)
		}
	}
	rows, places := icebergRows(t, at)
	sameStackRows(t, "Iceberg table "+m[3]+"."+m[4], rows, w.produced[:w.lakeRows])
	for i, r := range rows {
		w.checkPlace("Iceberg table", r, places[i])
	}
	t.Logf("Trino query %q: the Iceberg table holds the %d rows", sql, len(rows))
	if len(output) > 0 {
		want := evalGroupBy(t, sql, rows)
		var got []string
		for _, line := range output {
			rec, err := csv.NewReader(strings.NewReader(line)).Read()
			if err != nil {
				t.Fatalf("README output %q of %q: %v", line, sql, err)
			}
			got = append(got, strings.Join(rec, ","))
		}
		if !slices.Equal(got, want) {
			t.Errorf("README shows %q for %q; the lake gives %q", got, sql, want)
		}
		t.Logf("the README's output of %q is the lake's", sql)
	}
}

// icebergRows returns the Iceberg rows (system columns left out) normalized,
// and each one's (__bucket, __offset).
func icebergRows(t *testing.T, at arrow.Table) ([]string, [][2]int64) {
	var rows []string
	var places [][2]int64
	tr := array.NewTableReader(at, 0)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		for i := range int(rec.NumRows()) {
			row := map[string]any{}
			var place [2]int64
			for c, f := range rec.Schema().Fields() {
				col := rec.Column(c)
				switch {
				case f.Name == "__bucket":
					place[0] = int64(col.(*array.Int32).Value(i))
				case f.Name == "__offset":
					place[1] = col.(*array.Int64).Value(i)
				case strings.HasPrefix(f.Name, "__"):
				case col.IsNull(i):
					row[f.Name] = nil
				default:
					switch a := col.(type) {
					case *array.Decimal128:
						row[f.Name] = a.Value(i).ToString(f.Type.(*arrow.Decimal128Type).Scale)
					default:
						row[f.Name] = a.ValueStr(i)
					}
				}
			}
			rows = append(rows, stackRow(row))
			places = append(places, place)
		}
	}
	if tr.Err() != nil {
		t.Fatal(tr.Err())
	}
	return rows, places
}

// stackPlace returns a stream row's _bucket and _offset.
func stackPlace(t *testing.T, row map[string]any) [2]int64 {
	var p [2]int64
	for i, k := range []string{"_bucket", "_offset"} {
		switch v := row[k].(type) {
		case float64:
			p[i] = int64(v)
		case string:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%s=%q in %v", k, v, row)
			}
			p[i] = n
		default:
			t.Fatalf("no %s in %v", k, row)
		}
	}
	return p
}

// checkPlace fails if row is at another (bucket, offset) than strom
// consume showed it.
func (w *walkthrough) checkPlace(what, row string, p [2]int64) {
	w.t.Helper()
	if want, ok := w.placed[row]; ok && want != p {
		w.t.Fatalf("%s: row %s at bucket %d offset %d; the stream has it at bucket %d offset %d", what, row, p[0], p[1], want[0], want[1])
	}
}

// stackRow renders a row's user columns (not _offset and the like) as
// sorted key=value text, numbers and strings alike, so that a row written
// as JSON compares with the same row read back from the stream or the lake.
func stackRow(row map[string]any) string {
	var kv []string
	for k, v := range row {
		if strings.HasPrefix(k, "_") {
			continue
		}
		s := "null"
		switch v := v.(type) {
		case nil:
		case float64:
			s = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			s = fmt.Sprint(v)
		}
		kv = append(kv, k+"="+s)
	}
	sort.Strings(kv)
	return strings.Join(kv, " ")
}

// sameStackRows fails unless got and want hold the same rows, each as often.
func sameStackRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(g, w) {
		t.Fatalf("%s: rows\n  %s\nwant\n  %s", what, strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
}

// evalGroupBy evaluates `SELECT g, count(*) [AS a], sum(c) [AS b] FROM …
// GROUP BY g ORDER BY g` on rows (normalized), as Trino prints it.
func evalGroupBy(t *testing.T, sql string, rows []string) []string {
	m := regexp.MustCompile(`(?i)^SELECT (\w+), count\(\*\)(?: AS \w+)?, sum\((\w+)\)(?: AS \w+)? FROM \S+ GROUP BY (\w+) ORDER BY (\w+)$`).FindStringSubmatch(sql)
	if m == nil || m[1] != m[3] || m[1] != m[4] {
		t.Fatalf("README shows output for %q, a query the test cannot evaluate: show none, or extend evalGroupBy", sql)
	}
	group, sumCol := m[1], m[2]
	type agg struct {
		n     int
		sum   *big.Rat
		scale int
	}
	groups := map[string]*agg{}
	for _, r := range rows {
		cols := map[string]string{}
		for _, kv := range strings.Split(r, " ") {
			k, v, _ := strings.Cut(kv, "=")
			cols[k] = v
		}
		a := groups[cols[group]]
		if a == nil {
			a = &agg{sum: new(big.Rat)}
			groups[cols[group]] = a
		}
		v, ok := new(big.Rat).SetString(cols[sumCol])
		if !ok {
			t.Fatalf("%s=%q is not a number", sumCol, cols[sumCol])
		}
		if _, frac, ok := strings.Cut(cols[sumCol], "."); ok {
			a.scale = max(a.scale, len(frac))
		}
		a.n++
		a.sum.Add(a.sum, v)
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		out = append(out, fmt.Sprintf("%s,%d,%s", k, groups[k].n, groups[k].sum.FloatString(groups[k].scale)))
	}
	return out
}
