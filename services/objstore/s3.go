package objstore

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Config configures the S3 [Bucket]. The zero value plus Bucket talks to
// AWS S3 with the default credential chain and region.
type S3Config struct {
	// Endpoint is the base URL of an S3-compatible server
	// ("http://127.0.0.1:7070", "https://minio.example.com"). Empty means
	// AWS S3, with the endpoint the SDK derives from the region.
	Endpoint string `yaml:"endpoint"`
	// Region is the signing region. Empty means the SDK's default chain
	// (AWS_REGION, the shared config file), then "us-east-1".
	Region string `yaml:"region"`
	// Bucket is the bucket name. Required. The bucket must exist.
	Bucket string `yaml:"bucket"`
	// Prefix, if set, is put before every key, followed by '/', so that
	// several deployments can share one bucket. It follows the key rules of
	// [ValidateKey]; one trailing '/' is allowed.
	Prefix string `yaml:"prefix"`
	// AccessKeyID and SecretAccessKey are static credentials. Leave both
	// empty to use the SDK's default chain (environment, shared files, IRSA
	// web identity, ECS and EC2 roles).
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	// ForcePathStyle selects path-style URLs (endpoint/bucket/key) over
	// virtual-hosted ones (bucket.endpoint/key). Unset (nil) means path
	// style when Endpoint is set (MinIO, versitygw) and virtual-hosted for
	// AWS.
	ForcePathStyle *bool `yaml:"force_path_style"`
	// MaxAttempts is how often the SDK tries a request (first try included)
	// before it gives up with ErrUnavailable. Zero means 3, the SDK default.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxIdleConnsPerHost is the size of the HTTP connection pool to the
	// endpoint. Zero means 100.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
}

// RegisterFlags registers the S3Config flags, each name prefixed with prefix
// (e.g. "objstore.s3."), with their defaults and help.
func (c *S3Config) RegisterFlags(prefix string, f *flag.FlagSet) {
	f.StringVar(&c.Endpoint, prefix+"endpoint", "", "S3 endpoint URL for S3-compatible servers, e.g. http://127.0.0.1:7070. Empty uses AWS S3.")
	f.StringVar(&c.Region, prefix+"region", "", "S3 region. Empty uses AWS_REGION or the shared AWS config, then us-east-1.")
	f.StringVar(&c.Bucket, prefix+"bucket", "", "S3 bucket name (required; the bucket must exist).")
	f.StringVar(&c.Prefix, prefix+"prefix", "", "Key prefix inside the bucket, e.g. strom/prod; objects are written under <prefix>/.")
	f.StringVar(&c.AccessKeyID, prefix+"access-key-id", "", "S3 access key ID. Empty (with an empty secret) uses the AWS default credential chain, e.g. IRSA.")
	f.StringVar(&c.SecretAccessKey, prefix+"secret-access-key", "", "S3 secret access key.")
	f.Var(optionalBool{&c.ForcePathStyle}, prefix+"force-path-style", "Use path-style URLs (endpoint/bucket/key). Unset: true when an endpoint is set, false for AWS.")
	f.IntVar(&c.MaxAttempts, prefix+"max-attempts", 3, "Attempts per S3 request, first included, before the store counts as unavailable.")
	f.IntVar(&c.MaxIdleConnsPerHost, prefix+"max-idle-conns-per-host", 100, "Idle HTTP connections kept to the S3 endpoint.")
}

// Validate reports the first invalid field, by its YAML name.
func (c *S3Config) Validate() error {
	if c.Bucket == "" {
		return errors.New("objstore: s3: bucket: must not be empty")
	}
	if strings.ContainsAny(c.Bucket, "/ ") {
		return fmt.Errorf("objstore: s3: bucket: %q is not a bucket name (no '/' or spaces; set prefix for a path inside the bucket)", c.Bucket)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("objstore: s3: endpoint: %q is not an http:// or https:// URL", c.Endpoint)
		}
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return errors.New("objstore: s3: access_key_id and secret_access_key: set both, or neither to use the default credential chain")
	}
	if p := strings.TrimSuffix(c.Prefix, "/"); p != "" {
		if err := ValidateKey(p); err != nil {
			return fmt.Errorf("objstore: s3: prefix: %w", err)
		}
	}
	if c.MaxAttempts < 0 {
		return fmt.Errorf("objstore: s3: max_attempts: %d is negative", c.MaxAttempts)
	}
	if c.MaxIdleConnsPerHost < 0 {
		return fmt.Errorf("objstore: s3: max_idle_conns_per_host: %d is negative", c.MaxIdleConnsPerHost)
	}
	return nil
}

// optionalBool is a flag.Value for a *bool that stays nil until set.
type optionalBool struct{ p **bool }

func (o optionalBool) String() string {
	if o.p == nil || *o.p == nil {
		return ""
	}
	return strconv.FormatBool(**o.p)
}

func (o optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*o.p = &v
	return nil
}

func (o optionalBool) IsBoolFlag() bool { return true }

// S3 is a [Bucket] in an S3 bucket, through aws-sdk-go-v2. It works with AWS
// S3 and with S3-compatible servers (MinIO, versitygw, SeaweedFS).
//
// Objects are written with one PutObject each (S3 makes it atomic) and
// listed with ListObjectsV2. Checksums are sent and validated only where S3
// requires them, for compatibility with servers that lack the newer
// flexible checksums. The SDK retries throttling, 5xx and network errors
// (MaxAttempts); what fails after that wraps ErrUnavailable.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in '/'
}

var _ Bucket = (*S3)(nil)

// NewS3 returns an S3 for cfg. It makes no request: a missing bucket or bad
// credentials show in the first operation.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	maxIdle := cfg.MaxIdleConnsPerHost
	if maxIdle == 0 {
		maxIdle = 100
	}
	// AWS_CA_BUNDLE makes the config loader customise the HTTP client's
	// transport, which it can only do on a BuildableClient.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns = max(tr.MaxIdleConns, maxIdle)
		tr.MaxIdleConnsPerHost = maxIdle
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.MaxAttempts > 0 {
		opts = append(opts, config.WithRetryMaxAttempts(cfg.MaxAttempts))
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("objstore: s3: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	pathStyle := cfg.Endpoint != ""
	if cfg.ForcePathStyle != nil {
		pathStyle = *cfg.ForcePathStyle
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = pathStyle
		// The SDK warns on every GET of an object without a checksum;
		// Strom verifies its own data (segment CRCs).
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	prefix := strings.TrimSuffix(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3{client: client, bucket: cfg.Bucket, prefix: prefix}, nil
}

// Client returns the underlying SDK client, for what the Bucket interface
// does not cover (bucket setup in tests and tools).
func (s *S3) Client() *s3.Client { return s.client }

// objectKey validates key and returns the full S3 key.
func (s *S3) objectKey(op, key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", fmt.Errorf("objstore: %s: %w", op, err)
	}
	full := s.prefix + key
	if len(full) > MaxKeyLen {
		return "", fmt.Errorf("objstore: %s: %w %q: %d bytes with prefix %q, the limit is %d",
			op, ErrInvalidKey, key, len(full), s.prefix, MaxKeyLen)
	}
	return full, nil
}

// fail wraps an SDK error for op on the full key k, classifying it.
func (s *S3) fail(op, k string, err error) error {
	where := fmt.Sprintf("objstore: %s s3://%s/%s", op, s.bucket, k)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", where, err)
	}
	var (
		apiErr  smithy.APIError
		respErr *smithyhttp.ResponseError
		sendErr *smithyhttp.RequestSendError
		noKey   *types.NoSuchKey
		nf      *types.NotFound
	)
	code, status := "", 0
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	switch {
	case errors.As(err, &noKey), errors.As(err, &nf), code == "NoSuchKey",
		status == http.StatusNotFound && code != "NoSuchBucket":
		return fmt.Errorf("%s: %w", where, ErrNotExist)
	case code == "InvalidRange", status == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%s: %w", where, ErrOutOfRange)
	case errors.As(err, &sendErr), status >= 500, status == http.StatusTooManyRequests,
		code == "SlowDown", code == "RequestTimeout":
		return fmt.Errorf("%s: %w: %w", where, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// Put implements [Bucket].
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := s.objectKey("put", key)
	if err != nil {
		return err
	}
	if size < 0 || size > MaxObjectSize {
		return fmt.Errorf("objstore: put %q: size %d not within [0, %d]", key, size, MaxObjectSize)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	body, err := seekableBody(ctx, r, size)
	if err != nil {
		return fmt.Errorf("objstore: put %q: %w", key, err)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(k),
		Body:          body,
		ContentLength: aws.Int64(size),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return s.fail("put", k, err)
	}
	return nil
}

// seekableBody returns a reader of exactly the next size bytes of r that the
// SDK can rewind (to hash the payload and to retry): a section of r if r can
// seek and read at offsets, else a copy in memory.
func seekableBody(ctx context.Context, r io.Reader, size int64) (io.ReadSeeker, error) {
	if ra, ok := r.(interface {
		io.ReaderAt
		io.Seeker
	}); ok {
		cur, err := ra.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		end, err := ra.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, err
		}
		if _, err := ra.Seek(cur, io.SeekStart); err != nil {
			return nil, err
		}
		if end-cur != size {
			return nil, fmt.Errorf("%w: reader holds %d bytes, want %d", ErrSizeMismatch, end-cur, size)
		}
		return io.NewSectionReader(ra, cur, size), nil
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if err := copyExact(buf, &ctxReader{ctx: ctx, r: r}, size); err != nil {
		return nil, err
	}
	return bytes.NewReader(buf.Bytes()), nil
}

// Get implements [Bucket].
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := s.objectKey("get", key)
	if err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(k),
	})
	if err != nil {
		return nil, s.fail("get", k, err)
	}
	return &s3Body{rc: out.Body, s: s, key: k}, nil
}

// GetRange implements [Bucket].
func (s *S3) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	k, err := s.objectKey("get", key)
	if err != nil {
		return nil, err
	}
	if off < 0 || length < 0 {
		return nil, fmt.Errorf("objstore: get %q range [%d, +%d): %w", key, off, length, ErrOutOfRange)
	}
	if length == 0 {
		// S3 has no empty range; check existence and bounds with a HEAD.
		size, err := s.Size(ctx, key)
		if err != nil {
			return nil, err
		}
		if off > size {
			return nil, fmt.Errorf("objstore: get %q range [%d, +0) of a %d-byte object: %w", key, off, size, ErrOutOfRange)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(k),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1)),
	})
	if err != nil {
		return nil, s.fail(fmt.Sprintf("get range [%d, +%d)", off, length), k, err)
	}
	// S3 shortens a range that runs past the end; the contract forbids it.
	start, total, ok := parseContentRange(aws.ToString(out.ContentRange))
	if got := aws.ToInt64(out.ContentLength); got != length || (ok && start != off) {
		out.Body.Close()
		return nil, fmt.Errorf("objstore: get s3://%s/%s range [%d, +%d) of a %d-byte object: %w",
			s.bucket, k, off, length, total, ErrOutOfRange)
	}
	return &s3Body{rc: out.Body, s: s, key: k}, nil
}

// parseContentRange parses "bytes start-end/total".
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, -1, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, -1, false
	}
	first, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, -1, false
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	total, err2 := strconv.ParseInt(tot, 10, 64)
	if err2 != nil {
		total = -1
	}
	return start, total, err1 == nil
}

// s3Body classifies errors that occur while reading a response body.
type s3Body struct {
	rc  io.ReadCloser
	s   *S3
	key string
}

func (b *s3Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("objstore: read s3://%s/%s: %w", b.s.bucket, b.key, err)
		} else {
			err = fmt.Errorf("objstore: read s3://%s/%s: %w: %w", b.s.bucket, b.key, ErrUnavailable, err)
		}
	}
	return n, err
}

func (b *s3Body) Close() error { return b.rc.Close() }

// Size implements [Bucket].
func (s *S3) Size(ctx context.Context, key string) (int64, error) {
	k, err := s.objectKey("size", key)
	if err != nil {
		return 0, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(k),
	})
	if err != nil {
		return 0, s.fail("size", k, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// List implements [Bucket]. Keys that break the key rules (written by other
// tools, such as "folder/" markers) are skipped.
func (s *S3) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("objstore: list %q: %w", prefix, err)
	}
	if !prefixMatchesSome(prefix) {
		return nil
	}
	full := s.prefix + prefix
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(full),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.fail("list", full, err)
		}
		for _, obj := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(obj.Key), s.prefix)
			if !ok || keyProblem(key) != "" {
				continue
			}
			if err := fn(key, aws.ToInt64(obj.Size)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements [Bucket].
func (s *S3) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey("delete", key)
	if err != nil {
		return err
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(k),
	})
	if err != nil {
		if err = s.fail("delete", k, err); !errors.Is(err, ErrNotExist) {
			return err
		}
	}
	return nil
}

// Close implements [Bucket]. The SDK client holds only pooled connections,
// which close when idle, so Close does nothing.
func (s *S3) Close() error { return nil }
