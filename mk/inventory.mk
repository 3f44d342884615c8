# mk/inventory.mk - the lab tests (tests/lab) run against the hosts of an Ansible inventory.
#
#   test-inventory  pytest tests/lab --inventory=$(INVENTORY): the same checks as against the
#                   Compose lab, over hosts that are up and deployed (nothing is brought up or
#                   torn down).  Read-only unless ALLOW_FAULTS=1 (then --allow-faults: a director
#                   is failed, httpd stopped, links taken down, and each undone).  JUnit XML and
#                   timelines in $(INVENTORY_ARTIFACTS).
#
# Against the hosts lab, under the machine's lab lock:
#   flock /tmp/vipkeeper-lab.lock sh -c 'make hosts-up deploy && make test-inventory ALLOW_FAULTS=1; make hosts-down'

INVENTORY           ?= $(or $(HOSTS_INVENTORY),deploy/inventory/hosts-lab.yml)
INVENTORY_ARTIFACTS ?= $(ARTIFACTS)/hosts/lab
ALLOW_FAULTS        ?=

.PHONY: test-inventory

test-inventory: deps
	@mkdir -p $(INVENTORY_ARTIFACTS)
	LAB_ARTIFACTS=$(INVENTORY_ARTIFACTS) $(PYTEST) tests/lab --inventory=$(INVENTORY) \
	    $(if $(filter 1,$(ALLOW_FAULTS)),--allow-faults) \
	    --junitxml=$(INVENTORY_ARTIFACTS)/junit.xml $(PYTEST_FLAGS)
