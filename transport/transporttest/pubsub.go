package transporttest

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroci/zeroci/transport"
)

func pubSubTests() []test {
	return []test{
		{name: "PubSub/PrefixMatching", run: testPrefixMatching},
		{name: "PubSub/ActiveWhenSubscribeReturns", run: testActiveOnReturn},
		{name: "PubSub/DataIsCopied", run: testPublishCopies},
		{name: "PubSub/OrderPerPublisher", run: testOrdering},
		{name: "PubSub/ManyPublishersAndSubscribers", run: testManyPubSub},
		{name: "PubSub/SlowSubscriberIsolated", run: testSlowSubscriber},
	}
}

// testPrefixMatching: a subscription gets exactly the topics its prefix
// begins. Each case publishes the probe topic, then a marker the
// subscription matches; per-publisher order says the probe, if delivered,
// comes first.
func testPrefixMatching(t *testing.T, _ Features, c Cluster) {
	pub := c.Node(t)
	subNode := c.Node(t)
	long := strings.Repeat("p", transport.MaxNameLen)
	cases := []struct {
		name, prefix, topic string
		match               bool
	}{
		{"empty prefix matches all", "", "any.topic", true},
		{"prefix of topic", "a.", "a.b", true},
		{"prefix equals topic", "a.b", "a.b", true},
		{"prefix longer than topic", "a.b", "a.", false},
		{"sibling", "a.b", "a.c", false},
		{"substring not at start", "a", "b.a", false},
		{"case sensitive", "A", "a", false},
		{"utf-8 bytes", "é", "été", true},
		{"max length prefix and topic", long, long, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub := mustSubscribe(t, subNode, tc.prefix)
			defer sub.Close()
			marker := tc.prefix
			if marker == "" {
				marker = "marker"
			}
			mustPublish(t, pub, tc.topic, []byte("probe"))
			mustPublish(t, pub, marker, []byte("marker"))
			m := mustRecv(t, sub, "first delivery")
			if tc.match {
				if m.Topic != tc.topic || string(m.Data) != "probe" {
					t.Fatalf("prefix %q, topic %q: want the probe first, got topic %q data %q", tc.prefix, tc.topic, m.Topic, m.Data)
				}
				m = mustRecv(t, sub, "marker after probe")
			}
			if m.Topic != marker || string(m.Data) != "marker" {
				t.Fatalf("prefix %q, topic %q (match=%v): want marker %q, got topic %q data %q", tc.prefix, tc.topic, tc.match, marker, m.Topic, m.Data)
			}
		})
	}
}

// testActiveOnReturn: a subscription receives a publish that starts right
// after Subscribe returns, from any node, without warm-up.
func testActiveOnReturn(t *testing.T, _ Features, c Cluster) {
	hub := c.Hub(t)
	nodes := []transport.Transport{hub, c.Node(t), c.Node(t)}
	for i := 0; i < 10; i++ {
		for si, sn := range nodes {
			for pi, pn := range nodes {
				topic := fmt.Sprintf("act.%d.%d.%d", i, si, pi)
				sub := mustSubscribe(t, sn, topic)
				mustPublish(t, pn, topic, []byte(topic))
				m, err := recv(sub, waitTimeout)
				if err != nil {
					t.Fatalf("round %d: subscriber node %d did not get a publish from node %d made right after Subscribe returned: %s", i, si, pi, describe(err))
				}
				if m.Topic != topic || string(m.Data) != topic {
					t.Fatalf("round %d: got topic %q data %q, want %q", i, m.Topic, m.Data, topic)
				}
				sub.Close()
			}
		}
	}
}

// testPublishCopies: the publisher may reuse its buffer once Publish returns,
// and each subscription gets its own copy.
func testPublishCopies(t *testing.T, _ Features, c Cluster) {
	pub := c.Node(t)
	subNode := c.Node(t)
	s1 := mustSubscribe(t, subNode, "copy.")
	s2 := mustSubscribe(t, subNode, "copy.")
	s3 := mustSubscribe(t, pub, "copy.") // same node as the publisher
	buf := []byte("first")
	mustPublish(t, pub, "copy.x", buf)
	copy(buf, "XXXXX") // reuse the buffer
	mustPublish(t, pub, "copy.x", buf)
	for i, s := range []transport.Subscription{s1, s2, s3} {
		m1 := mustRecv(t, s, "first message")
		if string(m1.Data) != "first" {
			t.Fatalf("subscription %d: first message %q, want %q: the publisher's buffer was not copied", i, m1.Data, "first")
		}
		// Scribble on this subscription's copy: the others must not see it.
		for j := range m1.Data {
			m1.Data[j] = '!'
		}
		m2 := mustRecv(t, s, "second message")
		if string(m2.Data) != "XXXXX" {
			t.Fatalf("subscription %d: second message %q, want %q", i, m2.Data, "XXXXX")
		}
	}
}

// seqData encodes a publisher id and a sequence number, padded to size.
func seqData(pub, seq uint32, size int) []byte {
	if size < 8 {
		size = 8
	}
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, pub)
	binary.BigEndian.PutUint32(b[4:], seq)
	return b
}

func parseSeq(b []byte) (pub, seq uint32, ok bool) {
	if len(b) < 8 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), true
}

// testOrdering: one publisher's messages reach subscriptions on other nodes
// and on its own node in publish order, none lost with a large enough queue.
func testOrdering(t *testing.T, _ Features, c Cluster) {
	n := 3000
	if raceEnabled {
		n = 1000 // -race: fewer messages, same property
	}
	hub := c.Hub(t)
	pub := c.Node(t)
	other := c.Node(t)
	subs := map[string]transport.Subscription{
		"other node":     mustSubscribe(t, other, "ord.", transport.WithQueueSize(n)),
		"hub":            mustSubscribe(t, hub, "ord.", transport.WithQueueSize(n)),
		"publisher node": mustSubscribe(t, pub, "ord.", transport.WithQueueSize(n)),
	}
	for i := 0; i < n; i++ {
		mustPublish(t, pub, "ord.x", seqData(0, uint32(i), 16))
	}
	for name, s := range subs {
		for i := 0; i < n; i++ {
			m, err := recv(s, waitTimeout)
			if err != nil {
				t.Fatalf("%s: message %d of %d: %s", name, i, n, describe(err))
			}
			_, seq, ok := parseSeq(m.Data)
			if !ok || seq != uint32(i) {
				t.Fatalf("%s: message %d has sequence %d (data %x): order broken or message lost", name, i, seq, m.Data)
			}
		}
	}
}

// testManyPubSub: 8 publishers on 4 nodes, 8 subscriptions with different
// prefixes on 4 nodes; every message reaches every matching subscription
// exactly once, in each publisher's order.
func testManyPubSub(t *testing.T, _ Features, c Cluster) {
	const publishers = 8
	per := 1000
	if raceEnabled {
		per = 300 // -race: 2,400 messages instead of 8,000
	}
	nodes := []transport.Transport{c.Hub(t), c.Node(t), c.Node(t), c.Node(t)}
	topic := func(p, i int) string {
		parity := "even"
		if i%2 == 1 {
			parity = "odd"
		}
		return fmt.Sprintf("mp.%s.p%d", parity, p)
	}
	prefixes := []string{"mp.", "mp.", "", "mp.even.", "mp.odd.", "mp.odd.p3", "mp.even.p1", "mp.none."}
	type subState struct {
		prefix string
		sub    transport.Subscription
		want   int
	}
	subs := make([]*subState, len(prefixes))
	for k, p := range prefixes {
		want := 0
		for pb := 0; pb < publishers; pb++ {
			for i := 0; i < per; i++ {
				if strings.HasPrefix(topic(pb, i), p) {
					want++
				}
			}
		}
		q := want + 1
		subs[k] = &subState{prefix: p, want: want, sub: mustSubscribe(t, nodes[k%len(nodes)], p, transport.WithQueueSize(q))}
	}

	var wg sync.WaitGroup
	errs := make(chan error, publishers+len(subs))
	start := make(chan struct{})
	for pb := 0; pb < publishers; pb++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tr := nodes[pb%len(nodes)]
			ctx := ctxFor(t, 3*waitTimeout)
			for i := 0; i < per; i++ {
				if err := tr.Publish(ctx, topic(pb, i), seqData(uint32(pb), uint32(i), 32)); err != nil {
					errs <- fmt.Errorf("publisher %d message %d: %s", pb, i, describe(err))
					return
				}
			}
		}()
	}
	for k, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := make([]int64, publishers)
			for i := range last {
				last[i] = -1
			}
			seen := make(map[[2]uint32]bool, s.want)
			for got := 0; got < s.want; got++ {
				m, err := recv(s.sub, 3*waitTimeout)
				if err != nil {
					errs <- fmt.Errorf("subscription %d (prefix %q) after %d of %d messages: %s", k, s.prefix, got, s.want, describe(err))
					return
				}
				pb, seq, ok := parseSeq(m.Data)
				if !ok || int(pb) >= publishers || int(seq) >= per {
					errs <- fmt.Errorf("subscription %d (prefix %q): foreign message topic %q data %x", k, s.prefix, m.Topic, m.Data)
					return
				}
				if want := topic(int(pb), int(seq)); m.Topic != want || !strings.HasPrefix(m.Topic, s.prefix) {
					errs <- fmt.Errorf("subscription %d (prefix %q): message %d/%d has topic %q, want %q", k, s.prefix, pb, seq, m.Topic, want)
					return
				}
				key := [2]uint32{pb, seq}
				if seen[key] {
					errs <- fmt.Errorf("subscription %d (prefix %q): duplicate message %d/%d", k, s.prefix, pb, seq)
					return
				}
				seen[key] = true
				if int64(seq) <= last[pb] {
					errs <- fmt.Errorf("subscription %d (prefix %q): publisher %d message %d after %d: order broken", k, s.prefix, pb, seq, last[pb])
					return
				}
				last[pb] = int64(seq)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// Nothing more may come: no duplicates, nothing for "mp.none.".
	var extra sync.WaitGroup
	for k, s := range subs {
		extra.Add(1)
		go func() {
			defer extra.Done()
			if m, err := recv(s.sub, 200*time.Millisecond); err == nil {
				t.Errorf("subscription %d (prefix %q): unexpected extra message topic %q data %x after all %d expected", k, s.prefix, m.Topic, m.Data, s.want)
			}
		}()
	}
	extra.Wait()
}

// testSlowSubscriber: one subscription never reads while messages flow. The
// publisher and a fast subscription are not held back; memory stays
// bounded; the slow one later gets exactly its queue bound of messages, a
// *MissedError with the right count, then new messages.
func testSlowSubscriber(t *testing.T, _ Features, c Cluster) {
	const (
		bound   = 100  // slow subscriptions' queue
		batch   = 1000 // published between waits for the fast subscriber
		payload = 1024
		// memLimit is generous: the two slow queues hold 200 KiB; only a
		// queue that keeps everything (≥ 40 MB) should reach it.
		memLimit = 16 << 20
	)
	total := 100_000
	if raceEnabled {
		total = 20_000 // -race: 20k × 1 KiB; unbounded buffering would still add ≥ 40 MB
	}
	pub := c.Node(t)
	nodeA := c.Node(t)
	nodeB := c.Node(t)
	slowA := mustSubscribe(t, nodeA, "slow.", transport.WithQueueSize(bound))
	slowB := mustSubscribe(t, nodeB, "slow.", transport.WithQueueSize(bound)) // shares a node with the fast one
	fast := mustSubscribe(t, nodeB, "slow.", transport.WithQueueSize(2*batch))

	var fastGot atomic.Int64
	fastErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i++ {
			m, err := recv(fast, 3*waitTimeout)
			if err != nil {
				fastErr <- fmt.Errorf("fast subscription at message %d of %d: %s", i, total, describe(err))
				return
			}
			if _, seq, ok := parseSeq(m.Data); !ok || seq != uint32(i) {
				fastErr <- fmt.Errorf("fast subscription: message %d has sequence %d: it lost or reordered messages", i, seq)
				return
			}
			fastGot.Add(1)
		}
	}()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buf := make([]byte, payload)
	ctx := ctxFor(t, 6*waitTimeout)
	start := time.Now()
	for i := 0; i < total; i++ {
		binary.BigEndian.PutUint32(buf[4:], uint32(i))
		if err := pub.Publish(ctx, "slow.x", buf); err != nil {
			t.Fatalf("Publish %d of %d: %s", i, total, describe(err))
		}
		if (i+1)%(10*batch) == 0 {
			// Fail early, not after minutes of swapping, when a queue is unbounded.
			runtime.GC()
			var now runtime.MemStats
			runtime.ReadMemStats(&now)
			if g := int64(now.HeapAlloc) - int64(before.HeapAlloc); g > memLimit {
				t.Fatalf("live heap grew by %d MiB (limit %d MiB) after %d messages with two subscriptions of bound %d not reading: some queue is unbounded", g>>20, memLimit>>20, i+1, bound)
			}
		}
		if (i+1)%batch == 0 {
			want := int64(i + 1)
			deadline := time.Now().Add(waitTimeout)
			for fastGot.Load() < want {
				select {
				case err := <-fastErr:
					t.Fatal(err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("fast subscription stuck at %d of %d published messages while two slow ones did not read", fastGot.Load(), want)
				}
				time.Sleep(pollEvery)
			}
		}
	}
	wg.Wait()
	select {
	case err := <-fastErr:
		t.Fatal(err)
	default:
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d × %d B published and read by the fast subscription in %v; live heap growth %d KiB with two full slow subscriptions", total, payload, elapsed, growth>>10)
	if growth > memLimit {
		t.Fatalf("live heap grew by %d MiB (limit %d MiB) after %d messages with two subscriptions of bound %d not reading: some queue is unbounded", growth>>20, memLimit>>20, total, bound)
	}

	var missedTotal uint64
	for _, s := range []struct {
		name string
		sub  transport.Subscription
	}{{"slow subscription on its own node", slowA}, {"slow subscription sharing the fast one's node", slowB}} {
		missedTotal += checkGappedStream(t, s.name, s.sub, bound, total)
	}
	// Stats: the drops were counted somewhere on the path.
	var dropped uint64
	for _, n := range []transport.Transport{nodeA, nodeB, c.Hub(t)} {
		dropped += n.Stats().Dropped
	}
	if dropped < missedTotal {
		t.Errorf("Stats().Dropped summed over the subscriber nodes and the hub is %d, but the subscriptions reported %d missed", dropped, missedTotal)
	}

	// Both slow subscriptions go on with new messages after the gap.
	for i := 0; i < 10; i++ {
		binary.BigEndian.PutUint32(buf[4:], uint32(total+i))
		mustPublish(t, pub, "slow.x", buf)
	}
	for name, s := range map[string]transport.Subscription{"slow A": slowA, "slow B": slowB} {
		for i := 0; i < 10; i++ {
			m, err := recv(s, waitTimeout)
			if err != nil {
				t.Fatalf("%s: message %d after the gap: %s", name, i, describe(err))
			}
			if _, seq, _ := parseSeq(m.Data); seq != uint32(total+i) {
				t.Fatalf("%s: after the gap got sequence %d, want %d", name, seq, total+i)
			}
		}
	}
}

// checkGappedStream reads entries until the received messages and the
// reported gaps account for all total messages: the first bound messages
// must be 0..bound-1, every MissedError must have a known count equal to the
// hole in the sequence, and at least one must come. It returns the sum of
// the counts.
func checkGappedStream(t *testing.T, name string, sub transport.Subscription, bound, total int) uint64 {
	t.Helper()
	var (
		next      uint64 // the next sequence number not yet accounted for
		received  int
		gapCount  uint64
		gapOpen   bool // a MissedError was seen and not yet matched by a message
		gaps      int
		missedSum uint64
	)
	for next < uint64(total) {
		m, err := recv(sub, waitTimeout)
		if n, ok := missed(err); ok {
			if n == 0 {
				t.Fatalf("%s: MissedError with unknown count after %d messages; the link was not lost, the count must be known", name, received)
			}
			if gapOpen {
				gapCount += n
			} else {
				gapOpen, gapCount = true, n
			}
			gaps++
			missedSum += n
			if next+gapCount == uint64(total) { // the gap runs to the end
				next += gapCount
				gapOpen = false
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: stream stopped with %d of %d messages accounted for (%d received, %d reported missed): %s; messages dropped without a MissedError (or with a wrong count) are silent loss", name, next, total, received, missedSum, describe(err))
		}
		_, seq, _ := parseSeq(m.Data)
		if received < bound && (gapOpen || uint64(seq) != next) {
			t.Fatalf("%s: message %d has sequence %d (gap reported: %v); the first %d (its queue bound) must be 0..%d", name, received, seq, gapOpen, bound, bound-1)
		}
		if gapOpen {
			if uint64(seq) != next+gapCount {
				t.Fatalf("%s: MissedError said %d missed after sequence %d, but the next message is %d (%d missed)", name, gapCount, next-1, seq, uint64(seq)-next)
			}
			next += gapCount
			gapOpen = false
		} else if uint64(seq) != next {
			t.Fatalf("%s: sequence %d after %d with no MissedError: silent loss", name, seq, next-1)
		}
		next++
		received++
	}
	if gaps == 0 {
		t.Fatalf("%s: all %d messages received by a subscription of bound %d that never read: queue not bounded", name, total, bound)
	}
	if received < bound {
		t.Fatalf("%s: received only %d messages then a gap to the end; a queue of bound %d must hold %d", name, received, bound, bound)
	}
	if received != bound || gaps != 1 {
		t.Logf("%s: received %d messages (bound %d) and %d missed in %d gaps", name, received, bound, missedSum, gaps)
	}
	return missedSum
}
