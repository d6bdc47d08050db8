// Package schedbench holds the pipeline benchmarks of issue 5: how long a
// triggered build takes to get its job running, and how many builds per
// minute the scheduler (modules/buildscript) and its runners (modules/jobs)
// finish, measured on the real engine (real git, real processes, real
// modules) with a baseline measured in the same run.
//
// BenchmarkTriggerToRunning triggers a one-job `echo` pipeline of a local
// git repository, one build at a time, and measures from the trigger until
// the build's job.started event reaches a hubclient.Follow subscriber
// (p50/p99 in ms), waiting for each build to finish before the next. Its
// baseline is the datastore.trigger_build request alone (the event
// appended and applied), timed in the same samples:
//
//   - inproc: every module but the api in this process
//     (internal/server.StartLocal), as `zeroci run` runs them;
//   - split-tcp: event hub, data store, blob, logging and the scheduler on
//     a ZeroMQ node bound to a loopback tcp port in this process, and the
//     runner (the jobs module) in a separate process (this test binary run
//     again with ZCI_SCHEDBENCH_ROLE=runner) linked to it over tcp.
//
// BenchmarkBuildsPerMinute queues 200 builds of a three-job pipeline (a;
// b and c after a) before any runner exists, then starts 1, 2 or 4
// in-process runners of capacity 2 and measures until every build is
// final. It fails if a build does not succeed or a job does not start
// exactly once (600 job.started events, all attempt 1). Its baseline runs
// the same 600 scripts directly with the shell executor
// (modules/jobs/executor) at the same total concurrency, each in a fresh
// workspace directory, and the ratio is zeroci's jobs/s over the
// executor's; both report their CPU time per job (getrusage of the process
// and its children). A last case spreads the 200 builds over 8
// repositories, since the data store serialises one repository's commands.
//
// Everything is in _test.go files. The package's tests run the harness
// end to end with a few builds (in process and split), so it cannot rot;
// the benchmarks run only with -bench (about 2 minutes):
//
//	go test -run '^$' -bench . -benchtime 1x -count 3 ./modules/buildscript/schedbench/
package schedbench
