# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv if needed and
# install exactly the versions in requirements.lock / requirements-test.lock, hash-checked, so
# a new machine gets the versions the suite passed on (docs/versions.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Two workers: compilation is mostly single-threaded. --dist loadfile keeps a file's tests in
# one worker, so its module fixtures are built and its programs compiled once, not twice
# (the trained-CNN checks share one file, tests/attribution/test_trained.py, for the same reason).
PYTEST_ARGS ?= -n 2 --dist loadfile
# The suite's shapes are tiny, so its time is XLA compile time: with XLA's optimisation passes
# off, compiling takes about half as long, and programs compute the same values (the passes
# reorder float work, which every tolerance allows). `make test TEST_XLA_OPT=1` keeps them on.
TEST_XLA_OPT ?= 0
TEST_ENV = JAX_DISABLE_MOST_OPTIMIZATIONS=$(if $(filter 1,$(TEST_XLA_OPT)),0,1) \
	JAX_COMPILATION_CACHE_DIR=$(CURDIR)/$(TEST_CACHE) JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
# XLA CPU's older loop emitters (its fusion emitters off), codegen in one piece and a
# single-threaded runtime compile the suite's small programs in about two thirds of the time
# (tests/attribution/test_model_family.py alone: 110 s -> 65 s) and keep each worker on one
# core, so two workers stop contending for two cores. Values are XLA's either way (every
# tolerance allows the reordered float work); TEST_XLA_OPT=1 keeps XLA's defaults. A jaxlib
# that does not know one of these flags (XLA aborts on an unknown flag) is tested without
# them, with a line saying so.
TEST_XLA_FLAGS := --xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1 \
	--xla_cpu_multi_thread_eigen=false
# $(call RUN_TESTS,python): the suite on that interpreter, with TEST_ENV and the flags above.
RUN_TESTS = flags=""; if [ "$(TEST_XLA_OPT)" != 1 ]; then \
	if XLA_FLAGS="$(TEST_XLA_FLAGS)" $(1) -c 'import jax; jax.numpy.zeros(1)' >/dev/null 2>&1; \
	then flags="$(TEST_XLA_FLAGS)"; \
	else echo "make: this jaxlib does not take $(TEST_XLA_FLAGS); testing with XLA's own" >&2; fi; fi; \
	echo "XLA_FLAGS=\"$$flags\" $(TEST_ENV) $(1) -m pytest $(PYTEST_ARGS)"; \
	XLA_FLAGS="$$flags $${XLA_FLAGS:-}" $(TEST_ENV) $(1) -m pytest $(PYTEST_ARGS)
# The two workers compile many of the same programs (the reference CNN's analyses appear in
# most files): a compilation cache shared between them, emptied before every run so no run
# reuses another's programs, cut a quiet 2-core run from 6 min 29 s to 5 min 54 s.
TEST_CACHE := .jax-test-cache
# The lock tool and the newest-versions check get venvs of their own so .venv stays the lock.
LOCK_VENV := .venv-lock
UV_VERSION := 0.13.9
LATEST := .venv-latest
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test install install-test install-peers check-python lock test-latest latest-python clean

# Runs before any venv or pip command, so a Python that cannot work stops with one sentence
# instead of an error deep inside pip. Debian splits ensurepip (what `-m venv` needs) into
# python3.X-venv, hence the second import.
CHECK_PYTHON = \
	ver=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	case "$$ver" in [0-9]*.[0-9]*) ;; *) \
		echo "make: '$(PYTHON)' does not run as Python; jaxviz needs Python 3.11 or newer with its venv module: install one (Debian/Ubuntu: apt install python3.11 python3.11-venv) or name one, e.g. make demo PYTHON=python3.12." >&2; \
		exit 1;; esac; \
	major=$${ver%%.*}; minor=$${ver\#*.}; \
	if [ "$$major" -lt 3 ] || { [ "$$major" -eq 3 ] && [ "$$minor" -lt 11 ]; }; then \
		echo "make: $(PYTHON) is Python $$ver but jaxviz needs 3.11 or newer: install it with its venv module (Debian/Ubuntu: apt install python3.11 python3.11-venv) and run e.g. make demo PYTHON=python3.11." >&2; \
		exit 1; fi; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || { \
		echo "make: $(PYTHON) (Python $$ver) has no venv module: install it (Debian/Ubuntu: apt install python$$ver-venv) and run make again." >&2; \
		exit 1; }

check-python:
	@$(CHECK_PYTHON)

$(BIN)/python:
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(PIP) install --quiet --require-hashes -r requirements.lock
	$(PIP) install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python requirements-test.lock pyproject.toml
	$(PIP) install --quiet --require-hashes -r requirements-test.lock
	$(PIP) install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Benchmark peers (PyTorch + Captum), never needed by the suite. From PyPI, torch on Linux
# x86_64 is a multi-GB CUDA build; PyTorch's own CPU index has the CPU build of the same
# release, which then satisfies the extra's pin.
install-peers: $(VENV)/.installed
	$(PIP) install torch==2.13.0 --index-url $(TORCH_INDEX)
	$(PIP) install -e '.[peers]'

demo: $(VENV)/.installed
	$(BIN)/python -m experiments.mnist_seed

test: $(VENV)/.installed-test
	rm -rf $(TEST_CACHE)
	@$(call RUN_TESTS,$(BIN)/python)

# `make lock` keeps the pins already in the lock files and only resolves what pyproject.toml
# changed; `make lock LOCK_FLAGS=--upgrade` moves every pin to the newest allowed release
# (then run `make test` and record the versions in docs/versions.md). --universal: one lock
# for Linux, macOS and Windows, with hashes for every platform's wheels. The peers extra
# stays out: see install-peers.
UV_COMPILE = $(LOCK_VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock' --quiet $(LOCK_FLAGS)

$(LOCK_VENV)/bin/uv:
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)

# requirements.lock holds the keras and equinox extras too: the Keras recipe is a demo.
lock: $(LOCK_VENV)/bin/uv
	$(UV_COMPILE) --extra keras --extra equinox -o requirements.lock
	$(UV_COMPILE) --extra test -c requirements.lock -o requirements-test.lock

# The newest releases pyproject.toml's ranges allow, in a venv of their own made afresh, then
# the suite: a breaking release shows up here rather than in a user's bug report. Newer
# releases need a newer Python (jax >= 0.11 needs 3.12), so the default is python3.13.
# A name that does not run (not on PATH, or a pyenv shim of a version that is not active, as
# on CI machines) is looked for among pyenv's installs: $PYENV_ROOT, ~/.pyenv, /root/.pyenv.
# `make latest-python` prints the interpreter chosen; test-latest prints it too.
LATEST_PYTHON ?= python3.13
PYENV_ROOTS = $(PYENV_ROOT) $(HOME)/.pyenv /root/.pyenv
LATEST_CANDIDATES = $$(command -v $(LATEST_PYTHON) 2>/dev/null) $$(ls -d $(foreach r,$(sort \
	$(PYENV_ROOTS)),$(r)/versions/$(patsubst python%,%,$(notdir $(LATEST_PYTHON)))*/bin/$(notdir \
	$(LATEST_PYTHON))) 2>/dev/null | sort -r)
LATEST_FOUND = $(shell for p in $(LATEST_CANDIDATES); do \
	"$$p" -c "" >/dev/null 2>&1 && { echo "$$p"; break; }; done)
LATEST_BIN = $(or $(LATEST_FOUND),$(LATEST_PYTHON))

latest-python:
	@echo $(LATEST_BIN)

# pytest's failure is the target's (make exits non-zero); .ci/run reports each run's status.
test-latest:
	@echo "test-latest: LATEST_PYTHON=$(LATEST_PYTHON) -> $(LATEST_BIN)"
	@$(MAKE) --no-print-directory check-python PYTHON=$(LATEST_BIN)
	rm -rf $(LATEST)
	$(LATEST_BIN) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	$(LATEST)/bin/python -m pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/python --version
	grep -i -E '^(jax|jaxlib|flax|optax|orbax-checkpoint|numpy|scipy|matplotlib)==' $(LATEST)/versions.txt
	rm -rf $(TEST_CACHE)
	@$(call RUN_TESTS,$(LATEST)/bin/python)

clean:
	rm -rf $(VENV) $(LATEST) $(LOCK_VENV) $(TEST_CACHE) runs build *.egg-info
