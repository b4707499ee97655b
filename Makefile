# Every target bootstraps what it needs: a virtualenv in .venv and any missing Debian packages.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the product and its tests need; installed only when missing.
DEBIAN_PACKAGES := git python3-venv chromium qemu-system-x86 qemu-utils busybox-static e2fsprogs mmdebstrap openssl redis-server libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config gcc

.PHONY: demo test bench lint debian-packages schemas clean

# The demo's repository, images and site stay in build/demo to look at afterwards.
demo: $(STAMP)
	rm -rf build/demo
	$(BIN)/formarket demo --workdir build/demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The generated contracts and docs: JSON Schemas from the models, docs/rules.md from the rule table.
schemas: $(STAMP)
	$(BIN)/formarket schema export
	$(BIN)/formarket rules --format markdown > docs/rules.md
	$(BIN)/formarket settings --markdown > docs/settings.md

debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml setup.py src/formarket/usage/_lines.c | debian-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .hypothesis
