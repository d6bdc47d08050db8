// Package bench holds the transport benchmarks: pub/sub throughput and
// request/reply latency of transport/inproc and transport/zmq (tcp://, ipc://
// and inproc:// endpoints), side by side with the baselines they are judged
// against (a bare Go channel, raw zmq4 PUB/SUB and DEALER/ROUTER sockets).
//
// Everything is in _test.go files, so the package costs nothing outside
// `go test`; the benchmarks run only with -bench, and the package's tests
// only check, in well under a second, that every fixture the benchmarks use
// delivers what it should. docs/BENCHMARKS.md has the command, the figures
// and how to read them:
//
//	go test -run '^$' -bench . -benchtime 1s -count 3 ./transport/bench/
package bench
