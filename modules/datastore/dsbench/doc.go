// Package dsbench holds the data store's benchmarks: build trigger
// commands per second (datastore.trigger_build over rpc.Call) from 1, 16
// and 64 concurrent clients, spread over 16 repositories and all on one,
// with the data store on SQLite and on PostgreSQL (skipped unless
// ZEROCI_TEST_POSTGRES_DSN is set) and the event hub on a file log, all on
// one in-process network.
//
// A trigger is checked against the repository, published to the hub
// (fsynced) and answered once the projection applied it, so it measures
// the whole command path. Commands on one repository are serialised (the
// next build number is decided under the repository's lock), so the
// one-repository case shows the latency of one command, and the spread
// case how far group commit and the projection's batches overlap them.
//
// Everything is in _test.go files; the benchmarks run only with -bench,
// and the package's test only checks that the fixture numbers builds
// correctly:
//
//	ZEROCI_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	    go test -run '^$' -bench . -benchtime 1s ./modules/datastore/dsbench/
package dsbench
