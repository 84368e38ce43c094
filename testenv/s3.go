package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Environment variables that point the harness at an existing S3 server.
const (
	// EnvS3Endpoint is the endpoint URL of an S3 server to use instead of
	// starting versitygw, e.g. http://127.0.0.1:9000 for MinIO.
	EnvS3Endpoint = "STROM_TEST_S3_ENDPOINT"
	// EnvS3AccessKey and EnvS3SecretKey are its credentials.
	EnvS3AccessKey = "STROM_TEST_S3_ACCESS_KEY"
	EnvS3SecretKey = "STROM_TEST_S3_SECRET_KEY"
	// EnvS3Region is its region; default us-east-1.
	EnvS3Region = "STROM_TEST_S3_REGION"
	// EnvS3Bucket, if set, names an existing bucket to share: each S3 call
	// then gets a unique prefix in it instead of a new bucket (for servers
	// where tests may not create buckets).
	EnvS3Bucket = "STROM_TEST_S3_BUCKET"
)

// S3Endpoint is a place in an S3 server that belongs to one caller of [S3]:
// the bucket Bucket, under the key prefix Prefix (empty, or ending in '/').
// The server is path-style addressed and speaks plain HTTP unless Endpoint
// says https.
type S3Endpoint struct {
	Endpoint  string // base URL, e.g. http://127.0.0.1:41234
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string
	Prefix    string
}

// Client returns an aws-sdk-go-v2 S3 client for the endpoint (path-style,
// checksums only where required), for tests that check objects directly.
func (e S3Endpoint) Client(tb testing.TB) *s3.Client {
	tb.Helper()
	c, err := newS3Client(e.Endpoint, e.Region, e.AccessKey, e.SecretKey)
	if err != nil {
		tb.Fatalf("testenv: S3 client: %v", err)
	}
	return c
}

// versitygw credentials; the server listens on loopback only.
const (
	gwAccessKey = "strom-test"
	gwSecretKey = "strom-test-secret"
	gwRegion    = "us-east-1"
)

var s3Server struct {
	once   sync.Once
	ep     S3Endpoint // Endpoint, Region and credentials
	client *s3.Client
	err    error
}

// S3 returns a fresh, empty place in an S3 server, isolated from every other
// call: a new bucket (or, with STROM_TEST_S3_BUCKET, a new prefix in that
// bucket). The server is the one at STROM_TEST_S3_ENDPOINT, or else a
// versitygw that S3 starts on first use, over a temporary directory, and
// that [Main] stops. A versitygw that cannot be found or started fails the
// test.
//
// When the test passes, its bucket (or prefix) is emptied and removed;
// when it fails, it is kept for inspection and its name logged.
func S3(tb testing.TB) S3Endpoint {
	tb.Helper()
	s3Server.once.Do(func() {
		s3Server.ep, s3Server.err = s3Start()
		if s3Server.err == nil {
			ep := s3Server.ep
			s3Server.client, s3Server.err = newS3Client(ep.Endpoint, ep.Region, ep.AccessKey, ep.SecretKey)
			if s3Server.err != nil {
				s3Server.err = fmt.Errorf("testenv: S3 client: %w", s3Server.err)
			}
		}
	})
	if s3Server.err != nil {
		tb.Fatalf("%v", s3Server.err)
	}
	ep, client := s3Server.ep, s3Server.client
	if shared := os.Getenv(EnvS3Bucket); shared != "" {
		ep.Bucket = shared
		ep.Prefix = "strom-test-" + randomHex(8) + "/"
	} else {
		ep.Bucket = createBucket(tb, client, ep)
	}
	tb.Cleanup(func() {
		where := "s3://" + ep.Bucket + "/" + ep.Prefix
		if tb.Failed() {
			tb.Logf("testenv: S3: kept %s at %s for inspection", where, ep.Endpoint)
			return
		}
		if err := s3Remove(client, ep); err != nil {
			tb.Logf("testenv: S3: remove %s: %v", where, err)
		}
	})
	return ep
}

// createBucket creates a bucket with a new random name at ep and returns
// the name.
func createBucket(tb testing.TB, client *s3.Client, ep S3Endpoint) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := "strom-test-" + randomHex(8)
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if ep.Region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(ep.Region),
		}
	}
	if _, err := client.CreateBucket(ctx, in); err != nil {
		tb.Fatalf("testenv: S3: create bucket %s at %s: %v", name, ep.Endpoint, err)
	}
	return name
}

// s3Remove deletes the objects under ep.Prefix and, without a prefix, the
// bucket.
func s3Remove(client *s3.Client, ep S3Endpoint) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{
		Bucket: aws.String(ep.Bucket),
		Prefix: aws.String(ep.Prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, obj := range page.Contents {
			if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{
				Bucket: aws.String(ep.Bucket),
				Key:    obj.Key,
			}); err != nil {
				return err
			}
		}
	}
	if ep.Prefix != "" {
		return nil
	}
	_, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(ep.Bucket)})
	return err
}

// s3Start returns the configured server, or starts versitygw.
func s3Start() (S3Endpoint, error) {
	if endpoint := os.Getenv(EnvS3Endpoint); endpoint != "" {
		region := os.Getenv(EnvS3Region)
		if region == "" {
			region = "us-east-1"
		}
		return S3Endpoint{
			Endpoint:  strings.TrimSuffix(endpoint, "/"),
			Region:    region,
			AccessKey: os.Getenv(EnvS3AccessKey),
			SecretKey: os.Getenv(EnvS3SecretKey),
		}, nil
	}
	srv, err := newS3Server()
	if err != nil {
		return S3Endpoint{}, fmt.Errorf("testenv: %w", err)
	}
	atExit(func() { srv.remove(true) })
	return srv.ep, nil
}

// S3Server is a versitygw of the caller's own, which it may stop and start
// again to test what happens while the object store is down.
type S3Server struct {
	bin     string
	base    string // temporary directory: root and the log
	root    string // every bucket is a directory in root
	logPath string
	addr    string // 127.0.0.1:port, kept across restarts
	ep      S3Endpoint
	client  *s3.Client

	mu      sync.Mutex
	cmd     *exec.Cmd // nil while stopped
	exited  chan struct{}
	waitErr error
}

// StartS3 starts a dedicated versitygw over a new temporary directory on a
// free 127.0.0.1 port; it is removed when tb's test ends (kept, and its
// directory logged, when the test failed). Unlike [S3], it never uses
// STROM_TEST_S3_ENDPOINT: a test that stops its server must own it.
func StartS3(tb testing.TB) *S3Server {
	tb.Helper()
	srv, err := newS3Server()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	if srv.client, err = newS3Client(srv.ep.Endpoint, srv.ep.Region, srv.ep.AccessKey, srv.ep.SecretKey); err != nil {
		srv.remove(true)
		tb.Fatalf("testenv: S3 client: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("testenv: S3: kept versitygw directory %s (log versitygw.log) for inspection", srv.base)
		}
		srv.remove(!tb.Failed())
	})
	return srv
}

// Endpoint returns a new, empty bucket on the server, which must be
// running. The bucket goes with the server's directory.
func (s *S3Server) Endpoint(tb testing.TB) S3Endpoint {
	tb.Helper()
	ep := s.ep
	ep.Bucket = createBucket(tb, s.client, ep)
	return ep
}

// Stop kills the server (SIGKILL), as a crash would; its directory, and so
// every object, is kept for [S3Server.Start].
func (s *S3Server) Stop(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		tb.Fatalf("testenv: stop versitygw on %s: not running", s.addr)
	}
	s.kill()
}

// Start starts a stopped server again on the same port and directory and
// waits until it answers.
func (s *S3Server) Start(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		tb.Fatalf("testenv: start versitygw on %s: already running", s.addr)
	}
	if err := s.start(); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
}

// newS3Server starts versitygw over a new temporary directory on a free
// port and waits until it answers HTTP.
func newS3Server() (*S3Server, error) {
	bin, err := lookBinary("versitygw", CacheBinDir())
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "strom-versitygw-")
	if err != nil {
		return nil, fmt.Errorf("versitygw: %w", err)
	}
	s := &S3Server{
		bin:     bin,
		base:    base,
		root:    filepath.Join(base, "root"),
		logPath: filepath.Join(base, "versitygw.log"),
	}
	if err := os.Mkdir(s.root, 0o755); err != nil {
		os.RemoveAll(base)
		return nil, fmt.Errorf("versitygw: %w", err)
	}
	// A port can be taken between freePort and the server's bind; try again.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(base)
			return nil, err
		}
		s.addr = fmt.Sprintf("127.0.0.1:%d", port)
		s.ep = S3Endpoint{
			Endpoint:  "http://" + s.addr,
			Region:    gwRegion,
			AccessKey: gwAccessKey,
			SecretKey: gwSecretKey,
		}
		if err = s.start(); err == nil {
			return s, nil
		}
		if attempt == 3 {
			os.RemoveAll(base)
			return nil, err
		}
	}
}

// start runs versitygw on s.addr over s.root and waits until it answers
// HTTP. The caller holds s.mu, or owns s alone.
func (s *S3Server) start() error {
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("versitygw: %w", err)
	}
	defer logFile.Close()
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	cmd := exec.Command(s.bin,
		"--port", s.addr,
		"--access", gwAccessKey,
		"--secret", gwSecretKey,
		"--region", gwRegion,
		"--quiet", "--keep-alive",
		"posix", s.root)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("versitygw: start %s: %w", s.bin, err)
	}
	s.cmd, s.exited, s.waitErr = cmd, make(chan struct{}), nil
	exited := s.exited
	go func() { s.waitErr = cmd.Wait(); close(exited) }()

	// This run's part of the log, for errors.
	runLog := func() []byte {
		out, _ := os.ReadFile(s.logPath)
		if int64(len(out)) >= logStart {
			out = out[logStart:]
		}
		return bytes.TrimSpace(out)
	}
	probe := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			err := s.waitErr
			s.cmd = nil
			return fmt.Errorf("versitygw exited while starting on %s (%v): %s", s.addr, err, runLog())
		default:
		}
		// Any HTTP answer (an S3 AccessDenied) means it serves.
		if resp, err := probe.Get(s.ep.Endpoint + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("versitygw did not answer on %s within 15s: %s", s.addr, runLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the running process, if any, and waits for it to exit. The
// caller holds s.mu, or owns s alone.
func (s *S3Server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// remove kills the server and, if removeDir, deletes its directory.
func (s *S3Server) remove(removeDir bool) {
	s.mu.Lock()
	s.kill()
	s.mu.Unlock()
	if removeDir {
		os.RemoveAll(s.base)
	}
}

func newS3Client(endpoint, region, accessKey, secretKey string) (*s3.Client, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(region),
		// AWS_CA_BUNDLE may be set; the SDK can only apply it to a
		// BuildableClient (a plain http.Client panics).
		config.WithHTTPClient(awshttp.NewBuildableClient()),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if accessKey != "" || secretKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(accessKey, secretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true
	}), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
