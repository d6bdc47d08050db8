package pathglob

import (
	"testing"
)

func TestParseCacheKey(t *testing.T) {
	parts, err := ParseCacheKey(`go-{{ checksum "go.sum" }}-{{checksum "web/**/package-lock.json"}}.v2`)
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyPart{{Literal: "go-"}, {Checksum: "go.sum"}, {Literal: "-"}, {Checksum: "web/**/package-lock.json"}, {Literal: ".v2"}}
	if len(parts) != len(want) {
		t.Fatalf("parts %+v, want %+v", parts, want)
	}
	for i := range want {
		if parts[i] != want[i] {
			t.Errorf("part %d: %+v, want %+v", i, parts[i], want[i])
		}
	}
	if parts, err := ParseCacheKey("static"); err != nil || len(parts) != 1 || parts[0].Literal != "static" {
		t.Errorf("literal key: %+v, %v", parts, err)
	}
	for _, bad := range []string{"", "a b", `{{ checksum "go.sum" `, "x}}", `{{ checksum go.sum }}`, `{{ checksum "../x" }}`,
		`{{ checksum "" }}`, `{{ env "HOME" }}`, `{{ }}`, `{{ checksum "a" "b" }}`, string(make([]byte, 300))} {
		if _, err := ParseCacheKey(bad); err == nil {
			t.Errorf("ParseCacheKey(%q) succeeded", bad)
		}
	}
}
