# Two commands: `make demo` and `make test`. Both create .venv on first use (idempotent:
# the stamp file is rebuilt only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo study study-archive study-restore studies test test-cluster lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The workflow's wall time is printed at the end (the install above is not counted). Its jobs run
# in children of a fork server that has imported torch once (src/iresnet_inverse/forkserver.py).
demo: $(STAMP)
	@start=$$(date +%s); dir=$$(mktemp -d); \
	$(BIN)/iresnet-inverse forkserver $$dir/socket & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server; rm -rf $$dir' EXIT; \
	trap 'exit 130' INT TERM HUP; \
	IRESNET_INVERSE_FORKSERVER=$$dir/socket \
		$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) \
		--configfile config/config.yaml; status=$$?; \
	took=$$(( $$(date +%s) - start )); \
	echo "make demo: workflow $$((took / 60)) min $$((took % 60)) s (exit $$status)"; \
	exit $$status

# A study config in its own directory: `make study` (config/study.yaml in studies/study/),
# `make study STUDY=scaling` (config/scaling.yaml in studies/scaling/), ...
STUDY ?= study
override STUDY := $(strip $(STUDY))
STUDIES := $(sort $(basename $(notdir $(wildcard config/*.yaml))))
# Checked by make itself: the name never reaches a shell.
CHECK_STUDY = $(if $(and $(filter $(STUDY),$(STUDIES)),$(filter 1,$(words $(STUDY)))),,\
	$(error make $@: STUDY='$(STUDY)' is not a config in config/; choose one of: $(STUDIES)))
study: $(STAMP)
	$(CHECK_STUDY)
	mkdir -p studies/$(STUDY)
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) \
		--snakefile Snakefile --directory studies/$(STUDY) --configfile config/$(STUDY).yaml

# A study in parts (docs/archive.md, "Studies that span machines"): its one archive, results and
# resume checkpoints, replaced each time; laid back into studies/<name>/results/ on the next
# machine.
ARCHIVE = studies/$(STUDY)/$(STUDY).tar.gz
study-archive: $(STAMP)
	$(CHECK_STUDY)
	$(BIN)/iresnet-inverse archive --results studies/$(STUDY)/results --checkpoints \
		--config config/$(STUDY).yaml --out $(ARCHIVE)
	$(BIN)/iresnet-inverse verify-archive $(ARCHIVE)

study-restore: $(STAMP)
	$(CHECK_STUDY)
	$(BIN)/iresnet-inverse restore $(ARCHIVE) --results studies/$(STUDY)/results

# The study configs `make study STUDY=<name>` accepts.
studies:
	@echo $(STUDIES)

# Lint, then the docs (mkdocs --strict: a broken link, anchor or nav entry fails), then the tests.
test: lint
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q

# The cluster path on a real single-node SLURM (root; installs Debian's slurm and munge when
# missing): the ci config through workflow/profiles/slurm, interrupted and resumed.
test-cluster: $(STAMP)
	BIN=$(abspath $(BIN)) tests/cluster/slurm.sh

# Python and Snakefiles; `snakemake --lint` is a test (tests/test_packaging.py), since two of its
# lints stay on purpose.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile workflow/rules

# Keeps the studies' archives (studies/<name>/<name>.tar.gz), which may be committed.
clean:
	rm -rf results .snakemake studies/*/results studies/*/.snakemake
