package store

import (
	"io/fs"
	"slices"
	"testing"
)

// TestMigrationsMatch checks that both dialects have the same migration
// versions.
func TestMigrationsMatch(t *testing.T) {
	names := func(dir string) []string {
		entries, err := fs.ReadDir(migrations, "migrations/"+dir)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, e := range entries {
			s = append(s, e.Name())
		}
		return s
	}
	sqlite, postgres := names("sqlite"), names("postgres")
	if len(sqlite) == 0 || !slices.Equal(sqlite, postgres) {
		t.Fatalf("migrations differ: sqlite %q, postgres %q", sqlite, postgres)
	}
}
