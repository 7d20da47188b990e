# Shortcuts for the seed's make targets. Every target is a thin call of `cargo xtask`
# (or plain cargo), which holds the logic; `cargo xtask --help` documents it.

# Where `release-local` installs the CLI.
PREFIX ?= $(HOME)/bin

.DEFAULT_GOAL := help
.PHONY: help build-agent-runner-image release-local release-local-full release test clean

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-26s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

build-agent-runner-image: ## Build the agent-runner image into the local engine (stigmer-agent-runner:local)
	cargo xtask image --local

release-local: ## Build the stigmer CLI for this machine and install it into PREFIX (default ~/bin)
	cargo build --locked --release --package stigmer
	mkdir -p "$(PREFIX)" && install -m 755 target/release/stigmer "$(PREFIX)/stigmer"

release-local-full: release-local ## release-local, plus the image and every release artifact in dist/ (publishes nothing)
	cargo xtask release --snapshot

release: ## Cut and push a release (bump=major|minor|patch|rc|X.Y.Z); the tag starts the release workflow
	$(if $(bump),,$(error say which release to cut: make release bump=minor (or major, patch, rc, X.Y.Z)))
	cargo xtask release --bump $(bump) --push

test: ## Run every test against real parts, as CI does
	cargo xtask test

clean: ## Remove build outputs (target/, dist/)
	cargo clean
	rm -rf dist
