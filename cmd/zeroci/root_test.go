package main

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zeroci/zeroci/internal/config"
)

func TestReport(t *testing.T) {
	root := newRootCmd(zerolog.Nop())
	server, _, _ := root.Find([]string{"server"})
	cfgErr := &config.Error{Problems: []config.Problem{{Origin: "--modules", Key: "modules", Msg: `unknown module "x"`}}}
	tests := []struct {
		name string
		err  error
		want string
		code int
	}{
		{"ok", nil, "", 0},
		{"config error", runFailed(cfgErr), "zeroci: config: --modules: modules: unknown module \"x\"\n", 2},
		{"wrapped config error", runFailed(fmt.Errorf("server: %w", cfgErr)), "zeroci: server: config: --modules: modules: unknown module \"x\"\n", 2},
		{"runtime failure", runFailed(errors.New("server: http: address in use")), "zeroci: server: http: address in use\n", 1},
		{"multi-line error", runFailed(errors.Join(errors.New("a"), errors.New("b"))), "zeroci: a; b\n", 1},
		{"cobra usage error", errors.New("unknown flag: --x"), "zeroci: unknown flag: --x (see 'zeroci server --help')\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if code := report(&buf, server, tt.err); code != tt.code {
				t.Errorf("code %d, want %d", code, tt.code)
			}
			if buf.String() != tt.want {
				t.Errorf("stderr %q, want %q", buf.String(), tt.want)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	root := newRootCmd(zerolog.Nop())
	var names []string
	for _, c := range root.Commands() {
		names = append(names, c.Name())
	}
	// cobra adds completion and help when the tree is executed, not here.
	if fmt.Sprint(names) != "[build datastore events logs migrate repo run secret server token validate version]" {
		t.Errorf("commands %v", names)
	}
}
