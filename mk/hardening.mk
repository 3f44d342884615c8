# mk/hardening.mk - the chaos soak (and, with it, what hardens the daemon against the unexpected).
#
# Included from the top-level Makefile.
#
#   soak        vipkeeper and keepalived side by side under the same seeded random faults,
#               DURATION minutes each (default 10), at the same time on separate LANs
#               (SOAK_SERIAL=1: one after the other); SEED=<n> replays a sequence;
#               FAULTS=loss,partition draws from those kinds only; figures to
#               $(ARTIFACTS)/soak.json
#   fuzz        coverage-guided fuzzing of every parser, FUZZ_SECONDS each (see below)
#   soak-lab    the chaos soak over the Compose lab (bench/soak_lab.py): seeded faults on directors
#               and real servers under HTTP load for DURATION minutes, under the machine-wide
#               lab lock; figures to $(ARTIFACTS)/soak-lab.json
#   soak-short  the soak suite (tests/soak): vipkeeper alone for SOAK_SECONDS (120), part of
#               `make test`; SOAK_SEED=<n> replays
#
# soak and soak-short need root, iproute2 and nftables (soak also keepalived); fuzz needs atheris,
# installed into the virtualenv on first use (the `fuzz` extra).

DURATION ?= 10
SEED ?=
FAULTS ?=
SOAK_SERIAL ?=
SOAK_SECONDS ?= 120
SOAK_SEED ?=
export SOAK_SECONDS SOAK_SEED

.PHONY: soak soak-short soak-lab

soak: venv | $(ARTIFACTS)
	$(PY) bench/soak.py --minutes $(DURATION) $(if $(SEED),--seed $(SEED)) \
	    $(if $(FAULTS),--faults $(FAULTS)) $(if $(SOAK_SERIAL),,--concurrent) \
	    --json $(ARTIFACTS)/soak.json

soak-lab: images | $(ARTIFACTS)
	flock /tmp/vipkeeper-lab.lock $(PY) bench/soak_lab.py --minutes $(DURATION) \
	    $(if $(SEED),--seed $(SEED)) --json $(ARTIFACTS)/soak-lab.json

soak-short: venv | $(ARTIFACTS)
	$(PYTEST) tests/soak -s --junitxml=$(ARTIFACTS)/junit-soak.xml $(PYTEST_FLAGS)

# --- fuzzing -------------------------------------------------------------------------------------
#   fuzz        coverage-guided fuzzing (atheris) of every target in tests/fuzz/targets.py,
#               FUZZ_SECONDS (60) each; corpus in $(ARTIFACTS)/fuzz/TARGET, a failing input in
#               $(ARTIFACTS)/fuzz/crashes; prints the executions per target
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= vrrp config http

.PHONY: fuzz
fuzz: venv | $(ARTIFACTS)
	@$(PY) -c 'import atheris' 2>/dev/null || $(VENV)/bin/pip install --quiet -e '.[fuzz]'
	@rc=0; summary=""; for target in $(FUZZ_TARGETS); do \
	    $(PY) tests/fuzz/run.py $$target $(FUZZ_SECONDS) $(ARTIFACTS)/fuzz/$$target \
	        $(ARTIFACTS)/fuzz/crashes >$(ARTIFACTS)/fuzz-$$target.log 2>&1 || rc=1; \
	    runs=$$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' $(ARTIFACTS)/fuzz-$$target.log); \
	    summary="$$summary $$target=$${runs:-failed}"; \
	done; \
	echo "fuzz executions:$$summary; crashes: $$(ls $(ARTIFACTS)/fuzz/crashes | wc -l)" \
	    "(logs: $(ARTIFACTS)/fuzz-TARGET.log)"; exit $$rc
