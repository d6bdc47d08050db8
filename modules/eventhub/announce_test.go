package eventhub

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog"
	"github.com/zeroci/zeroci/modules/eventhub/eventlog/filelog"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport"
	"github.com/zeroci/zeroci/transport/inproc"
)

type host struct {
	tr  transport.Transport
	dir string
}

func (h host) Transport() transport.Transport { return h.tr }
func (h host) Logger() zerolog.Logger         { return zerolog.Nop() }
func (h host) DataDir() string                { return h.dir }

// An event stored without its publisher handing it to the announcer (the
// publisher failed after the append) is read back from the log, so live
// subscribers still get every number in order.
func TestAnnouncerFillsGapsFromLog(t *testing.T) {
	net := inproc.NewNetwork()
	tr, cli := net.Node(), net.Node()
	defer tr.Close()
	defer cli.Close()
	dir := t.TempDir()
	h := New(Options{OpenLog: func(ctx context.Context, _ string) (eventlog.Log, error) { return filelog.Open(dir, filelog.Options{}) }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Start(ctx, host{tr: tr, dir: dir}); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(ctx)
	sub, err := cli.Subscribe(ctx, contracts.EventTopicPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mk := func(n int64) contracts.Event {
		ev, err := contracts.NewEvent(contracts.Subject{Repo: "web", Build: n}, contracts.BuildQueued{})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	// Seq 1 goes into the log behind the hub's back.
	body, _ := json.Marshal(mk(1))
	if _, err := h.elog.Append(ctx, []eventlog.Entry{{ID: "behind-the-back", Body: body}}); err != nil {
		t.Fatal(err)
	}
	// Seq 2 is published normally: the announcer holds it until it has 1.
	if _, err := rpc.Call[contracts.Published](ctx, cli, contracts.PublishEvent{Event: mk(2)}); err != nil {
		t.Fatal(err)
	}
	for want := int64(1); want <= 2; want++ {
		msg, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		env, err := contracts.Unmarshal(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := contracts.DecodePayload[contracts.Event](env)
		if err != nil || ev.Seq != want {
			t.Fatalf("announcement %d: %+v %v", want, ev, err)
		}
	}
}
