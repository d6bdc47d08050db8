package transporttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

func requestTests() []test {
	return []test{
		{name: "Request/Correlation", run: testCorrelation},
		{name: "Request/DataIsCopied", run: testRequestCopies},
		{name: "Request/Deadline", run: testDeadline},
		{name: "Request/CallerCancel", run: testCallerCancel},
		{name: "Request/NoResponder", run: testNoResponder},
		{name: "Request/HandlerFailure", run: testHandlerFailure},
		{name: "Request/TooLarge", run: testTooLarge},
		{name: "Request/InvalidNames", run: testInvalidNames},
		{name: "Request/ConcurrencyLimit", run: testConcurrencyLimit},
		{name: "Request/LoadBalancing", run: testLoadBalancing},
		{name: "Request/PrefersLeastBusy", run: testLeastBusy},
		{name: "Request/ReplicaLost", run: testReplicaLost},
	}
}

// testCorrelation: 1000 concurrent requests from three nodes, each reply
// goes to its own caller, each request is handled once.
func testCorrelation(t *testing.T, _ Features, c Cluster) {
	const total = 1000
	hub := c.Hub(t)
	callers := []transport.Transport{hub, c.Node(t), c.Node(t)}
	var mu sync.Mutex
	handled := make(map[string]int, total)
	mustServe(t, hub, "corr", func(_ context.Context, req []byte) ([]byte, error) {
		mu.Lock()
		handled[string(req)]++
		mu.Unlock()
		return append([]byte("re:"), req...), nil
	}, transport.WithConcurrency(256))
	awaitService(t, callers[1], "corr", []byte("warm-up"))
	mu.Lock()
	clear(handled)
	mu.Unlock()
	before := make([]uint64, len(callers))
	for i, n := range callers {
		before[i] = n.Stats().Requests
	}
	servedBefore := hub.Stats().Served

	start := make(chan struct{})
	errs := make(chan error, total)
	var wg sync.WaitGroup
	for i := 0; i < total; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := []byte(fmt.Sprintf("req-%d-%d", i%len(callers), i))
			<-start
			reply, err := request(callers[i%len(callers)], 3*waitTimeout, "corr", payload)
			if err != nil {
				errs <- fmt.Errorf("request %d: %s", i, describe(err))
				return
			}
			if want := "re:" + string(payload); string(reply) != want {
				errs <- fmt.Errorf("request %d: got reply %q, want %q: replies crossed", i, reply, want)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... and %d more failures", n-10)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != total {
		t.Errorf("handler saw %d distinct requests, want %d", len(handled), total)
	}
	for req, k := range handled {
		if k != 1 {
			t.Errorf("request %q handled %d times, want once", req, k)
		}
	}
	for i, nd := range callers {
		want := uint64(total / len(callers))
		if i < total%len(callers) {
			want++
		}
		if got := nd.Stats().Requests - before[i]; got != want {
			t.Errorf("caller node %d: Stats().Requests grew by %d, want %d", i, got, want)
		}
	}
	if got := hub.Stats().Served - servedBefore; got != total {
		t.Errorf("hub: Stats().Served grew by %d, want %d", got, total)
	}
}

// testRequestCopies: the caller may reuse its request buffer once Request
// returns, a handler may scribble on its request and reuse its reply buffer
// once it returned.
func testRequestCopies(t *testing.T, _ Features, c Cluster) {
	server := c.Node(t)
	caller := c.Node(t)
	var reuse []byte // the handler's reply buffer, reused across calls (Concurrency 1)
	mustServe(t, server, "copy", func(_ context.Context, req []byte) ([]byte, error) {
		reuse = append(reuse[:0], req...)
		for i := range req {
			req[i] = '!' // the caller's buffer must not change
		}
		return reuse, nil
	}, transport.WithConcurrency(1))
	awaitService(t, caller, "copy", []byte("warm-up"))
	buf := []byte("alpha")
	r1, err := request(caller, waitTimeout, "copy", buf)
	if err != nil {
		t.Fatalf("first request: %s", describe(err))
	}
	if string(buf) != "alpha" {
		t.Fatalf("caller's request buffer became %q: the handler wrote to it", buf)
	}
	copy(buf, "bravo")
	r2, err := request(caller, waitTimeout, "copy", buf)
	if err != nil {
		t.Fatalf("second request: %s", describe(err))
	}
	if string(r1) != "alpha" || string(r2) != "bravo" {
		t.Fatalf("replies %q, %q; want %q, %q: the handler's reply buffer was not copied", r1, r2, "alpha", "bravo")
	}
}

// testDeadline: a handler slower than the caller's deadline makes Request
// return ErrDeadlineExceeded (and context.DeadlineExceeded) on time; the
// handler's ctx carries the caller's deadline and ends with it.
func testDeadline(t *testing.T, _ Features, c Cluster) {
	const timeout = 300 * time.Millisecond
	tolerance := time.Second
	if raceEnabled {
		tolerance = 2 * time.Second
	}
	hub := c.Hub(t)
	caller := c.Node(t)
	type seen struct {
		deadline time.Time
		has      bool
		ended    time.Time
	}
	started := make(chan struct{}, 1)
	handlerSaw := make(chan seen, 1)
	mustServe(t, hub, "slow", func(ctx context.Context, req []byte) ([]byte, error) {
		if string(req) == "ping" {
			return req, nil
		}
		dl, ok := ctx.Deadline()
		started <- struct{}{}
		select {
		case <-ctx.Done():
		case <-time.After(3 * waitTimeout):
		}
		handlerSaw <- seen{deadline: dl, has: ok, ended: time.Now()}
		return []byte("too late"), nil
	})
	awaitService(t, caller, "slow", []byte("ping"))

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	callerDL, _ := ctx.Deadline()
	t0 := time.Now()
	_, err := caller.Request(ctx, "slow", []byte("work"))
	elapsed := time.Since(t0)
	if !errors.Is(err, transport.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request past its deadline: got %s, want ErrDeadlineExceeded matching context.DeadlineExceeded too", describe(err))
	}
	if elapsed < timeout-20*time.Millisecond {
		t.Errorf("Request returned after %v, before its %v deadline", elapsed, timeout)
	}
	if elapsed > timeout+tolerance {
		t.Errorf("Request returned %v after a %v deadline (tolerance %v)", elapsed, timeout, tolerance)
	}
	select {
	case <-started:
	default:
		t.Fatalf("the handler never started")
	}
	select {
	case s := <-handlerSaw:
		if !s.has {
			t.Fatalf("the handler's ctx has no deadline; it must carry the caller's")
		}
		if d := s.deadline.Sub(callerDL); d < -500*time.Millisecond || d > 500*time.Millisecond {
			t.Errorf("the handler's deadline is %v off the caller's", d)
		}
		if late := s.ended.Sub(callerDL); late > tolerance {
			t.Errorf("the handler's ctx ended %v after the caller's deadline (tolerance %v)", late, tolerance)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("the handler's ctx did not end within %v of the caller's deadline", waitTimeout)
	}
}

// testCallerCancel: cancelling the caller's ctx ends Request with
// context.Canceled, not a deadline error.
func testCallerCancel(t *testing.T, _ Features, c Cluster) {
	hub := c.Hub(t)
	// The replica on the hub, then on a node of its own: different paths
	// in a brokered transport.
	t.Run("replica on hub", func(t *testing.T) { callerCancel(t, hub, c.Node(t), "block-hub") })
	t.Run("replica on node", func(t *testing.T) { callerCancel(t, c.Node(t), c.Node(t), "block-node") })
}

func callerCancel(t *testing.T, server, caller transport.Transport, svc string) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	mustServe(t, server, svc, func(ctx context.Context, req []byte) ([]byte, error) {
		if string(req) == "ping" {
			return req, nil
		}
		started <- struct{}{}
		select {
		case <-ctx.Done():
		case <-time.After(3 * waitTimeout):
		}
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	awaitService(t, caller, svc, []byte("ping"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := caller.Request(ctx, svc, []byte("work"))
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("the handler never started")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || errors.Is(err, transport.ErrDeadlineExceeded) {
			t.Fatalf("Request after cancel: %s, want context.Canceled", describe(err))
		}
	case <-time.After(waitTimeout):
		t.Fatal("Request still blocked after its ctx was cancelled")
	}
	// The cancel reaches the handler, wherever it runs: a request with no
	// deadline must not hold its replica after its caller is gone.
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the handler's ctx ended with %v, want context.Canceled", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the handler's ctx was not cancelled after its caller cancelled")
	}
}

// testNoResponder: with no replica, Request fails with ErrNoResponder at
// once, not at its deadline; also after the only replica closed.
func testNoResponder(t *testing.T, _ Features, c Cluster) {
	caller := c.Node(t)
	const quick = 2 * time.Second
	t0 := time.Now()
	_, err := request(caller, 3*waitTimeout, "nobody", []byte("x"))
	if !errors.Is(err, transport.ErrNoResponder) {
		t.Fatalf("Request to a service nobody serves: %s, want ErrNoResponder", describe(err))
	}
	if d := time.Since(t0); d > quick {
		t.Errorf("ErrNoResponder took %v, want under %v (not the ctx deadline)", d, quick)
	}

	server := c.Node(t)
	for _, how := range []string{"service closed", "node closed"} {
		svc := mustServe(t, server, "brief", echo)
		awaitService(t, caller, "brief", []byte("x"))
		if how == "service closed" {
			svc.Close()
		} else {
			server.Close()
		}
		var last error
		eventually(t, waitTimeout, func() bool {
			t0 := time.Now()
			_, last = request(caller, 3*waitTimeout, "brief", []byte("x"))
			return errors.Is(last, transport.ErrNoResponder) && time.Since(t0) < quick
		}, "%s: Request never failed quickly with ErrNoResponder; last: %s", how, describe(last))
	}
}

// testHandlerFailure: a handler's error or panic reaches the caller as a
// *RemoteError (ErrResponderFailed) with its message; the node survives.
func testHandlerFailure(t *testing.T, _ Features, c Cluster) {
	server := c.Node(t)
	caller := c.Node(t)
	mustServe(t, server, "fail", func(_ context.Context, req []byte) ([]byte, error) {
		switch string(req) {
		case "error":
			return nil, errors.New("boom: disk 42 on fire")
		case "panic":
			panic("kaboom 7")
		}
		return req, nil
	})
	awaitService(t, caller, "fail", []byte("ok"))
	cases := []struct{ req, want string }{
		{"error", "boom: disk 42 on fire"},
		{"panic", "kaboom 7"},
	}
	for _, tc := range cases {
		_, err := request(caller, waitTimeout, "fail", []byte(tc.req))
		if !errors.Is(err, transport.ErrResponderFailed) {
			t.Errorf("%s: got %s, want ErrResponderFailed", tc.req, describe(err))
			continue
		}
		var re *transport.RemoteError
		if !errors.As(err, &re) {
			t.Errorf("%s: %s is not a *transport.RemoteError", tc.req, describe(err))
			continue
		}
		if re.Service != "fail" || !strings.Contains(re.Message, tc.want) {
			t.Errorf("%s: RemoteError{Service: %q, Message: %q}, want service %q and a message containing %q", tc.req, re.Service, re.Message, "fail", tc.want)
		}
	}
	if reply, err := request(caller, waitTimeout, "fail", []byte("ok")); err != nil || string(reply) != "ok" {
		t.Fatalf("after a handler panic, a normal request got %q, %s", reply, describe(err))
	}
}

// testTooLarge: payloads over MaxPayload are refused with ErrTooLarge;
// exactly MaxPayload goes through.
func testTooLarge(t *testing.T, _ Features, c Cluster) {
	server := c.Node(t)
	caller := c.Node(t)
	mustServe(t, server, "size", func(_ context.Context, req []byte) ([]byte, error) {
		if string(req) == "big reply" {
			return make([]byte, transport.MaxPayload+1), nil
		}
		return []byte(fmt.Sprint(len(req))), nil
	})
	awaitService(t, caller, "size", []byte("x"))
	sub := mustSubscribe(t, server, "big.", transport.WithQueueSize(4))

	over := make([]byte, transport.MaxPayload+1)
	if err := caller.Publish(ctxFor(t, waitTimeout), "big.x", over); !errors.Is(err, transport.ErrTooLarge) {
		t.Errorf("Publish of MaxPayload+1 bytes: %s, want ErrTooLarge", describe(err))
	}
	if _, err := request(caller, waitTimeout, "size", over); !errors.Is(err, transport.ErrTooLarge) {
		t.Errorf("Request of MaxPayload+1 bytes: %s, want ErrTooLarge", describe(err))
	}
	if _, err := request(caller, waitTimeout, "size", []byte("big reply")); err == nil ||
		!(errors.Is(err, transport.ErrTooLarge) || errors.Is(err, transport.ErrResponderFailed)) {
		t.Errorf("handler replying MaxPayload+1 bytes: caller got %s, want ErrResponderFailed or ErrTooLarge", describe(err))
	}

	max := over[:transport.MaxPayload]
	max[0], max[len(max)-1] = 1, 2
	if reply, err := request(caller, 2*waitTimeout, "size", max); err != nil || string(reply) != fmt.Sprint(transport.MaxPayload) {
		t.Errorf("Request of exactly MaxPayload bytes: reply %q, %s", reply, describe(err))
	}
	if err := caller.Publish(ctxFor(t, waitTimeout), "big.x", max); err != nil {
		t.Fatalf("Publish of exactly MaxPayload bytes: %s", describe(err))
	}
	m, err := recv(sub, 2*waitTimeout)
	if err != nil {
		t.Fatalf("receiving a MaxPayload message: %s", describe(err))
	}
	if len(m.Data) != transport.MaxPayload || m.Data[0] != 1 || m.Data[len(m.Data)-1] != 2 {
		t.Fatalf("MaxPayload message arrived with %d bytes or altered", len(m.Data))
	}
}

// testInvalidNames: every operation refuses empty (except a prefix), too
// long and NUL-containing names with ErrInvalidName; MaxNameLen works.
func testInvalidNames(t *testing.T, _ Features, c Cluster) {
	tr := c.Node(t)
	ops := []struct {
		name       string
		allowEmpty bool
		do         func(name string) error
	}{
		{"Publish", false, func(n string) error { return tr.Publish(ctxFor(t, waitTimeout), n, []byte("x")) }},
		{"Subscribe", true, func(n string) error {
			s, err := tr.Subscribe(ctxFor(t, waitTimeout), n)
			if err == nil {
				s.Close()
			}
			return err
		}},
		{"Serve", false, func(n string) error {
			s, err := tr.Serve(n, echo)
			if err == nil {
				s.Close()
			}
			return err
		}},
		{"Request", false, func(n string) error {
			_, err := request(tr, waitTimeout, n, []byte("x"))
			return err
		}},
	}
	bad := []struct{ what, name string }{
		{"empty", ""},
		{"too long", strings.Repeat("n", transport.MaxNameLen+1)},
		{"NUL byte", "a\x00b"},
	}
	for _, op := range ops {
		for _, b := range bad {
			if b.name == "" && op.allowEmpty {
				continue
			}
			if err := op.do(b.name); !errors.Is(err, transport.ErrInvalidName) {
				t.Errorf("%s with a %s name: %s, want ErrInvalidName", op.name, b.what, describe(err))
			}
		}
	}
	// The longest valid name works end to end.
	long := strings.Repeat("l", transport.MaxNameLen)
	other := c.Node(t)
	sub := mustSubscribe(t, other, long)
	mustPublish(t, tr, long, []byte("long"))
	if m := mustRecv(t, sub, "max-length topic"); m.Topic != long {
		t.Errorf("max-length topic arrived as %q", m.Topic)
	}
	mustServe(t, other, long, echo)
	awaitService(t, tr, long, []byte("x"))
}

// testConcurrencyLimit: a replica never runs more than its Concurrency at
// once; extra requests wait at the balancer until a slot frees or their ctx
// ends.
func testConcurrencyLimit(t *testing.T, _ Features, c Cluster) {
	server := c.Node(t)
	caller := c.Node(t)
	var cur, peak atomic.Int32
	mustServe(t, server, "lim2", func(_ context.Context, req []byte) ([]byte, error) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond) // simulated work, so requests overlap
		cur.Add(-1)
		return req, nil
	}, transport.WithConcurrency(2))
	awaitService(t, caller, "lim2", []byte("x"))
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := request(caller, 2*waitTimeout, "lim2", []byte("x")); err != nil {
				errs <- fmt.Errorf("request %d: %s", i, describe(err))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency %d with WithConcurrency(2) and 10 concurrent requests, want exactly 2", p)
	}

	// Concurrency 1, busy: a second request waits (it is not refused) until
	// its deadline, or until the slot frees.
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	mustServe(t, server, "lim1", holder(started, release, "lim1"), transport.WithConcurrency(1))
	awaitService(t, caller, "lim1", []byte("x"))
	held := make(chan error, 1)
	go func() {
		_, err := request(caller, 3*waitTimeout, "lim1", []byte("hold"))
		held <- err
	}()
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("the holding request never reached the handler")
	}
	if _, err := request(caller, 300*time.Millisecond, "lim1", []byte("x")); !errors.Is(err, transport.ErrDeadlineExceeded) {
		t.Fatalf("request to a busy replica with a 300ms deadline: %s, want ErrDeadlineExceeded (waiting at the balancer)", describe(err))
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := request(caller, 3*waitTimeout, "lim1", []byte("queued"))
		waiting <- err
	}()
	close(release)
	for name, ch := range map[string]chan error{"holding request": held, "waiting request": waiting} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("%s: %s", name, describe(err))
			}
		case <-time.After(2 * waitTimeout):
			t.Fatalf("%s still blocked after the slot was released", name)
		}
	}
}

// holder is a handler that holds each "hold" request (after sending on
// started) until release is closed or its ctx ends, and answers every
// request it does not fail with reply.
func holder(started chan<- struct{}, release <-chan struct{}, reply string) transport.Handler {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		if string(req) == "hold" {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return []byte(reply), nil
	}
}

// testLoadBalancing: 300 requests over 3 replicas on 3 nodes; each gets a
// fair share and each request is handled once.
func testLoadBalancing(t *testing.T, _ Features, c Cluster) {
	const total, workers = 300, 10
	replicaNodes := []transport.Transport{c.Hub(t), c.Node(t), c.Node(t)}
	caller := c.Node(t)
	var mu sync.Mutex
	counts := make([]int, len(replicaNodes))
	handled := make(map[string]int, total)
	for i, n := range replicaNodes {
		mustServe(t, n, "lb", func(_ context.Context, req []byte) ([]byte, error) {
			mu.Lock()
			counts[i]++
			handled[string(req)]++
			mu.Unlock()
			time.Sleep(time.Millisecond) // simulated work
			return []byte(fmt.Sprint(i)), nil
		})
	}
	// Wait until the balancer knows all three replicas.
	seen := make(map[string]bool)
	var last error
	eventually(t, waitTimeout, func() bool {
		r, err := request(caller, time.Second, "lb", []byte("probe"))
		if err != nil {
			last = err
		} else {
			seen[string(r)] = true
		}
		return len(seen) == len(replicaNodes)
	}, "only replicas %v answered; last error %s", seen, describe(last))
	mu.Lock()
	clear(counts)
	clear(handled)
	mu.Unlock()

	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += workers {
				if _, err := request(caller, 2*waitTimeout, "lb", []byte(fmt.Sprint("req-", i))); err != nil {
					errs <- fmt.Errorf("request %d: %s", i, describe(err))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != total {
		t.Errorf("%d distinct requests handled, want %d", len(handled), total)
	}
	for r, k := range handled {
		if k != 1 {
			t.Errorf("%s handled %d times, want once", r, k)
		}
	}
	// Least-busy balancing favours a replica that answers sooner (the one
	// beside the broker, on a loaded machine), so the bounds are wide; they
	// still catch every request going to one replica, or one starved.
	fair := total / len(replicaNodes)
	for i, k := range counts {
		if k < fair/2 || k > fair*17/10 {
			t.Errorf("replica %d handled %d of %d requests (all: %v), want between %d and %d", i, k, total, counts, fair/2, fair*17/10)
		}
	}
}

// testReplicaLost: a replica closes (its node, or its Service) while
// handling a request. The handler's ctx is cancelled; a plain caller gets
// ErrResponderLost quickly; an Idempotent caller is answered by another
// replica; later requests go to the live replica only.
func testReplicaLost(t *testing.T, _ Features, c Cluster) {
	caller := c.Node(t)
	survivorNode := c.Node(t)
	quick := 3 * time.Second
	cases := []struct {
		name       string
		closeNode  bool
		idempotent bool
	}{
		{"node closes, plain request", true, false},
		{"node closes, idempotent request", true, true},
		{"service closes, plain request", false, false},
		{"service closes, idempotent request", false, true},
	}
	for k, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			service := fmt.Sprintf("lost%d", k)
			doomedNode := c.Node(t)
			started := make(chan string, 1)
			cancelled := make(chan struct{})
			doomed := mustServe(t, doomedNode, service, func(ctx context.Context, req []byte) ([]byte, error) {
				if string(req) == "ping" {
					return []byte("doomed"), nil
				}
				started <- string(req)
				select {
				case <-ctx.Done():
					close(cancelled)
					return nil, ctx.Err()
				case <-time.After(3 * waitTimeout):
					return []byte("doomed replica was never cancelled"), nil
				}
			}, transport.WithConcurrency(1))
			awaitService(t, caller, service, []byte("ping"))

			var opts []transport.RequestOption
			if tc.idempotent {
				opts = append(opts, transport.Idempotent())
			}
			type result struct {
				reply []byte
				err   error
				at    time.Time
			}
			res := make(chan result, 1)
			go func() {
				r, err := request(caller, 3*waitTimeout, service, []byte("job"), opts...)
				res <- result{r, err, time.Now()}
			}()
			select {
			case <-started:
			case <-time.After(waitTimeout):
				t.Fatal("the request never reached the only replica")
			}

			// A second replica joins. The doomed one is busy (Concurrency
			// 1), so a probe that succeeds was answered by the survivor.
			mustServe(t, survivorNode, service, func(_ context.Context, req []byte) ([]byte, error) {
				return append([]byte("survivor:"), req...), nil
			})
			var last error
			eventually(t, waitTimeout, func() bool {
				var r []byte
				r, last = request(caller, 300*time.Millisecond, service, []byte("ping"))
				return last == nil && string(r) == "survivor:ping"
			}, "the survivor replica never answered; last: %s", describe(last))

			closedAt := time.Now()
			if tc.closeNode {
				if err := doomedNode.Close(); err != nil {
					t.Fatalf("closing the doomed node: %v", err)
				}
			} else if err := doomed.Close(); err != nil {
				t.Fatalf("closing the doomed service: %v", err)
			}
			select {
			case <-cancelled:
			case <-time.After(waitTimeout):
				t.Fatal("the lost replica's handler ctx was not cancelled")
			}
			var r result
			select {
			case r = <-res:
			case <-time.After(2 * waitTimeout):
				t.Fatal("the caller is still blocked after its replica was lost")
			}
			if tc.idempotent {
				if r.err != nil || string(r.reply) != "survivor:job" {
					t.Fatalf("idempotent request whose replica was lost: reply %q, %s; want it retried on the survivor (%q)", r.reply, describe(r.err), "survivor:job")
				}
			} else {
				if !errors.Is(r.err, transport.ErrResponderLost) {
					t.Fatalf("plain request whose replica was lost: reply %q, %s; want ErrResponderLost", r.reply, describe(r.err))
				}
				if d := r.at.Sub(closedAt); d > quick {
					t.Errorf("ErrResponderLost came %v after the replica closed, want under %v", d, quick)
				}
			}
			for i := 0; i < 20; i++ {
				reply, err := request(caller, waitTimeout, service, []byte("after"))
				if err != nil || string(reply) != "survivor:after" {
					t.Fatalf("request %d after the loss: reply %q, %s; want the survivor's answer", i, reply, describe(err))
				}
			}
		})
	}
}

// testLeastBusy: the balancer prefers the replica with the fewest requests
// in flight. One replica holds three requests; one at a time, ten more
// requests must all go to the idle replica.
func testLeastBusy(t *testing.T, _ Features, c Cluster) {
	busyNode, idleNode := c.Node(t), c.Node(t)
	caller := c.Node(t)
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	mustServe(t, busyNode, "lb2", holder(started, release, "busy"))
	awaitService(t, caller, "lb2", []byte("x"))
	held := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			_, err := request(caller, 3*waitTimeout, "lb2", []byte("hold"))
			held <- err
		}()
	}
	for i := 0; i < 3; i++ {
		select {
		case <-started:
		case <-time.After(waitTimeout):
			t.Fatalf("only %d of 3 holding requests reached the busy replica", i)
		}
	}
	mustServe(t, idleNode, "lb2", func(context.Context, []byte) ([]byte, error) { return []byte("idle"), nil })
	var last error
	eventually(t, waitTimeout, func() bool {
		var r []byte
		r, last = request(caller, time.Second, "lb2", []byte("probe"))
		return last == nil && string(r) == "idle"
	}, "the idle replica never answered; last: %s", describe(last))
	var got []string
	for i := 0; i < 10; i++ {
		r, err := request(caller, waitTimeout, "lb2", []byte("x"))
		if err != nil {
			t.Fatalf("request %d: %s", i, describe(err))
		}
		got = append(got, string(r))
	}
	close(release)
	for i := 0; i < 3; i++ {
		if err := <-held; err != nil {
			t.Errorf("holding request: %s", describe(err))
		}
	}
	for _, r := range got {
		if r != "idle" {
			t.Fatalf("with one replica holding 3 requests and one idle, sequential requests went to %v; want all to the idle one (least busy)", got)
		}
	}
}
