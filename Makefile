# vipkeeper: build, lab and test entry points.
#   make up      set up, build what is missing, start the Compose lab, wait for the VIP, summarise
#   make test    set up, lint, type checks, unit tests, then two lanes side by side (mk/test.mk):
#                netns tests, set-up, a 2-minute soak and the Docker lab suites on this host, and
#                the kernel suite in a QEMU guest; JUnit XML and timelines land in artifacts/
#   make deps    the set-up step alone (mk/deps.mk: Debian packages, .venv, Compose plugin); every
#                suite target depends on it, and so must any target added in mk/<area>.mk
#   make down | logs | clean

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
ARTIFACTS ?= artifacts
PYTEST_FLAGS ?=
LINT_PATHS := src harness tests bench deps

.PHONY: help lint typecheck unit netns test-fast up down logs clean

help:
	@echo "make up     start the LVS-DR lab and show who holds the VIP"
	@echo "make test   lint, types, unit, then netns, set-up, soak, lab, workshop and the kernel guest (artifacts/: JUnit XML, plots)"
	@echo "make down   stop the lab;  make logs: follow its logs;  make clean: images and artifacts too"
	@echo "make deps   the set-up step alone (Debian packages, .venv, Compose plugin); make lock: re-pin"

include mk/deps.mk

lint: deps
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/lint-imports --no-cache

typecheck: deps
	$(VENV)/bin/mypy

$(ARTIFACTS):
	mkdir -p $@

unit: deps | $(ARTIFACTS)
	$(PYTEST) tests/unit --junitxml=$(ARTIFACTS)/junit-unit.xml $(PYTEST_FLAGS)

# Network-namespace tests need root: real daemons on veth and bridges, and real keepalived.
netns: deps | $(ARTIFACTS)
	$(PYTEST) tests/netns --junitxml=$(ARTIFACTS)/junit-netns.xml $(PYTEST_FLAGS)

test-fast: lint typecheck unit

include mk/lab.mk
include mk/hardening.mk
include mk/workshop.mk
include mk/kernel.mk
include mk/test.mk

clean: clean-lab
	rm -rf $(ARTIFACTS) images/.build
