package rpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/modules/rpc"
	"github.com/zeroci/zeroci/transport/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMux: requests are decoded and validated before a handler runs;
// whatever goes wrong, the caller gets a typed error reply and the server
// goes on.
func TestMux(t *testing.T) {
	net := inproc.NewNetwork()
	srv, cli := net.Node(), net.Node()
	defer srv.Close()
	defer cli.Close()
	mux := rpc.NewMux(zerolog.Nop())
	calls := 0
	rpc.Handle(mux, func(ctx context.Context, req contracts.GetRepo) (contracts.Message, error) {
		calls++
		switch req.Name {
		case "boom":
			panic("handler bug")
		case "gone":
			return nil, contracts.NewError(contracts.CodeNotFound, "repo gone")
		case "plain":
			return nil, errors.New("disk on fire")
		case "badreply":
			return contracts.Repo{Name: "Not Valid"}, nil
		}
		return contracts.Repo{Name: req.Name, URL: "https://x/y.git", DefaultBranch: "main", CreatedAt: time.Now()}, nil
	})
	svc, err := mux.Serve(srv, contracts.ServiceDatastore)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	r, err := rpc.Call[contracts.Repo](ctx, cli, contracts.GetRepo{Name: "web"})
	if err != nil || r.Name != "web" {
		t.Fatalf("call: %+v %v", r, err)
	}
	for name, code := range map[string]contracts.Code{
		"boom": contracts.CodeInternal, "gone": contracts.CodeNotFound, "plain": contracts.CodeInternal, "badreply": contracts.CodeInternal,
	} {
		_, err := rpc.Call[contracts.Repo](ctx, cli, contracts.GetRepo{Name: name})
		var ce *contracts.Error
		if !errors.As(err, &ce) || ce.Code != code {
			t.Errorf("%s: %v, want %s", name, err, code)
		}
	}

	// Requests a well-behaved client would never send: the raw bytes
	// bypass the client's own validation.
	raw := func(typ string, payload string) []byte {
		env := contracts.Envelope{Type: typ, Version: 1, ID: contracts.NewID(time.Now()), Time: time.Now().UTC(), Payload: []byte(payload)}
		b, err := contracts.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := calls
	for what, data := range map[string][]byte{
		"garbage":       []byte("not an envelope"),
		"invalid name":  raw(contracts.TypeGetRepo, `{"name":"../etc"}`),
		"unknown field": raw(contracts.TypeGetRepo, `{"name":"web","admin":true}`),
		"wrong type":    raw(contracts.TypeGetRepo, `{"name":7}`),
		"no handler":    raw(contracts.TypeListRepos, `{}`),
	} {
		out, err := cli.Request(ctx, contracts.ServiceDatastore, data)
		if err != nil {
			t.Fatalf("%s: transport: %v", what, err)
		}
		rep, err := contracts.Unmarshal(out)
		if err != nil {
			t.Fatalf("%s: reply does not decode: %v", what, err)
		}
		e, err := contracts.DecodePayload[contracts.Error](rep)
		if err != nil || e.Code != contracts.CodeInvalidArgument {
			t.Errorf("%s: reply %+v %v, want invalid_argument", what, e, err)
		}
	}
	if calls != before {
		t.Errorf("the handler ran for %d bad requests", calls-before)
	}
	// And the server still serves.
	if _, err := rpc.Do(ctx, cli, contracts.GetRepo{Name: "still"}); err != nil {
		t.Fatal(err)
	}
}
