# Two commands on a fresh machine: `make demo` and `make test` (both create .venv if needed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(BIN)/python -m experiments.mnist_seed

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2  # two workers: compilation is mostly single-threaded

clean:
	rm -rf $(VENV) runs build *.egg-info
