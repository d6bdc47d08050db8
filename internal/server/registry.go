package server

import (
	"github.com/zeroci/zeroci/modules"
	"github.com/zeroci/zeroci/modules/api"
	"github.com/zeroci/zeroci/modules/blob"
	"github.com/zeroci/zeroci/modules/buildscript"
	"github.com/zeroci/zeroci/modules/datastore"
	"github.com/zeroci/zeroci/modules/eventhub"
	"github.com/zeroci/zeroci/modules/jobs"
	"github.com/zeroci/zeroci/modules/logging"
)

// ModuleInfo describes a module for help output.
type ModuleInfo struct {
	Name    string
	Summary string
	// Placeholder is the issue that builds the module, or 0 once it is built.
	Placeholder int
}

// entry is one module the server can run.
type entry struct {
	name    string
	summary string
	new     func() modules.Module
}

// registry lists every module in start order (modules.Names). It is the one
// place that imports the module packages.
func registry() []entry {
	return []entry{
		{modules.Eventhub, eventhub.Summary, eventhub.New},
		{modules.Datastore, datastore.Summary, datastore.New},
		{modules.Blob, blob.Summary, blob.New},
		{modules.Logging, logging.Summary, logging.New},
		{modules.Buildscript, buildscript.Summary, buildscript.New},
		{modules.Jobs, jobs.Summary, jobs.New},
		{modules.API, api.Summary, api.New},
	}
}

// Modules describes every module, in start order.
func Modules() []ModuleInfo {
	var out []ModuleInfo
	for _, e := range registry() {
		info := ModuleInfo{Name: e.name, Summary: e.summary}
		if p, ok := e.new().(interface{ Issue() int }); ok { // construction has no side effects
			info.Placeholder = p.Issue()
		}
		out = append(out, info)
	}
	return out
}

// build constructs the named modules, in start order.
func build(names []string) []modules.Module {
	var out []modules.Module
	for _, e := range registry() {
		for _, n := range names {
			if n == e.name {
				out = append(out, e.new())
			}
		}
	}
	return out
}
