# geventp2p developer commands.  Everything runs inside .venv, created on demand.
PY      ?= python3
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.geventp2p-installed
PYTEST_ARGS ?=
DOCS_OUT ?= build/docs

# The public surface that `make typecheck` holds to mypy --strict.
TYPECHECK_STRICT := \
	geventp2p/__init__.py \
	geventp2p/exceptions.py \
	geventp2p/defaults.py \
	geventp2p/host/basic.py \
	geventp2p/net/stream.py \
	geventp2p/net/swarm.py \
	geventp2p/net/swarm_conn.py \
	geventp2p/core/peer.py \
	geventp2p/core/addr.py \
	geventp2p/host/eventbus.py

.PHONY: all venv install build test test-stress test-speedups test-pure bench bench-compare demo proto docs typecheck dist clean

all: test

$(PYTHON):
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip setuptools wheel

# Editable install with the test and metrics extras (tests/test_metrics.py needs prometheus_client); the build also compiles the Cython hot paths.
$(STAMP): pyproject.toml setup.py | $(PYTHON)
	$(PYTHON) -m pip install -q 'Cython>=3.0' 'setuptools>=77' wheel
	$(PYTHON) -m pip install -q --no-build-isolation -e '.[test,metrics]'
	touch $(STAMP)

venv install: $(STAMP)

# (Re)compile the extensions in place after editing _speedups/*.py or *.pxd.
build: $(STAMP)
	$(PYTHON) setup.py -q build_ext --inplace

# The API docs (warnings are errors), then the whole suite twice: compiled hot paths
# required, then everything forced pure.  The packaging test (marker `packaging`) builds
# and installs both builds itself, so it runs in the first pass only.
test: build docs typecheck
	@echo "=== geventp2p suite, build: cython (GEVENTP2P_REQUIRE_SPEEDUPS=1) ==="
	GEVENTP2P_REQUIRE_SPEEDUPS=1 $(PYTHON) -m geventp2p._speedups
	GEVENTP2P_REQUIRE_SPEEDUPS=1 $(PYTHON) -m pytest $(PYTEST_ARGS)
	@echo "=== geventp2p suite, build: python (GEVENTP2P_PURE_PYTHON=1) ==="
	GEVENTP2P_PURE_PYTHON=1 $(PYTHON) -m geventp2p._speedups
	GEVENTP2P_PURE_PYTHON=1 $(PYTHON) -m pytest -m "not packaging" $(PYTEST_ARGS)

# The whole suite (both builds) with STRESS_HOGS busy processes beside it (default 2, one
# per core here): the suite must hold on a busy machine.  The hogs die with the target.
STRESS_HOGS ?= 2
test-stress: build
	@set -e; pids=""; \
	for i in $$(seq $(STRESS_HOGS)); do $(PYTHON) -c 'while True: pass' & pids="$$pids $$!"; done; \
	trap 'kill $$pids 2>/dev/null' EXIT INT TERM; \
	echo "=== stress: $(STRESS_HOGS) CPU hogs ($$pids) beside the suite ==="; \
	GEVENTP2P_REQUIRE_SPEEDUPS=1 $(PYTHON) -m pytest -m "not packaging" $(PYTEST_ARGS); \
	GEVENTP2P_PURE_PYTHON=1 $(PYTHON) -m pytest -m "not packaging" $(PYTEST_ARGS)

test-speedups: build
	GEVENTP2P_REQUIRE_SPEEDUPS=1 $(PYTHON) -m pytest $(PYTEST_ARGS)

test-pure: build
	GEVENTP2P_PURE_PYTHON=1 $(PYTHON) -m pytest $(PYTEST_ARGS)

bench: build
	$(PYTHON) -m pytest bench --benchmark-only --benchmark-sort=name $(PYTEST_ARGS)

# Side-by-side benchmark against js-libp2p and py-libp2p (installs the peers on first use).
bench-compare: build
	$(PYTHON) -m pip install -q 'matplotlib>=3.7' 'psutil>=5.9'
	$(PYTHON) -m bench.compare $(BENCH_ARGS)

demo: build
	$(VENV)/bin/geventp2p demo

# API reference (Sphinx autodoc) from docs/api into $(DOCS_OUT); warnings are errors.
# -E re-reads every page, because autodoc content changes with the code, not the .rst.
docs: $(STAMP)
	$(PYTHON) -m sphinx -W --keep-going -E -q -b html -d $(DOCS_OUT)/.doctrees docs/api $(DOCS_OUT)/html
	@echo "API docs: $(DOCS_OUT)/html/index.html"

# mypy: default mode over the package, --strict over the public surface.  Both run,
# the target fails if either does.  (Not part of `make test` yet.)  mypy cannot follow
# the package-dir mapping of _speedups/ to geventp2p._speedups, so it checks a tree of
# symlinks in $(TYPECHECK_ROOT) that has the installed layout; paths print as in the
# checkout (geventp2p/...), the hot paths as geventp2p/_speedups/_py_<name>.py.
TYPECHECK_ROOT := build/typecheck
typecheck: $(STAMP)
	@rm -rf $(TYPECHECK_ROOT) && mkdir -p $(TYPECHECK_ROOT)/geventp2p
	@for f in geventp2p/*; do ln -s "$(CURDIR)/$$f" "$(TYPECHECK_ROOT)/$$f"; done
	@ln -s "$(CURDIR)/_speedups" "$(TYPECHECK_ROOT)/geventp2p/_speedups"
	@rc=0; cd $(TYPECHECK_ROOT) && \
	echo "=== mypy geventp2p ===" && \
	{ $(CURDIR)/$(PYTHON) -m mypy --config-file $(CURDIR)/pyproject.toml geventp2p || rc=1; } && \
	echo "=== mypy --strict (public surface) ===" && \
	{ $(CURDIR)/$(PYTHON) -m mypy --config-file $(CURDIR)/pyproject.toml --strict --follow-imports=silent $(TYPECHECK_STRICT) || rc=1; }; \
	exit $$rc

# sdist and wheel into dist/ (the wheel is built from the sdist).
dist: $(STAMP)
	$(PYTHON) -m build --outdir dist .

# Regenerate the committed protobuf modules from geventp2p/pb/*.proto.
proto: $(STAMP)
	$(PYTHON) -m pip install -q 'grpcio-tools>=1.60'
	$(PYTHON) -m grpc_tools.protoc -I geventp2p/pb --python_out=geventp2p/pb --pyi_out=geventp2p/pb geventp2p/pb/*.proto

clean:
	rm -rf build dist *.egg-info _speedups/*.so _speedups/*.c
