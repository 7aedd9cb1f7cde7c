# vats-bridge: every target sets up what it needs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
# Stamps of what is installed, named after pyproject.toml's checksum so that an edit reinstalls:
# $(DEPS) is the runtime and the proto compiler (all `make run` needs), $(DEPS)-<target> that
# target's tools on top.
DEPS := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
EXTRAS_test := test,browser
EXTRAS_lint := lint
EXTRAS_bench := bench
PROTOS := $(wildcard proto/telephony/v1/*.proto)
PROTO_STAMP := telephony/.generated

.DEFAULT_GOAL := help
.PHONY: help install proto run test lint bench clean

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(DEPS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[build]'
	rm -f $(VENV)/.installed-*; touch $@

$(DEPS)-%: $(DEPS)
	$(PIP) -e '.[build,$(EXTRAS_$*)]'
	touch $@

install: $(DEPS)-test $(DEPS)-lint $(DEPS)-bench ## Create the virtualenv with everything: runtime, test, lint and bench tools

$(PROTO_STAMP): $(DEPS) $(PROTOS)
	rm -rf telephony && mkdir -p telephony/v1
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. $(PROTOS)
	touch telephony/__init__.py telephony/v1/__init__.py $@

proto: $(PROTO_STAMP) ## Generate the Python gRPC code from proto/ (never edited by hand)

run: $(DEPS) $(PROTO_STAMP) ## Start core and gateway on the SQLite store in ./data with the demo seed (Ctrl-C stops both)
	$(PY) -m vats_cli.run

test: $(DEPS)-test $(PROTO_STAMP) ## Install, build the protos and run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(DEPS)-lint $(PROTO_STAMP) ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(DEPS)-bench $(PROTO_STAMP) ## Run the benchmarks and write BENCHMARKS.md
	$(PY) -m bench

clean: ## Remove the virtualenv, generated code and local data
	rm -rf $(VENV) telephony data .pytest_cache .mypy_cache .ruff_cache
