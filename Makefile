# gomp: build, demo, tests and benchmarks. Everything runs in a private venv
# (VENV) made with the interpreter PY, with gomp installed by `pip install .`.
PY ?= python3
VENV ?= .venv
VPY := $(abspath $(VENV))/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all install demo test test-newer test-go test-py test-asan test-suite test-clients test-cpython lint lint-c lint-py provenance bench bench-compare cluster-deps fuzz soak clean wheels test-wheels test-wheels-quick

all: install

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check "pytest>=7" setuptools

# Reinstalls every time: go build and the C compiler are incremental.
install: $(VENV)/bin/python
	$(VPY) -m pip install -q --disable-pip-version-check .

demo: install
	$(VPY) examples/demo.py

# CLIENTS=0 leaves out test-clients (it needs PyPI the first time).
CLIENTS ?= 1
test: lint-c lint-py test-go test-py test-asan test-suite $(if $(filter 1,$(CLIENTS)),test-clients) test-newer

# CPython 3.14 and 3.15 (Debian's, in a Debian-unstable chroot made once by
# .ci/sid-pythons.sh and reused): gomp's own tests and CPython's suite on each,
# in venvs .venv-3.14 / .venv-3.15. Needs root (chroot, mount); without it the
# target says so and does nothing.
NEWER ?= 3.14 3.15
test-newer:
	@if [ "$$(id -u)" != 0 ]; then echo "test-newer: skipped: CPython $(NEWER) run in a chroot, which needs root"; exit 0; fi; \
	.ci/sid-pythons.sh ensure && \
	for v in $(NEWER); do \
		echo "== CPython $$v"; \
		.ci/sid-pythons.sh run "make test-py test-suite PY=/usr/bin/python$$v VENV=.venv-$$v SUITE_TIMEOUT=$(SUITE_TIMEOUT)" || exit 1; \
	done

# Wheels (tools/wheels.py): the sdist and manylinux_2_17 x86_64 wheels for
# CPython 3.10-3.15 in dist/, built with zig's C compiler for glibc 2.17 (from
# PyPI, in .venv-wheels-tools), the Go core built once for all; 3.14 and 3.15
# in the chroot of test-newer (so only with root; without it, 3.10-3.13).
# test-wheels installs each wheel of dist/ into a fresh venv of its Python with
# no Go and no C compiler on PATH and runs `python -m gomp --check`, the demo
# and gomp's tests from the installed wheel (tests_py/test_wheels.py, with
# tools/wheel_check.py): all of them (about 4 min a Python here), or those of
# WHEEL_TESTS. test-wheels-quick: a fresh build, and a test file for each part
# of gomp (about 1.5 min a Python; 8 min in all with the build). Not in make
# test yet: CI's time with it has not been measured.
WHEEL_VERSIONS ?= 3.10 3.11 3.12 3.13 $(if $(filter 0,$(shell id -u)),3.14 3.15)
WHEEL_TESTS ?=
WHEEL_QUICK_TESTS := test_wheels_cli.py test_core.py test_connection.py test_queues.py \
	test_sync.py test_pool.py test_pth.py test_spawn_exec.py test_shared.py test_process.py
wheels:
	$(PY) tools/wheels.py --versions $(WHEEL_VERSIONS)

test-wheels: $(VENV)/bin/python
	GOMP_TEST_WHEELS="$(WHEEL_VERSIONS)" GOMP_WHEEL_TESTS="$(WHEEL_TESTS)" \
		$(VPY) -m pytest -q -s tests_py/test_wheels.py

test-wheels-quick: wheels
	$(MAKE) --no-print-directory test-wheels WHEEL_TESTS="$(WHEEL_QUICK_TESTS)"

# Style checks, both in make test: C with clang-format (.clang-format),
# Python with ruff ([tool.ruff] in pyproject.toml; ruff is installed into the
# venv).
C_SOURCES := $(wildcard pybind/ext/*.c pybind/ext/*.h pybind/*.h)
CLANG_FORMAT ?= clang-format

# Pinned: a newer ruff may format differently and fail a run by itself.
RUFF_VERSION := 0.17.6

lint: lint-c lint-py

lint-c:
	$(CLANG_FORMAT) --dry-run -Werror $(C_SOURCES)

lint-py: $(VENV)/bin/python
	@test "$$($(VPY) -m ruff --version 2>/dev/null)" = "ruff $(RUFF_VERSION)" || \
		$(VPY) -m pip install -q --disable-pip-version-check ruff==$(RUFF_VERSION)
	$(VPY) -m ruff check python tests_py
	$(VPY) -m ruff format --check python tests_py

test-go:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	go vet ./...
	go test -race -count=1 ./...

# gomp.cluster's tests (tests_py/test_cluster.py) need Dask, pinned here and
# installed from PyPI into the venv; without it they are skipped, saying why.
CLUSTER_PINS := dask==2026.8.0 distributed==2026.8.0
cluster-deps: $(VENV)/bin/python
	$(VPY) -m pip install -q --disable-pip-version-check $(CLUSTER_PINS) || \
		echo "(dask could not be installed: tests_py/test_cluster.py is skipped)"

test-py: install cluster-deps
	$(VPY) -m pytest -q tests_py

# gomp's own tests against an AddressSanitizer + UndefinedBehaviorSanitizer
# build of the C extension (GOMP_SANITIZE=1, see setup.py; the Go core is
# built with go build -asan), in its own venv so the normal build is
# untouched. Fails on a failing test and on any sanitizer report, in this
# process or in any child (fork, spawn, forkserver, pool workers, manager
# servers): each report goes to a file under ASAN_LOGS and the run fails if
# one exists, because a report in a child only kills that child, which a
# test may tolerate (or the child may be a daemon nobody waits for).
#  - Built with clang (ASAN_CC; Debian: clang-19 and libclang-rt-19-dev),
#    not gcc 12: gcc 12's ASan runtime does not hold its allocator's locks
#    across fork() (fixed in LLVM 18, llvm/llvm-project#75290), so a child
#    forked while another thread of the parent was inside malloc could wait
#    forever (1 run in 30 of a fork ProcessPoolExecutor here; none in 260
#    with clang 19's runtime). gcc also puts UBSan in a second runtime whose
#    reports ignore log_path and stay on stderr; clang's ASan runtime has
#    UBSan inside and writes both kinds of report to log_path.
#  - The interpreter is not built with ASan, so the runtime must be the first
#    library loaded: LD_PRELOAD. Children inherit it with the environment:
#    fork copies the process, and spawn/forkserver exec sys.executable with
#    our environ.
#  - detect_leaks=0: LeakSanitizer would report the many allocations a
#    CPython process keeps to the end on purpose (interned strings, static
#    types, module state), none of them gomp's, and cannot see leaked Python
#    objects (pymalloc's arenas are mmap()ed); gomp's leaks are tested by
#    counting (tests_py/test_libs_leaks.py).
#  - allow_user_segv_handler=1: the Go runtime installs its own SIGSEGV,
#    SIGBUS and SIGFPE handlers (a nil dereference in Go code becomes a
#    panic the core recovers) and forwards a fault outside Go to the handler
#    it replaced, ASan's, which reports it as usual. Without it ASan keeps
#    Go from installing them and a recoverable Go panic kills the process.
#  - abort_on_error=1 and -fno-sanitize-recover: the first report ends the
#    process (with SIGABRT, so no exit status hides it).
#  - build/sanitize is removed first: setuptools does not recompile an object
#    that is newer than its sources, whatever compiler or flags made it.
#  - Left out: test_libs_clients.py (third-party suites in the venv of
#    make test-clients, which is not sanitized) and test_build.py (it builds
#    fresh unsanitized copies with pip, so no sanitized code runs; make
#    test-py runs it).
ASAN_CC ?= clang-19
ASAN_VENV ?= .venv-asan
ASAN_VPY := $(abspath $(ASAN_VENV))/bin/python
ASAN_LOGS ?= $(abspath build/asan-logs)
ASAN_RUNTIME = $(shell $(ASAN_CC) -print-file-name=libclang_rt.asan-$(shell uname -m).so 2>/dev/null)
ASAN_PYTEST_ARGS ?= -q -p no:cacheprovider -m "not clients" \
	--ignore=tests_py/test_libs_clients.py --ignore=tests_py/test_build.py tests_py
test-asan:
	@case "$(ASAN_RUNTIME)" in /*) ;; *) echo "test-asan: needs $(ASAN_CC) and its ASan runtime" \
		"(Debian: apt-get install --no-install-recommends clang-19 libclang-rt-19-dev)"; exit 1;; esac
	test -x $(ASAN_VPY) || $(PY) -m venv $(ASAN_VENV)
	$(ASAN_VPY) -m pip install -q --disable-pip-version-check "pytest>=7" setuptools
	rm -rf build/sanitize
	CC=$(ASAN_CC) GOMP_SANITIZE=1 $(ASAN_VPY) -m pip install -q --disable-pip-version-check .
	rm -rf $(ASAN_LOGS) && mkdir -p $(ASAN_LOGS)
	@rc=0; LD_PRELOAD="$(ASAN_RUNTIME)" \
		ASAN_OPTIONS=detect_leaks=0:allow_user_segv_handler=1:abort_on_error=1:log_path=$(ASAN_LOGS)/report \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(ASAN_VPY) -m pytest $(ASAN_PYTEST_ARGS) || rc=$$?; \
	if [ -n "$$(ls -A $(ASAN_LOGS))" ]; then \
		for f in $(ASAN_LOGS)/*; do echo "== $$f"; cat "$$f"; done; \
		echo "test-asan: sanitizer reports above (files in $(ASAN_LOGS))"; exit 1; \
	fi; \
	exit $$rc

# CPython's own multiprocessing test suite against gomp, for fork, spawn and
# forkserver, plus test_multiprocessing_main_handling. Fails on any test that
# fails but is not in tests_py/cpython/expected_failures-<X.Y>.txt, and on any
# listed test that passes. SUITE_TIMEOUT: seconds before the watchdog kills a
# hanging test.
SUITE_TIMEOUT ?= 90
SUITE_ARGS ?=
test-suite: install
	$(VPY) tests_py/cpython/run_suite.py --python $(VPY) --timeout $(SUITE_TIMEOUT) $(SUITE_ARGS)

# Real clients (tests_py/test_libs_clients.py): joblib's test_parallel and
# test_memmapping and pebble's suite, with the stdlib and then with
# GOMP_AS_MULTIPROCESSING=1, in their own venv with pinned versions from PyPI.
CLIENTS_VENV ?= .venv-clients
CLIENT_PINS := joblib==1.6.0 pebble==5.2.3 numpy==2.4.6 threadpoolctl==3.8.0 pytest-timeout==2.4.0 "pytest>=7"
PEBBLE_SRC := $(CLIENTS_VENV)/src/pebble-5.2.3
test-clients: install
	test -x $(CLIENTS_VENV)/bin/python || $(PY) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/python -m pip install -q --disable-pip-version-check $(CLIENT_PINS)
	$(CLIENTS_VENV)/bin/python -m pip install -q --disable-pip-version-check .
	test -d $(PEBBLE_SRC)/test || { \
		$(CLIENTS_VENV)/bin/python -m pip download -q --disable-pip-version-check --no-deps \
			--no-binary :all: -d $(CLIENTS_VENV)/src pebble==5.2.3 && \
		tar xzf $(CLIENTS_VENV)/src/pebble-5.2.3.tar.gz -C $(CLIENTS_VENV)/src; }
	GOMP_CLIENTS_VENV=$(abspath $(CLIENTS_VENV)) GOMP_CLIENTS_PEBBLE_TESTS=$(abspath $(PEBBLE_SRC))/test \
		$(VPY) -m pytest -q -s -m clients tests_py/test_libs_clients.py

# The same against another installed CPython, in its own venv .venv-<X.Y>:
#   make test-cpython PY=/root/.pyenv/versions/3.13.0/bin/python3
test-cpython:
	@test "$(origin PY)" = "command line" || { echo "usage: make test-cpython PY=/path/to/python"; exit 2; }
	@ver=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])') && \
	$(MAKE) --no-print-directory install PY=$(PY) VENV=.venv-$$ver && \
	.venv-$$ver/bin/python tests_py/cpython/run_suite.py --python .venv-$$ver/bin/python \
		--timeout $(SUITE_TIMEOUT) $(SUITE_ARGS)

# Which lines of python/gomp also stand in CPython's Lib/multiprocessing (any
# CPython on the machine); test_provenance.py runs the same check in make test.
provenance:
	$(PY) tests_py/tools/provenance_check.py --show

bench: install
	$(VPY) tests_py/bench/bench_conn.py
	$(VPY) tests_py/bench/bench_listener.py
	$(VPY) tests_py/bench/bench_managers.py
	$(VPY) tests_py/bench/bench_process.py
	$(VPY) tests_py/bench/bench_alias.py
	$(VPY) tests_py/bench/bench_latency.py
	$(VPY) -m pip install -q --disable-pip-version-check faster-fifo || echo "(faster-fifo not installed: queue benchmark without it)"
	$(VPY) tests_py/bench/bench_queues.py
	$(VPY) tests_py/bench/bench_sync.py
	$(VPY) tests_py/bench/bench_shared.py
	$(VPY) tests_py/bench/bench_pool.py
	$(MAKE) --no-print-directory cluster-deps
	$(VPY) -m pip install -q --disable-pip-version-check ray || echo "(ray not installed: cluster benchmark without it)"
	$(VPY) tests_py/bench/bench_cluster.py

# Two builds of gomp through the same benchmarks, alternated, each against the
# stdlib (tests_py/bench/compare_builds.py): BEFORE= a python that has the
# older build installed, e.g. the .venv of an older checkout.
bench-compare: install
	$(VPY) tests_py/bench/compare_builds.py --before $(BEFORE) --after $(VPY)

# A kill storm over every object type and start method (tests_py/soak.py):
# 10 minutes unless SOAK_SECONDS says otherwise.
SOAK_SECONDS ?= 600
soak: install
	SOAK_SECONDS=$(SOAK_SECONDS) $(VPY) tests_py/soak.py

clean:
	rm -rf build dist *.egg-info python/*.egg-info $(VENV) .venv-3.* $(CLIENTS_VENV) $(ASAN_VENV)
