package modules

import (
	"strings"
	"testing"

	"github.com/zeroci/zeroci/transport"
)

func TestNames(t *testing.T) {
	names := Names()
	want := []string{"eventhub", "datastore", "blob", "logging", "buildscript", "jobs", "api"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("Names() = %v, want %v (start order)", names, want)
	}
	names[0] = "changed"
	if Names()[0] != "eventhub" {
		t.Error("Names returns shared state")
	}
	for _, n := range want {
		if !Known(n) {
			t.Errorf("Known(%q) = false", n)
		}
		if err := transport.ValidateName(HealthService(n), false); err != nil {
			t.Errorf("health service of %s: %v", n, err)
		}
	}
	for _, n := range []string{"", "all", "API", "event hub"} {
		if Known(n) {
			t.Errorf("Known(%q) = true", n)
		}
	}
	for _, n := range want {
		if got, want := Replicated(n), n == "jobs" || n == "api"; got != want {
			t.Errorf("Replicated(%s) = %v", n, got)
		}
	}
}

func TestServiceNames(t *testing.T) {
	if Service("blob", "put") != "blob.put" {
		t.Errorf("Service = %q", Service("blob", "put"))
	}
	if HealthService("blob") != "blob.health" {
		t.Errorf("HealthService = %q", HealthService("blob"))
	}
}
