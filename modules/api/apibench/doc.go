// Package apibench holds the api module's benchmarks of issue 6: how many
// build reads per second the HTTP API answers with 10,000 builds in the
// store and how long they take at a fixed 1,000 requests/s, and how fast
// 500 concurrent server-sent-event followers of one running job's log get
// each line. Each figure has a baseline measured in the same run: the same
// read, or the same follow, done directly over the transport.
//
// The engine is server.StartLocal (every module but the api, in this
// process, on an in-process network) with the api module started on the
// engine's client node and its Handler served by a net/http server on a
// loopback port, as internal/server mounts it. internal/server.Start is
// not used because a Server does not expose its transport, which the
// baselines and the fast setup (10,000 datastore.trigger_build requests)
// need.
//
// BenchmarkReads fills the store with 10,000 queued builds of one
// repository (the scheduler and the runner are left out, so they stay
// queued), then reads GET /api/v1/repos/{repo}/builds?limit=50 ("list")
// and GET /api/v1/repos/{repo}/builds/{n} ("show", n spread over the
// 10,000) with the admin token:
//
//   - closed-N: N clients each sending the next request when the last one
//     answered, for a few seconds: requests/s, beside the same reads as
//     datastore.list_builds / datastore.get_build requests (rpc.Call) on
//     the engine's node (ratio http/transport);
//   - open-1000: one request every millisecond for a few seconds, each on
//     its own goroutine, its latency measured from its scheduled send time
//     so that queueing counts (p50, p99, max), beside the same schedule of
//     transport requests. The target is p99 < 20 ms.
//
// Every answer is checked (status 200 and the build asked for; the list's
// 50 newest builds are decoded and checked once before each run).
//
// BenchmarkLogFollowers runs the whole engine (scheduler and an in-process
// runner) on a local git repository whose one job waits for a gate file,
// then prints 200 lines at about 100 lines/s, each line carrying its send
// time (`date +%s%N`). 500 HTTP clients follow the job's log with
// Accept: text/event-stream before the gate opens; each must get every
// line exactly once and in order (SSE ids 1, 2, 3... then `event: end`),
// or the benchmark fails. It reports line delivery p50/p99 (receive time
// minus the time in the line), beside a second build followed by 500
// direct modules/logclient.Follow followers.
//
// Everything is in _test.go files. The package's tests run both harnesses
// in a few seconds with small sizes, so they cannot rot; the benchmarks run
// only with -bench (about 3 minutes with -count 3):
//
//	go test -run '^$' -bench . -benchtime 1x -count 3 ./modules/api/apibench/
package apibench
