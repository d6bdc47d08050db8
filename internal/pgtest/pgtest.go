// Package pgtest gives tests a PostgreSQL database of their own.
//
// The server is named by ZEROCI_TEST_POSTGRES_DSN (.ci/run sets it). When
// it is unset, tests that need PostgreSQL skip, except under CI=true, where
// they fail: CI must run them.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/lib/pq" // the PostgreSQL driver
)

// EnvDSN names the variable holding the test server's DSN.
const EnvDSN = "ZEROCI_TEST_POSTGRES_DSN"

// ServerDSN returns the test server's DSN, skipping t when there is none
// (failing it under CI=true).
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must run the PostgreSQL tests (.ci/run sets it)", EnvDSN)
		}
		t.Skipf("%s is not set; run through .ci/run or set it to run the PostgreSQL tests", EnvDSN)
	}
	return dsn
}

// Schema creates a fresh schema on the test server, drops it when t ends,
// and returns a DSN whose connections use it (search_path), so tests run
// in parallel without seeing each other's tables.
func Schema(t testing.TB) string {
	t.Helper()
	base := ServerDSN(t)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "zt_" + hex.EncodeToString(b[:])
	db, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		db.Close()
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", name, err)
		}
		db.Close()
	})
	return WithSearchPath(t, base, name)
}

// WithSearchPath returns dsn with search_path set to schema.
func WithSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL DSN: %v", EnvDSN, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
