# Common tasks. The README's two commands are the entry points; these are shortcuts.
.PHONY: up test crds lint

up:            ## serve examples/web-host.yaml on this machine
	cargo run -p hostrole-agent -- up examples/web-host.yaml

test:          ## every test, as CI runs it
	./test.sh

crds:          ## regenerate crds/ from the Rust types
	cargo run -q -p hostrole-operator -- crd > crds/hostrole.dev_hostroles.yaml

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
