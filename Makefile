# gomp: build, demo, tests and benchmarks. Everything runs in a private venv
# (VENV) made with the interpreter PY, with gomp installed by `pip install .`.
PY ?= python3
VENV ?= .venv
VPY := $(abspath $(VENV))/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all install demo test test-go test-py test-cpython bench fuzz clean

all: install

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check "pytest>=7"

# Reinstalls every time: go build and the C compiler are incremental.
install: $(VENV)/bin/python
	$(VPY) -m pip install -q --disable-pip-version-check .

demo: install
	$(VPY) examples/demo.py

test: test-go test-py

test-go:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	go vet ./...
	go test -race -count=1 ./...

test-py: install
	$(VPY) -m pytest -q tests_py

bench: install
	$(VPY) tests_py/bench/bench_conn.py
	$(VPY) tests_py/bench/bench_listener.py
	$(VPY) tests_py/bench/bench_process.py
	$(VPY) tests_py/bench/bench_latency.py
	$(VPY) -m pip install -q --disable-pip-version-check faster-fifo || echo "(faster-fifo not installed: queue benchmark without it)"
	$(VPY) tests_py/bench/bench_queues.py
	$(VPY) tests_py/bench/bench_sync.py

clean:
	rm -rf build dist *.egg-info python/*.egg-info $(VENV)
