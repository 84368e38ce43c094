package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if shared := os.Getenv(EnvS3Bucket); shared != "" {
		ep.Bucket = shared
		ep.Prefix = "strom-test-" + randomHex(8) + "/"
	} else {
		ep.Bucket = "strom-test-" + randomHex(8)
		in := &s3.CreateBucketInput{Bucket: aws.String(ep.Bucket)}
		if ep.Region != "us-east-1" {
			in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
				LocationConstraint: types.BucketLocationConstraint(ep.Region),
			}
		}
		if _, err := client.CreateBucket(ctx, in); err != nil {
			tb.Fatalf("testenv: S3: create bucket %s at %s: %v", ep.Bucket, ep.Endpoint, err)
		}
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
	bin, err := lookBinary("versitygw", CacheBinDir())
	if err != nil {
		return S3Endpoint{}, err
	}
	// A port can be taken between freePort and the server's bind; try again.
	for attempt := 1; ; attempt++ {
		ep, err := startVersitygw(bin)
		if err == nil {
			return ep, nil
		}
		if attempt == 3 {
			return S3Endpoint{}, fmt.Errorf("testenv: %w", err)
		}
	}
}

// startVersitygw starts versitygw over a new temporary directory and waits
// until it answers HTTP.
func startVersitygw(bin string) (S3Endpoint, error) {
	base, err := os.MkdirTemp("", "strom-versitygw-")
	if err != nil {
		return S3Endpoint{}, fmt.Errorf("versitygw: %w", err)
	}
	root := filepath.Join(base, "root") // every bucket is a directory in root
	logPath := filepath.Join(base, "versitygw.log")
	if err := os.Mkdir(root, 0o755); err != nil {
		os.RemoveAll(base)
		return S3Endpoint{}, fmt.Errorf("versitygw: %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(base)
		return S3Endpoint{}, fmt.Errorf("versitygw: %w", err)
	}
	defer logFile.Close()
	port, err := freePort()
	if err != nil {
		os.RemoveAll(base)
		return S3Endpoint{}, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin,
		"--port", addr,
		"--access", gwAccessKey,
		"--secret", gwSecretKey,
		"--region", gwRegion,
		"--quiet", "--keep-alive",
		"posix", root)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		os.RemoveAll(base)
		return S3Endpoint{}, fmt.Errorf("versitygw: start %s: %w", bin, err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
		os.RemoveAll(base)
	}

	ep := S3Endpoint{
		Endpoint:  "http://" + addr,
		Region:    gwRegion,
		AccessKey: gwAccessKey,
		SecretKey: gwSecretKey,
	}
	probe := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			stop()
			return S3Endpoint{}, fmt.Errorf("versitygw exited while starting (%v): %s", waitErr, bytes.TrimSpace(out))
		default:
		}
		// Any HTTP answer (an S3 AccessDenied) means it serves.
		if resp, err := probe.Get(ep.Endpoint + "/"); err == nil {
			resp.Body.Close()
			atExit(stop)
			return ep, nil
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			stop()
			return S3Endpoint{}, fmt.Errorf("versitygw did not answer on %s within 15s: %s", addr, bytes.TrimSpace(out))
		}
		time.Sleep(20 * time.Millisecond)
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
