package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: any input gives a pipeline or Errors with lines, never a
// panic; a parsed pipeline's jobs all have valid specs and an order.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.*"))
		for _, file := range files {
			if filepath.Ext(file) == ".want" {
				continue
			}
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, filepath.Ext(file) == ".json")
		}
	}
	f.Add([]byte("---\n"), false)
	f.Add([]byte("a: &a {b: 1}\nc: {<<: [*a, *a]}\njobs: {x: {<<: *a, script: [y]}}\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		name := "p.yaml"
		if isJSON {
			name = "p.json"
		}
		p, err := Parse(name, data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v: want Errors", err, err)
			}
			for _, e := range errs {
				if e.Line < 1 || e.File != name || e.Msg == "" {
					t.Fatalf("bad error %+v", e)
				}
			}
			return
		}
		if len(p.Jobs) == 0 || len(p.Order()) != len(p.Jobs) {
			t.Fatalf("jobs %d, order %v", len(p.Jobs), p.Order())
		}
		for _, j := range p.Jobs {
			if _, ok := p.Spec(j.ID); !ok {
				t.Fatalf("no spec for %q", j.ID)
			}
		}
	})
}
