# mk/hosts.mk - the hosts lab (bare Debian hosts with systemd and sshd) and the Ansible
# deployment in deploy/ that installs vipkeeper on them.
#
#   hosts-image  the node image vipkeeper/hosts-node:hosts, built offline like the lab images
#   hosts-up     the bare hosts (lab/hosts/compose.yaml), reachable by Ansible over SSH with a
#                key generated into $(HOSTS_SSH_DIR) (git-ignored); waits for every node's
#                systemd to be running
#   deploy       the playbook deploy/site.yml over $(HOSTS_INVENTORY)
#   deploy-upgrade  the rolling upgrade deploy/upgrade.yml, to the wheels in HOSTS_WHEELS
#   deploy-wheels   vipkeeper's wheel and its dependencies' (mk/lab.mk), into images/.build/wheels
#   test-hosts   hosts-up, then pytest tests/hosts (converge, idempotence, the service under
#                systemd, reload, a refused template, the rolling upgrade under HTTP load),
#                then the lab tests over the hosts' inventory with faults allowed, those
#                for the Compose lab only deselected (mk/inventory.mk), then hosts-down, also on failure; JUnit XML in artifacts/hosts/
#   hosts-down   remove the hosts, their networks and the lab's firewall rules
#
# The hosts lab uses the Compose lab's networks: run these under the machine's lab lock, e.g.
#   flock /tmp/vipkeeper-lab.lock make test-hosts

HOSTS_IMAGE     ?= vipkeeper/hosts-node:hosts
HOSTS_COMPOSE_FILE := lab/hosts/compose.yaml
HOSTS_SSH_DIR   ?= $(LAB_BUILD)/hosts/ssh
HOSTS_SSH_KEY   := $(HOSTS_SSH_DIR)/id_ed25519
HOSTS_INVENTORY ?= deploy/inventory/hosts-lab.yml
HOSTS_ARTIFACTS ?= $(ARTIFACTS)/hosts
HOSTS_PYTEST_FLAGS ?=
# The node image's packages: systemd as PID 1, sshd, python3 for Ansible (python3-apt for its
# apt module), iproute2 and procps, the client's probes (curl, scapy, arping, tcpdump), apt-ftparchive
# for the local repository.  HOSTS_REPO_DEBS go into that repository, not onto the host: what
# the roles install with apt (Apache; python3-venv, nftables and python3-packaging, which
# Ansible's pip module needs on the host).
HOSTS_NODE_DEBS := systemd systemd-sysv openssh-server python3 python3-apt iproute2 procps \
    iputils-ping curl python3-scapy arping tcpdump apt-utils
HOSTS_REPO_DEBS := apache2 python3-venv nftables python3-packaging
HOSTS_ENV := HOSTS_IMAGE=$(HOSTS_IMAGE) HOSTS_SSH_PUBKEY=$(abspath $(HOSTS_SSH_KEY)).pub
HOSTS_COMPOSE := $(HOSTS_ENV) docker compose -f $(HOSTS_COMPOSE_FILE)
ANSIBLE_ENV := ANSIBLE_CONFIG=deploy/ansible.cfg
ANSIBLE := $(ANSIBLE_ENV) $(VENV)/bin/ansible
ANSIBLE_PLAYBOOK := $(ANSIBLE_ENV) $(VENV)/bin/ansible-playbook
# Where the director role takes vipkeeper's wheel and its dependencies' from (mk/lab.mk builds them).
HOSTS_WHEELS    ?= $(abspath $(LAB_BUILD)/wheels)

.PHONY: hosts-image hosts-up hosts-down deploy deploy-wheels deploy-upgrade test-hosts hosts-key

ifneq ($(filter hosts-image hosts-up test-hosts,$(MAKECMDGOALS)),)
$(if $(shell docker image inspect $(HOSTS_IMAGE) >/dev/null 2>&1 && echo y),,\
    $(shell rm -f $(LAB_STAMP)/image-hosts-node))
endif

$(eval $(call lab_debs,hosts-node,$(HOSTS_NODE_DEBS)))
$(eval $(call lab_debs,hosts-repo,$(HOSTS_REPO_DEBS)))

$(LAB_STAMP)/image-hosts-node: $(LAB_STAMP)/debs-hosts-node $(LAB_STAMP)/debs-hosts-repo \
    $(shell find images/hosts-node -type f)
	@mkdir -p $(@D)
	rm -rf $(LAB_BUILD)/ctx/hosts-node && mkdir -p $(LAB_BUILD)/ctx/hosts-node
	cp -a images/hosts-node/. $(LAB_BUILD)/ctx/hosts-node/
	cp -a $(LAB_BUILD)/debs/hosts-node $(LAB_BUILD)/ctx/hosts-node/debs
	cp -a $(LAB_BUILD)/debs/hosts-repo $(LAB_BUILD)/ctx/hosts-node/repo
	@$(LAB_STEP) "image hosts-node ($(HOSTS_IMAGE))" -f '$(BUILD_PROGRESS)' \
	    -- docker build --network none --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	    -t $(HOSTS_IMAGE) $(LAB_BUILD)/ctx/hosts-node
	rm -rf $(LAB_BUILD)/ctx/hosts-node
	@touch $@

hosts-image: deps $(LAB_STAMP)/image-hosts-node

# The lab's SSH key: made once per tree, kept out of git (images/.build/ is ignored).
$(HOSTS_SSH_KEY): | deps
	@mkdir -p $(@D) && chmod 0700 $(@D)
	ssh-keygen -q -t ed25519 -N '' -C vipkeeper-hosts-lab -f $@

hosts-key: $(HOSTS_SSH_KEY)

# Fresh host keys on every boot: the known_hosts file of the last lab goes with it.
hosts-up: deps hosts-image $(HOSTS_SSH_KEY)
	sh lab/host-firewall.sh add
	rm -f $(HOSTS_SSH_DIR)/known_hosts
	$(HOSTS_COMPOSE) up -d --remove-orphans
	$(ANSIBLE) all -i $(HOSTS_INVENTORY) -m ansible.builtin.wait_for_connection -a timeout=90
	$(ANSIBLE) all -i $(HOSTS_INVENTORY) -m ansible.builtin.command \
	    -a 'systemctl is-system-running --wait'

# The down is bounded: an engine that lost a container's shim never answers its stop, and the
# suite's result must not wait on it (the containers are left for the next `make hosts-down`).
HOSTS_DOWN_BOUND ?= 180

hosts-down: deps
	-$(HOSTS_ENV) timeout $(HOSTS_DOWN_BOUND) docker compose -f $(HOSTS_COMPOSE_FILE) \
	    down -v --remove-orphans --timeout 10
	-sh lab/host-firewall.sh del
	rm -f $(HOSTS_SSH_DIR)/known_hosts

deploy: deploy-wheels
	$(ANSIBLE_PLAYBOOK) -i $(HOSTS_INVENTORY) -e vipkeeper_wheels_dir=$(HOSTS_WHEELS) deploy/site.yml

test-hosts: deps hosts-image $(LAB_STAMP)/wheels $(HOSTS_SSH_KEY)
	@mkdir -p $(HOSTS_ARTIFACTS)
	$(MAKE) hosts-up && HOSTS_INVENTORY=$(HOSTS_INVENTORY) HOSTS_WHEELS=$(HOSTS_WHEELS) \
	    $(PYTEST) tests/hosts --junitxml=$(HOSTS_ARTIFACTS)/junit.xml $(HOSTS_PYTEST_FLAGS) \
	    && $(MAKE) deploy test-inventory ALLOW_FAULTS=1 INVENTORY=$(HOSTS_INVENTORY) \
	        PYTEST_FLAGS="-m 'not compose_only'"; \
	    rc=$$?; $(MAKE) hosts-down; exit $$rc

# vipkeeper's wheel and its dependencies' (mk/lab.mk), for the director role.
deploy-wheels: deps $(LAB_STAMP)/wheels

# The rolling upgrade (deploy/upgrade.yml) to the wheels in HOSTS_WHEELS.
deploy-upgrade: deps $(LAB_STAMP)/wheels
	$(ANSIBLE_PLAYBOOK) -i $(HOSTS_INVENTORY) -e vipkeeper_wheels_dir=$(HOSTS_WHEELS) deploy/upgrade.yml
