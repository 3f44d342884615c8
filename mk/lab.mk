# mk/lab.mk - the Docker Compose LVS-DR lab: offline images, up/down, lab tests.
#
# Included from the top-level Makefile, or run alone:  make -f mk/lab.mk up
#
#   images     the set-up step (mk/deps.mk), then the base image and one per role in LAB_ROLES,
#              with no registry and no network inside `docker build` (packages and wheels are
#              fetched on the host first); each long step prints its progress (mk/step.sh)
#   up         images + start the lab + wait until the VIP answers HTTP + print a summary
#   down       stop and remove the lab (containers, networks, volumes)
#   logs       the lab's logs (LOGS_ARGS=--tail=200; LOGS_ARGS=-f to follow)
#   clean-lab  down, remove the lab images and images/.build, artifacts/lab
#   test-lab   images + pytest tests/lab (brings the lab up, tears it down at the end)
#
# Every step is guarded by a stamp file under images/.build/stamp, so re-running is cheap.
# DIRECTOR_DAEMON=keepalived runs the keepalived baseline on the directors instead of vipkeeper.

LAB_BUILD    ?= images/.build
LAB_STAMP    := $(LAB_BUILD)/stamp
LAB_PYTHON   ?= .venv/bin/python
LAB_PIP      ?= $(LAB_PYTHON) -m pip
BASE_IMAGE   ?= vipkeeper/base:bookworm
LAB_TAG      ?= lab
DIRECTOR_DAEMON ?= vipkeeper
LOGS_ARGS    ?= --tail=200
COMPOSE      := docker compose -f compose.yaml
export DIRECTOR_DAEMON

LAB_ROLES       := director realserver client prometheus
# What mk/step.sh shows of each long step (the full output goes to $(LAB_BUILD)/log/).
BASE_PROGRESS   := ^(base:|I: (Retrieving Release|Retrieving Packages|Resolving|Found|Checking|Valid Release|Unpacking the base|Configuring the base|Base system)|E:|W:)
DEBS_PROGRESS   := ^(debs:|Need to get|Fetched|Download complete|E:|W:)
BUILD_PROGRESS  := ^(Step [0-9]+/[0-9]+ :|\#[0-9]+ \[|Successfully (built|tagged)|ERROR)
DIRECTOR_DEBS   := python3 python3-venv iproute2 nftables ipvsadm tcpdump procps keepalived iputils-ping
REALSERVER_DEBS := apache2 iproute2 procps
CLIENT_DEBS     := curl python3 python3-scapy arping iproute2 procps
PROMETHEUS_DEBS := prometheus

# A stamp is only as good as the image behind it: forget stamps of images that are gone
# (`docker rmi`, a pruned engine), so the next build makes them again.
LAB_CHECK_GOALS := images up test-lab test-workshop test all
ifneq ($(if $(MAKECMDGOALS),$(filter $(LAB_CHECK_GOALS),$(MAKECMDGOALS)),default),)
$(foreach i,base $(LAB_ROLES),$(if $(shell docker image inspect \
    $(if $(filter base,$(i)),$(BASE_IMAGE),vipkeeper/$(i):$(LAB_TAG)) >/dev/null 2>&1 && echo y),,\
    $(shell rm -f $(LAB_STAMP)/image-$(i))))
endif

.PHONY: images up down logs clean-lab test-lab FORCE
FORCE:

# The set-up step (Debian packages such as debootstrap, .venv, the Compose v2 plugin) comes first.
ifeq ($(filter mk/deps.mk,$(MAKEFILE_LIST)),)
include mk/deps.mk
endif
LAB_STEP := STEP_LOG_DIR=$(LAB_BUILD)/log bash mk/step.sh

# --- base image ---------------------------------------------------------------------------------
$(LAB_STAMP)/image-base: images/base/build-base.sh images/host-apt.sh | deps
	@mkdir -p $(@D)
	@$(LAB_STEP) "image base ($(BASE_IMAGE))" -f '$(BASE_PROGRESS)' \
	    -- sh images/base/build-base.sh $(LAB_BUILD)/base $(BASE_IMAGE)
	@touch $@

# --- Debian packages, fetched on the host -------------------------------------------------------
# $(1) = role, $(2) = packages
# The package list is kept in a file rewritten only when it changes, so editing this Makefile
# does not fetch everything again.
define lab_debs
$(LAB_STAMP)/debs-$(1).list: FORCE
	@mkdir -p $$(@D)
	@echo '$(2)' | cmp -s - $$@ || echo '$(2)' >$$@
$(LAB_STAMP)/debs-$(1): $(LAB_STAMP)/image-base images/fetch-debs.sh images/host-apt.sh \
    $(LAB_STAMP)/debs-$(1).list
	@mkdir -p $$(@D)
	rm -rf $(LAB_BUILD)/root-$(1)
	@$(LAB_STEP) "debs $(1)" -f '$(DEBS_PROGRESS)' \
	    -- sh images/fetch-debs.sh $(BASE_IMAGE) $(LAB_BUILD)/root-$(1) $(LAB_BUILD)/debs/$(1) $(2)
	rm -rf $(LAB_BUILD)/root-$(1)
	@touch $$@
endef
$(eval $(call lab_debs,director,$(DIRECTOR_DEBS)))
$(eval $(call lab_debs,realserver,$(REALSERVER_DEBS)))
$(eval $(call lab_debs,client,$(CLIENT_DEBS)))
$(eval $(call lab_debs,prometheus,$(PROMETHEUS_DEBS)))

# --- wheels (vipkeeper + its dependencies), built on the host -----------------------------------
LAB_SRC := pyproject.toml $(shell find src -name '*.py' -o -name py.typed 2>/dev/null)
$(LAB_STAMP)/wheels: $(LAB_SRC) $(CONSTRAINTS) | deps
	@mkdir -p $(@D)
	rm -rf $(LAB_BUILD)/wheels
	@$(LAB_STEP) "wheels" -- $(LAB_PIP) wheel -q --no-cache-dir --progress-bar off --no-build-isolation \
	    -c $(CONSTRAINTS) . -w $(LAB_BUILD)/wheels
	@touch $@

# --- role images --------------------------------------------------------------------------------
# The build context is assembled under images/.build/ctx/ROLE: the role's files, its .debs and
# (director) the wheels.  Nothing in the Dockerfiles reaches the network.
define lab_image
$(LAB_STAMP)/image-$(1): $(LAB_STAMP)/debs-$(1) $(wildcard images/$(1)/*) $(3)
	@mkdir -p $$(@D)
	rm -rf $(LAB_BUILD)/ctx/$(1) && mkdir -p $(LAB_BUILD)/ctx/$(1)
	cp -a images/$(1)/. $(LAB_BUILD)/ctx/$(1)/
	cp -a $(LAB_BUILD)/debs/$(1) $(LAB_BUILD)/ctx/$(1)/debs
	$(if $(3),cp -a $(LAB_BUILD)/wheels $(LAB_BUILD)/ctx/$(1)/wheels)
	@$(LAB_STEP) "image $(1) (vipkeeper/$(1):$(LAB_TAG))" -f '$(BUILD_PROGRESS)' \
	    -- docker build --network none --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	    -t vipkeeper/$(1):$(LAB_TAG) $(LAB_BUILD)/ctx/$(1)
	rm -rf $(LAB_BUILD)/ctx/$(1)
	@touch $$@
endef
$(eval $(call lab_image,director,,$(LAB_STAMP)/wheels))
$(eval $(call lab_image,realserver,,))
$(eval $(call lab_image,client,,))
$(eval $(call lab_image,prometheus,,))

images: deps $(foreach r,$(LAB_ROLES),$(LAB_STAMP)/image-$(r))

# --- lab lifecycle ------------------------------------------------------------------------------
up: images
	sh lab/host-firewall.sh add
	$(COMPOSE) up -d --remove-orphans
	$(LAB_PYTHON) -m harness up-report

down:
	-$(COMPOSE) down -v --remove-orphans --timeout 5
	-sh lab/host-firewall.sh del

logs:
	$(COMPOSE) logs $(LOGS_ARGS)

clean-lab: down
	-docker rmi $(foreach r,$(LAB_ROLES),vipkeeper/$(r):$(LAB_TAG)) $(BASE_IMAGE) 2>/dev/null
	rm -rf $(LAB_BUILD) artifacts/lab

# The session fixture in tests/lab/conftest.py starts the lab when it is not running and stops
# it at the end when LAB_TEARDOWN=1; `down` runs again here in case pytest itself died.
test-lab: images
	@mkdir -p artifacts/lab
	LAB_TEARDOWN=1 $(LAB_PYTHON) -m pytest tests/lab -m lab \
	    --junitxml=artifacts/lab/junit.xml; rc=$$?; $(MAKE) -f mk/lab.mk down; exit $$rc
