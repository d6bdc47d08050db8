package modules

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

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

type logHost struct{ log zerolog.Logger }

func (h logHost) Transport() transport.Transport { return nil }
func (h logHost) Logger() zerolog.Logger         { return h.log }
func (h logHost) DataDir() string                { return "" }

func TestPlaceholderSaysSo(t *testing.T) {
	var buf bytes.Buffer
	p := NewPlaceholder(Blob, 4)
	var _ Module = p
	if p.Name() != "blob" || p.Issue() != 4 {
		t.Fatalf("placeholder %s %d", p.Name(), p.Issue())
	}
	if err := p.Start(context.Background(), logHost{zerolog.New(&buf)}); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := `{"level":"warn","issue":4,"message":"blob is a placeholder until issue 4: it answers only its health check"}`
	if strings.TrimSpace(buf.String()) != want {
		t.Errorf("log %s, want %s", buf.String(), want)
	}
}
