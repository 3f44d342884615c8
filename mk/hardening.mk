# mk/hardening.mk - the chaos soak (and, with it, what hardens the daemon against the unexpected).
#
# Included from the top-level Makefile.
#
#   soak        vipkeeper and keepalived side by side under the same seeded random faults,
#               DURATION minutes each (default 10); SEED=<n> replays a sequence;
#               figures to $(ARTIFACTS)/soak.json
#   soak-short  the soak suite (tests/soak): vipkeeper alone for SOAK_SECONDS (120), part of
#               `make test`; SOAK_SEED=<n> replays
#
# Both need root, iproute2 and nftables; `soak` also needs keepalived.

DURATION ?= 10
SEED ?=
SOAK_SECONDS ?= 120
SOAK_SEED ?=
export SOAK_SECONDS SOAK_SEED

.PHONY: soak soak-short

soak: venv | $(ARTIFACTS)
	$(PY) bench/soak.py --minutes $(DURATION) $(if $(SEED),--seed $(SEED)) \
	    --json $(ARTIFACTS)/soak.json

soak-short: venv | $(ARTIFACTS)
	$(PYTEST) tests/soak -s --junitxml=$(ARTIFACTS)/junit-soak.xml $(PYTEST_FLAGS)
