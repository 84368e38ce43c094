package changelog_test

import (
	"testing"

	"github.com/strom-io/strom/catalog/changelog"
)

// TestKinds pins the change types' texts: they are stored in every
// changelog record and in the lake, so they must never change.
func TestKinds(t *testing.T) {
	for k, text := range map[changelog.Kind]string{
		changelog.Insert: "+I", changelog.UpdateBefore: "-U", changelog.UpdateAfter: "+U", changelog.Delete: "-D",
	} {
		if k.String() != text {
			t.Errorf("%d.String() = %q, want %q", k, k.String(), text)
		}
		if got, err := changelog.Parse(text); err != nil || got != k {
			t.Errorf("Parse(%q) = %v, %v", text, got, err)
		}
	}
	if _, err := changelog.Parse("+X"); err == nil {
		t.Error("Parse(+X) succeeded")
	}
	if changelog.Column != "_change_type" {
		t.Errorf("Column = %q", changelog.Column)
	}
	if !changelog.Insert.Puts() || !changelog.UpdateAfter.Puts() || changelog.UpdateBefore.Puts() || changelog.Delete.Puts() {
		t.Error("Puts")
	}
}
