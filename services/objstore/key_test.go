package objstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/strom-io/strom/services/objstore"
	"github.com/strom-io/strom/services/objstore/objstoretest"
)

func TestValidateKey(t *testing.T) {
	valid := []string{
		"a",
		"a/b/c",
		"segments/0001/00000000000000000042.arrow",
		"kv/t1/b3/snap-7/000012.sst",
		"a.b",
		"a/b.",
		"a/b..c",
		"ünïcödé",
		"with space",
		strings.Repeat("k", objstore.MaxSegmentLen),
		strings.Repeat("k/", objstore.MaxKeyLen/2-1) + "kk",
	}
	for _, k := range valid {
		if err := objstore.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%.40q) = %v, want nil", k, err)
		}
	}
	for _, k := range objstoretest.InvalidKeys {
		err := objstore.ValidateKey(k)
		if !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("ValidateKey(%.40q) = %v, want ErrInvalidKey", k, err)
		}
	}
	if err := objstore.ValidateKey("a//b"); err == nil || !strings.Contains(err.Error(), `"a//b"`) {
		t.Errorf("ValidateKey(a//b) = %v, want the key quoted in the message", err)
	}
}
