# Weir: the two commands a newcomer needs are `make demo` and `make test`.
# Everything else here is what those two are built from.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/example.yaml

.DEFAULT_GOAL := help
.PHONY: help venv up down status demo test unit lint soak bench bench-cdc image clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 10

venv: $(VENV)/.installed  ## Create .venv and install Weir with its dev tools

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "weir needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	@echo "[make] creating $(VENV) and installing weir (editable, with dev extras)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

up:  ## Start local Kafka, PostgreSQL and the schema registry (installs them on first use)
	bash scripts/stack.sh up

down:  ## Stop the local stack (data is kept)
	bash scripts/stack.sh down

status:  ## Is the local stack running?
	bash scripts/stack.sh status

demo: venv up  ## Run the example pipeline end to end and show the result
	bash scripts/demo.sh $(CONFIG)

test: venv up  ## Run the whole test suite against the local stack
	bash scripts/run-tests.sh

unit: venv  ## Only the tests that need no servers (unit and property tests)
	$(BIN)/pytest -q -m "not integration" tests

lint: venv  ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/mypy --strict processor benchmarks tests/conftest.py tests/integration/conftest.py tests/integration/servers.py

CYCLES ?= 10
soak: venv up  ## Outage soak, ~20 min: PostgreSQL stopped, frozen, restarted, connections killed; CYCLES times each
	$(BIN)/python scripts/soak.py --cycles $(CYCLES) --out soak-results.json

EVENTS ?= 1000000
CONNECT := benchmarks/connect
bench: venv up benchmarks/.venv/.installed $(CONNECT)/libs/.installed  ## Weir vs the machine's limits, Quix Streams and Kafka Connect (EVENTS=200000 for a quick run)
	$(BIN)/python -m benchmarks.run --events $(EVENTS) $(BENCH_ARGS)

CHANGES ?= 200000
bench-cdc: venv up $(CONNECT)/libs/.installed  ## Debezium change events: Weir vs the Debezium JDBC sink on the same topics (CHANGES=20000 for a quick run)
	$(BIN)/python -m benchmarks.cdc.run --changes $(CHANGES) $(BENCH_ARGS)

# The peers live apart from Weir and are never its dependencies. Quix Streams: its own
# virtualenv.
benchmarks/.venv/.installed:
	$(PYTHON) -m venv benchmarks/.venv
	benchmarks/.venv/bin/pip install -q 'quixstreams[postgresql,avro]==3.28.1'
	@touch $@

# Kafka Connect with the Debezium JDBC sink: the jars named by its pom, from Maven Central
# (Java and Maven come with `make up`). Fetched into a scratch folder first, so that an
# interrupted download never looks complete; fetched again when the pom changes.
$(CONNECT)/libs/.installed: $(CONNECT)/pom.xml
	@echo "[make] fetching Kafka Connect and the Debezium JDBC sink into $(CONNECT)/libs"
	rm -rf $(CONNECT)/libs.partial
	mvn -B -q -f $(CONNECT)/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory=$(CURDIR)/$(CONNECT)/libs.partial > $(CONNECT)/maven.log 2>&1 \
		|| { tail -20 $(CONNECT)/maven.log; exit 1; }
	rm -rf $(CONNECT)/libs
	mv $(CONNECT)/libs.partial $(CONNECT)/libs
	@touch $@

image:  ## Build deploy/Dockerfile with docker or podman (TAG=localhost/weir:dev; scripts/image.sh)
	bash scripts/image.sh $(or $(TAG),localhost/weir:dev)

clean:  ## Stop the stack and delete its data (keeps downloaded jars)
	bash scripts/stack.sh clean
