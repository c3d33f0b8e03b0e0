# The two set-up commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.specbed-installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, the CPU build pinned for development and CI; the package
	# itself leaves torch unpinned.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[controller,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/specbed models fetch
	$(BIN)/specbed local --agents 2 --profile quickstart

PLAYBOOKS := $(wildcard playbooks/*.yml)

lint: install
	$(BIN)/ruff check agent controller tests
	$(BIN)/ruff format --check agent controller tests
	cd playbooks && ../$(BIN)/ansible-lint --offline -q .
	for p in $(PLAYBOOKS); do \
	  ANSIBLE_CONFIG=playbooks/ansible.cfg $(BIN)/ansible-playbook --syntax-check \
	    -i playbooks/inventory/example/hosts.yml $$p || exit 1; \
	done

test: install lint
	$(BIN)/specbed models fetch
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache
