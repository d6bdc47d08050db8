package store

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/pgtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// envHelper makes the test binary a helper process that opens (so
// migrates) the store named by its value, "driver\nDSN", and exits: the
// concurrent-open test runs it beside its own goroutines.
const envHelper = "ZEROCI_STORE_TEST_OPEN"

func TestMain(m *testing.M) {
	if spec := os.Getenv(envHelper); spec != "" {
		os.Exit(helperOpen(spec))
	}
	goleak.VerifyTestMain(m)
}

func helperOpen(spec string) int {
	driver, dsn, _ := strings.Cut(spec, "\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := Open(ctx, Options{Driver: driver, DSN: dsn})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := st.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestSQLite runs the suite on SQLite files.
func TestSQLite(t *testing.T) {
	runSuite(t, func(t testing.TB) Options {
		return Options{Driver: DriverSQLite, DSN: filepath.Join(t.TempDir(), "zeroci.db")}
	})
}

// TestPostgres runs the suite on PostgreSQL, a fresh schema per store.
func TestPostgres(t *testing.T) {
	pgtest.ServerDSN(t) // skips without a server
	runSuite(t, func(t testing.TB) Options {
		return Options{Driver: DriverPostgres, DSN: pgtest.Schema(t)}
	})
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Driver: "mysql", DSN: "x"}, `driver "mysql"`},
		{Options{DSN: "x"}, `driver ""`},
		{Options{Driver: DriverSQLite}, "path) is required"},
		{Options{Driver: DriverSQLite, DSN: "/tmp/a?b.db"}, "must not contain"},
		{Options{Driver: DriverSQLite, DSN: "file:/tmp/a.db"}, "not a URI"},
		{Options{Driver: DriverSQLite, DSN: ":memory:"}, "in-memory"},
		{Options{Driver: DriverPostgres}, "DSN is required"},
	}
	for _, tt := range tests {
		err := tt.o.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: Validate() = %v, want ErrInvalid with %q", tt.o, err, tt.want)
		}
		if _, err := Open(context.Background(), tt.o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: Open() = %v, want ErrInvalid", tt.o, err)
		}
		if _, err := Migrate(context.Background(), tt.o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: Migrate() = %v, want ErrInvalid", tt.o, err)
		}
	}
	for _, o := range []Options{
		{Driver: DriverSQLite, DSN: "/var/lib/zeroci/zeroci.db"},
		{Driver: DriverPostgres, DSN: "postgres://u@h/db?sslmode=disable"},
	} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: Validate() = %v", o, err)
		}
	}
}

func TestSQLiteUnwritable(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(context.Background(), Options{Driver: DriverSQLite, DSN: filepath.Join(dir, "missing", "zeroci.db")})
	if err == nil || !strings.HasPrefix(err.Error(), "store: ") {
		t.Fatalf("Open in a missing directory = %v, want a store: error", err)
	}
}

// fixture is a store under test with an event factory: events get the
// next Seq and a clock that advances one second per event, from a time
// with sub-microsecond digits (which the store truncates).
type fixture struct {
	t      testing.TB
	opts   Options
	st     *Store
	seq    int64
	now    time.Time
	skipMu sync.Mutex // OnSkip runs in whichever goroutine applies
	skips  []string   // "seq: reason" reported to OnSkip
}

// skipped returns what OnSkip reported so far.
func (f *fixture) skipped() []string {
	f.skipMu.Lock()
	defer f.skipMu.Unlock()
	return append([]string(nil), f.skips...)
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)

func newFixture(t testing.TB, open func(testing.TB) Options) *fixture {
	t.Helper()
	f := &fixture{t: t, now: t0}
	f.opts = open(t)
	f.opts.OnSkip = func(ev contracts.Event, reason string) {
		f.skipMu.Lock()
		f.skips = append(f.skips, fmt.Sprintf("%d: %s", ev.Seq, reason))
		f.skipMu.Unlock()
	}
	f.st = f.open()
	return f
}

// open opens another Store on the fixture's database.
func (f *fixture) open() *Store {
	f.t.Helper()
	st, err := Open(context.Background(), f.opts)
	if err != nil {
		f.t.Fatalf("Open: %v", err)
	}
	f.t.Cleanup(func() { st.Close() })
	return st
}

// ev returns the next event about subject.
func (f *fixture) ev(subject contracts.Subject, payload contracts.Message) contracts.Event {
	f.t.Helper()
	ev, err := contracts.NewEvent(subject, payload)
	if err != nil {
		f.t.Fatalf("NewEvent(%s): %v", payload.MessageType(), err)
	}
	f.seq++
	f.now = f.now.Add(time.Second)
	ev.Seq, ev.Time = f.seq, f.now
	return ev
}

// apply applies events, all of which must be new.
func (f *fixture) apply(events ...contracts.Event) {
	f.t.Helper()
	n, err := f.st.Apply(context.Background(), events)
	if err != nil {
		f.t.Fatalf("Apply: %v", err)
	}
	if n != len(events) {
		f.t.Fatalf("Apply applied %d of %d events", n, len(events))
	}
}

// do applies one event, which must not be skipped, and returns its time
// as stored.
func (f *fixture) do(subject contracts.Subject, payload contracts.Message) time.Time {
	f.t.Helper()
	before := len(f.skipped())
	ev := f.ev(subject, payload)
	f.apply(ev)
	if skips := f.skipped(); len(skips) != before {
		f.t.Fatalf("%s %+v was skipped: %s", ev.Type, subject, skips[before])
	}
	return ev.Time.Truncate(time.Microsecond)
}

// skip applies one event, which must be skipped for a reason containing
// why, changing nothing but the last applied Seq.
func (f *fixture) skip(subject contracts.Subject, payload contracts.Message, why string) {
	f.t.Helper()
	f.skipEvent(f.ev(subject, payload), why)
}

func (f *fixture) skipEvent(ev contracts.Event, why string) {
	f.t.Helper()
	before := f.dump()
	nskips := len(f.skipped())
	f.apply(ev)
	after := f.dump()
	if skips := f.skipped(); len(skips) != nskips+1 || !strings.Contains(skips[nskips], why) {
		f.t.Fatalf("%s %s/%d/%s: skips %q, want one more containing %q", ev.Type, ev.Repo, ev.Build, ev.Job, skips[nskips:], why)
	}
	if want := withLast(before, ev.Seq); after != want {
		f.t.Fatalf("skipped %s changed rows:\n%s", ev.Type, diff(want, after))
	}
}

// noop applies one event that must change nothing but the last applied
// Seq, and not be reported as skipped.
func (f *fixture) noop(subject contracts.Subject, payload contracts.Message) {
	f.t.Helper()
	before := f.dump()
	nskips := len(f.skipped())
	ev := f.ev(subject, payload)
	f.apply(ev)
	if skips := f.skipped(); len(skips) != nskips {
		f.t.Fatalf("%s reported as skipped: %s", ev.Type, skips[nskips])
	}
	if after, want := f.dump(), withLast(before, ev.Seq); after != want {
		f.t.Fatalf("%s changed rows:\n%s", ev.Type, diff(want, after))
	}
}

func (f *fixture) dump() string {
	f.t.Helper()
	d, err := f.st.Dump(context.Background())
	if err != nil {
		f.t.Fatalf("Dump: %v", err)
	}
	return d
}

// withLast returns dump with its last applied Seq replaced by seq.
func withLast(dump string, seq int64) string {
	_, rest, _ := strings.Cut(dump, "\n")
	return fmt.Sprintf("meta last_applied=%d\n%s", seq, rest)
}

// diff shows the lines only in want (-) and only in got (+).
func diff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

func (f *fixture) repo(name string) RepoRecord {
	f.t.Helper()
	r, err := f.st.GetRepo(context.Background(), name)
	if err != nil {
		f.t.Fatalf("GetRepo(%s): %v", name, err)
	}
	if err := r.Repo.Validate(); err != nil {
		f.t.Fatalf("GetRepo(%s) does not validate: %v", name, err)
	}
	return r
}

func (f *fixture) build(repo string, number int64) contracts.Build {
	f.t.Helper()
	b, err := f.st.GetBuild(context.Background(), repo, number)
	if err != nil {
		f.t.Fatalf("GetBuild(%s, %d): %v", repo, number, err)
	}
	if err := b.Validate(); err != nil {
		f.t.Fatalf("GetBuild(%s, %d) does not validate: %v", repo, number, err)
	}
	return b
}

func (f *fixture) job(repo string, number int64, id string) JobRecord {
	f.t.Helper()
	j, err := f.st.GetJob(context.Background(), repo, number, id)
	if err != nil {
		f.t.Fatalf("GetJob(%s, %d, %s): %v", repo, number, id, err)
	}
	return j
}

// sealed returns a well-formed Sealed value (the store never opens it).
func sealed(s string) contracts.Sealed {
	raw := make([]byte, 40)
	copy(raw, s)
	return contracts.Sealed(base64.StdEncoding.EncodeToString(raw))
}

// commit returns a full commit id.
func commit(c byte) string { return strings.Repeat(string(c), 40) }

func repoSubject(repo string) contracts.Subject { return contracts.Subject{Repo: repo} }
func buildSubject(repo string, n int64) contracts.Subject {
	return contracts.Subject{Repo: repo, Build: n}
}
func jobSubject(repo string, n int64, job string) contracts.Subject {
	return contracts.Subject{Repo: repo, Build: n, Job: job}
}

func exitCode(c int) *int { return &c }

func mustID(t testing.TB, s string) contracts.ID {
	t.Helper()
	id, err := contracts.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPostgresCollation checks that every name column PostgreSQL sorts or
// compares uses the "C" collation (byte order, as SQLite): the test
// server's default collation may be C already, which would hide a
// missing one from ListRepos and SecretNames.
func TestPostgresCollation(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Schema(t)
	st, err := Open(ctx, Options{Driver: DriverPostgres, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var cols []string
	if err := st.db.SelectContext(ctx, &cols, `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type = 'text' AND collation_name = 'C'
		ORDER BY 1`); err != nil {
		t.Fatal(err)
	}
	want := []string{"build_dedup.key", "build_dedup.repo", "builds.repo", "jobs.id", "jobs.repo", "repos.name", "secrets.name", "secrets.repo", "tokens.name"}
	if !slices.Equal(cols, want) {
		t.Fatalf("columns with collation C = %q, want %q", cols, want)
	}
}
