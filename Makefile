# zeroci: `make run` runs the server with embedded defaults, `make test` runs
# every check CI runs. Go is looked up on PATH, then in /usr/local/go.
export PATH := $(PATH):/usr/local/go/bin

GO        ?= go
BIN       := bin/zeroci
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BENCHTIME ?= 1s
BENCHOUT  ?= bench.out
FUZZTIME  ?= 30s

.PHONY: build run test lint bench fuzz clean

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/zeroci

# All modules in one process, data in ./zeroci-data, HTTP on 127.0.0.1:8080.
run: build
	./$(BIN) server

test: lint
	$(GO) test -race ./...

lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:" $$unformatted; exit 1; fi
	$(GO) vet ./...

# Writes the results to $(BENCHOUT) (and shows them); fails if a benchmark does.
bench:
	@$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./... > $(BENCHOUT) 2>&1; \
	status=$$?; cat $(BENCHOUT); exit $$status

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./contracts/

clean:
	rm -rf bin $(BENCHOUT)
