// Package hubbench holds the event hub's benchmarks, side by side with NATS
// JetStream as the reference: durable publish throughput (events/s
// acknowledged once stored) with 1, 16 and 64 concurrent publishers, and
// publish→deliver latency (p50, p99) of a steady stream to one follower.
//
// zeroci runs in-process (inproc transport, filelog), over loopback tcp
// (the hub on a zmq broker, publishers and the follower on other nodes,
// filelog), and over tcp with the PostgreSQL log (pglog; skipped unless
// ZEROCI_TEST_POSTGRES_DSN is set). JetStream runs against the server at
// ZEROCI_BENCH_NATS_URL (default nats://127.0.0.1:4222, skipped if
// unreachable), and against a private nats-server (ZEROCI_BENCH_NATS_SERVER,
// default /usr/sbin/nats-server, skipped if absent or too old) configured
// with `jetstream { sync_interval: always }`, so that it fsyncs every
// message as the hub does: JetStream's default acknowledges before its
// fsync, which comes every 2 minutes.
//
// Everything is in _test.go files, so the package costs nothing outside
// `go test`. The benchmarks run only with -bench; the package's tests only
// check, in a few seconds, that every fixture stores and delivers what it
// should:
//
//	ZEROCI_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	    go test -run '^$' -bench . -benchtime 1s ./modules/eventhub/hubbench/
package hubbench
