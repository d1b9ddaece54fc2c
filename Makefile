# geventp2p developer commands.  Everything runs inside .venv, created on demand.
PY      ?= python3
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.geventp2p-installed
PYTEST_ARGS ?=

.PHONY: all venv install build test test-speedups test-pure bench bench-compare demo proto clean

all: test

$(PYTHON):
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip setuptools wheel

# Editable install with the test extras; the build also compiles the Cython hot paths.
$(STAMP): pyproject.toml setup.py | $(PYTHON)
	$(PYTHON) -m pip install -q 'Cython>=3.0' 'setuptools>=77' wheel
	$(PYTHON) -m pip install -q --no-build-isolation -e '.[test]'
	touch $(STAMP)

venv install: $(STAMP)

# (Re)compile the extensions in place after editing _speedups/*.py or *.pxd.
build: $(STAMP)
	$(PYTHON) setup.py -q build_ext --inplace

# The whole suite, twice: compiled hot paths required, then everything forced pure.
test: build
	@echo "=== geventp2p suite, build: cython (GEVENTP2P_REQUIRE_SPEEDUPS=1) ==="
	GEVENTP2P_REQUIRE_SPEEDUPS=1 $(PYTHON) -m geventp2p._speedups
	GEVENTP2P_REQUIRE_SPEEDUPS=1 $(PYTHON) -m pytest $(PYTEST_ARGS)
	@echo "=== geventp2p suite, build: python (GEVENTP2P_PURE_PYTHON=1) ==="
	GEVENTP2P_PURE_PYTHON=1 $(PYTHON) -m geventp2p._speedups
	GEVENTP2P_PURE_PYTHON=1 $(PYTHON) -m pytest $(PYTEST_ARGS)

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

# Regenerate the committed protobuf modules from geventp2p/pb/*.proto.
proto: $(STAMP)
	$(PYTHON) -m pip install -q 'grpcio-tools>=1.60'
	$(PYTHON) -m grpc_tools.protoc -I geventp2p/pb --python_out=geventp2p/pb geventp2p/pb/*.proto

clean:
	rm -rf build *.egg-info _speedups/*.so _speedups/*.c
