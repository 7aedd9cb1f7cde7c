# vats-bridge: every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PROTOS := $(wildcard proto/telephony/v1/*.proto)
PROTO_STAMP := telephony/.generated

.DEFAULT_GOAL := help
.PHONY: help install proto run test lint bench clean

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## Create the virtualenv and install the project with its dev tools

$(PROTO_STAMP): $(STAMP) $(PROTOS)
	rm -rf telephony && mkdir -p telephony/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	touch telephony/__init__.py telephony/v1/__init__.py $@

proto: $(PROTO_STAMP) ## Generate the Python gRPC code from proto/ (never edited by hand)

run: $(PROTO_STAMP) ## Start core and gateway on the SQLite store in ./data with the demo seed (Ctrl-C stops both)
	$(PY) -m vats_cli.run

test: $(PROTO_STAMP) ## Install, build the protos and run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(PROTO_STAMP) ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(PROTO_STAMP) ## Run the benchmarks and write BENCHMARKS.md
	$(PY) -m bench

clean: ## Remove the virtualenv, generated code and local data
	rm -rf $(VENV) telephony data .pytest_cache .mypy_cache .ruff_cache
