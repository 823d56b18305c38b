# Two commands do everything on a fresh machine with Python 3.11: `make demo` and `make test`.
# Both create .venv and install the pinned dependencies first when needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Ray 2.60 turns token auth on for a new local instance. The project's commands start theirs without it (and join a
# cluster in the cluster's own mode: core.runtime); this covers the tests that call a bare ray.init() themselves.
export RAY_AUTH_MODE ?= disabled
export PYTHONUNBUFFERED := 1

.PHONY: setup lint test test-fast demo bench docs clean image rootfs rootfs-smoke

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"need Python 3.11, found {sys.version.split()[0]} at {sys.executable}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	@# PYTHONWARNINGS: setuptools warns about every editable install in a 12-line box; there is nothing to act on.
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -c requirements.lock -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# Lint, format and the one-way layering (docs/architecture.md) before the tests: a new back-edge fails here.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# PYTHONFAULTHANDLER: a crash in native code during the run prints every thread's Python stack instead of a bare
# "Segmentation fault" (tests/conftest.py: the process leaves without interpreter shutdown once pytest has reported).
test: lint docs
	PYTHONFAULTHANDLER=1 $(BIN)/python -m pytest

# The inner loop: every test that starts no Ray, no server and no cluster and runs no whole pipeline (markers in
# pyproject.toml; tests/conftest.py marks a test by the server fixtures it uses). Under 3 minutes on 2 CPUs.
FAST := not ray and not cluster and not postgres and not s3 and not slow
test-fast: lint
	PYTHONFAULTHANDLER=1 $(BIN)/python -m pytest -m "$(FAST)"

# The docs site (mkdocs.yml, docs/) built strictly into build/site: a broken link or anchor, or a page missing from the
# nav, fails it, and `make test` runs it. Quiet unless it fails (mkdocs -q would also hide the warnings --strict counts).
docs: setup
	@mkdir -p build && NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site >build/mkdocs.log 2>&1 \
		|| { cat build/mkdocs.log; exit 1; }
	@echo "docs: build/site/index.html"

demo: setup
	$(BIN)/python -m demo

bench: setup
	$(BIN)/python benchmarks/env_throughput.py

# The container image (Dockerfile; docs/container.md): the official Ray image of requirements.lock's Ray version for
# Python 3.11 with this project installed from the lock. VARIANT=gpu for CUDA torch; IMAGE=<registry>/rlportfolio
# names it for a registry (then push it). deploy/*.yaml and cluster.yaml name the default tags.
RAY_VERSION = $(shell sed -n 's/^ray==//p' requirements.lock)
VARIANT ?= cpu
IMAGE ?= rlportfolio
IMAGE_TAG = $(IMAGE):$(RAY_VERSION)-py311-$(VARIANT)
image:
	@case "$(VARIANT)" in cpu|gpu) ;; *) echo "make image: VARIANT=$(VARIANT): choose cpu or gpu" >&2; exit 2 ;; esac; \
	engine=$$(for e in $(ENGINE) docker podman; do command -v $$e >/dev/null && $$e info >/dev/null 2>&1 && { echo $$e; break; }; done); \
	if [ -z "$$engine" ]; then echo "make image: no working container engine here (neither docker nor podman answers 'info'); make rootfs builds the same install without one (docs/container.md)" >&2; exit 1; fi; \
	set -x; $$engine build --build-arg RAY_VERSION=$(RAY_VERSION) --build-arg RAY_VARIANT=$(VARIANT) -t $(IMAGE_TAG) .

# Without a container engine (as root): the image's install in a Debian chroot packed as an OCI layout, and a smoke
# test that serves an agent from inside it (deploy/rootfs/build.sh, smoke.sh; docs/container.md).
ROOTFS ?= /var/tmp/rlportfolio-rootfs
rootfs:
	deploy/rootfs/build.sh $(ROOTFS)

rootfs-smoke:
	deploy/rootfs/smoke.sh $(ROOTFS)/rootfs

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
