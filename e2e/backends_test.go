package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/strom-io/strom/testenv"
)

// backend is a catalog and object store for a test's server.
type backend struct {
	// embedded: the defaults, catalog and objects under the data directory.
	embedded bool
	// args are the server flags that choose it.
	args []string
	// segmentObjects counts the segment objects of a server started in dir.
	segmentObjects func(t *testing.T, dir string) int
}

// onBackends runs test twice, as subtests: "embedded", on the defaults (an
// embedded catalog and objects on the local disk, under ./data), and
// "postgres+s3", on a PostgreSQL database and an S3 bucket of its own from
// the test harness (testenv), as a deployment runs.
func onBackends(t *testing.T, test func(t *testing.T, be backend)) {
	t.Run("embedded", func(t *testing.T) {
		test(t, backend{embedded: true, segmentObjects: func(t *testing.T, dir string) int {
			n := 0
			_ = filepath.Walk(filepath.Join(dir, "data", "objects", "segments"), func(_ string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					n++
				}
				return nil
			})
			return n
		}})
	})
	t.Run("postgres+s3", func(t *testing.T) {
		ep := testenv.S3(t)
		client := ep.Client(t)
		args := append([]string{"-catalog.backend", "postgres", "-catalog.postgres.url", testenv.Postgres(t)}, s3Args(ep)...)
		test(t, backend{args: args, segmentObjects: func(t *testing.T, _ string) int {
			n := 0
			pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{
				Bucket: aws.String(ep.Bucket), Prefix: aws.String(ep.Prefix + "segments/"),
			})
			for pages.HasMorePages() {
				page, err := pages.NextPage(context.Background())
				if err != nil {
					t.Fatalf("list the segment objects: %v", err)
				}
				n += len(page.Contents)
			}
			return n
		}})
	})
}
