# mk/test.mk - `make test`: the quick gates (lint, types, unit), then two lanes side by side that
# share nothing:
#   host lane   the suites on this host, one after another: namespaces, the set-up step, the
#               short soak, then the Docker labs (they use one set of networks, so one at a time)
#   guest lane  the kernel suite in its QEMU guest (mk/kernel.mk), which keeps one core busy
# The guest lane's output is printed when it ends (make's --output-sync); with -k both lanes run
# to their end and report, and a failure in either fails `make test`.

TEST_HOST_LANE ?= netns test-setup soak-short test-lab test-workshop

.PHONY: test test-host-lane

test: lint typecheck unit
	@$(MAKE) --no-print-directory -k -j2 --output-sync=target test-host-lane test-kernel

test-host-lane:
	@$(MAKE) --no-print-directory -j1 $(TEST_HOST_LANE)
