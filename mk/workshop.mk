# mk/workshop.mk - the workshop: live view, instructor faults, exercises and their checker.
#
# Included from the top-level Makefile.  Every target here drives the running lab (`make up`)
# through `python -m harness` (harness/__main__.py).
#
#   watch          the live view: directors, the client's ARP entry, HTTP from the client,
#                  real-server health, the last transitions (Ctrl-C ends it)
#   fault          without NAME: list the faults;  NAME=<fault> [NODE=<service>] [PRIORITY=<n>]:
#                  apply one and record it (artifacts/workshop/state/)
#   heal           undo every fault, newest first; wait for and grade the start state
#   start-state    grade the lab against its start state (dir1 MASTER, every server answering)
#   timeline       NAME=<fault> [NODE=...]: apply a fault while recording, then plot it
#   exercise       list the exercises (docs/workshop/), one line each
#   check          EX=<n>: grade exercise n step by step
#   test-workshop  the workshop suite (tests/workshop): exercises, faults, the live view

WORKSHOP_PY := $(VENV)/bin/python -m harness
NAME ?=
NODE ?=
PRIORITY ?=
EX ?=
WATCH_SECONDS ?=

.PHONY: watch fault heal start-state timeline exercise check test-workshop

# WATCH_SECONDS=n stops it after n seconds.
watch: venv
	$(WORKSHOP_PY) watch $(if $(WATCH_SECONDS),--seconds $(WATCH_SECONDS))

fault: venv
	@if [ -z "$(NAME)" ]; then $(WORKSHOP_PY) faults; \
	else $(WORKSHOP_PY) fault $(NAME) $(NODE) $(if $(PRIORITY),PRIORITY=$(PRIORITY)); fi

heal: venv
	$(WORKSHOP_PY) heal

start-state: venv
	$(WORKSHOP_PY) start-state

timeline: venv
	@test -n "$(NAME)" || { echo "usage: make timeline NAME=<fault> [NODE=<service>]" >&2; exit 2; }
	$(WORKSHOP_PY) timeline $(NAME) $(NODE) $(if $(PRIORITY),PRIORITY=$(PRIORITY))

exercise: venv
	@$(WORKSHOP_PY) exercises

check: venv
	@test -n "$(EX)" || { echo "usage: make check EX=<n>   (make exercise lists them)" >&2; exit 2; }
	@$(WORKSHOP_PY) check $(EX)

# Brings the lab up if it is not running (images first) and down at the end, like test-lab.
test-workshop: images
	@mkdir -p $(ARTIFACTS)/workshop
	LAB_TEARDOWN=1 $(PYTEST) tests/workshop --junitxml=$(ARTIFACTS)/workshop/junit.xml \
	    $(PYTEST_FLAGS); rc=$$?; $(MAKE) -f mk/lab.mk down; exit $$rc
