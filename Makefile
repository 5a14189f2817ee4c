# Common tasks. The README's two commands are the entry points; these are shortcuts.
.PHONY: up test crds lint

up:            ## serve examples/web-host.yaml on this machine
	cargo run -p hostrole-agent -- up examples/web-host.yaml

test:          ## every test, as CI runs it
	./test.sh

crds:          ## regenerate crds/ (and the chart's copy, which templates/crds.yaml also reads) and docs/topology.schema.json from the Rust types
	cargo run -q -p hostrole-operator -- crd > crds/hostrole.dev_hostroles.yaml.new
	mv crds/hostrole.dev_hostroles.yaml.new crds/hostrole.dev_hostroles.yaml
	cp crds/hostrole.dev_hostroles.yaml charts/hostrole-operator/crds/
	cargo run -q -p hostrole-operator -- topology-schema > docs/topology.schema.json

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Benchmarks (root; installs their peers from Debian). BENCH=web|file|mail|imap|outbound|p2p|index|agent|operator|all.
BENCH ?= all
.PHONY: bench
bench:         ## each benchmark side by side with its peer, rows into bench/results.md (bench/README.md)
	bench/run.sh $(BENCH)

# Container images. VERSION defaults to the workspace version, SOURCE_DATE_EPOCH to the last
# commit's time (both reproducible). Without a Docker engine, OCI archives in target/images/.
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct)
.PHONY: images
images:        ## hostrole/operator:$(VERSION) and hostrole/agent:$(VERSION) (images/README.md)
	@if docker info >/dev/null 2>&1; then \
	  for c in operator agent; do \
	    docker build -f images/Dockerfile --target $$c \
	      --build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) --build-arg VERSION=$(VERSION) \
	      -t hostrole/$$c:$(VERSION) . || exit 1; \
	  done; \
	else \
	  echo "no Docker engine: building OCI archives with images/build-oci.sh" >&2; \
	  VERSION=$(VERSION) SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) images/build-oci.sh; \
	fi
