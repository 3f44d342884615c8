# vipkeeper: build, lab and test entry points.
#   make up      build what is missing, start the Compose lab, wait for the VIP, print a summary
#   make test    lint, type checks, unit tests, netns tests, then the lab tests (brings the lab up
#                and down itself); JUnit XML and timelines land in artifacts/
#   make down | logs | clean

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
ARTIFACTS ?= artifacts
PYTEST_FLAGS ?=
LINT_PATHS := src harness tests bench

.PHONY: help venv lint typecheck unit netns test-fast test up down logs clean

help:
	@echo "make up     start the LVS-DR lab and show who holds the VIP"
	@echo "make test   lint, types, unit, netns and lab tests (artifacts/ gets JUnit XML and plots)"
	@echo "make down   stop the lab;  make logs: follow its logs;  make clean: images and artifacts too"

# The virtualenv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

typecheck: venv
	$(VENV)/bin/mypy

$(ARTIFACTS):
	mkdir -p $@

unit: venv | $(ARTIFACTS)
	$(PYTEST) tests/unit --junitxml=$(ARTIFACTS)/junit-unit.xml $(PYTEST_FLAGS)

# Network-namespace tests need root: real daemons on veth and bridges, and real keepalived.
netns: venv | $(ARTIFACTS)
	$(PYTEST) tests/netns --junitxml=$(ARTIFACTS)/junit-netns.xml $(PYTEST_FLAGS)

test-fast: lint typecheck unit

test: lint typecheck unit netns test-kernel test-lab

include mk/lab.mk
include mk/kernel.mk

clean: clean-lab
	rm -rf $(ARTIFACTS) images/.build
