# The two quick-start commands (README.md):
#
#   make run     the workflow: snakemake --cores all on config/config.yaml (the offline default)
#   make test    the test suite, exactly as CI (.ci/run) runs it
#
# Both first bring .venv up to date: install.sh runs only when .venv is missing or pyproject.toml or
# install.sh changed since its last successful install (a hash in .venv/.install-stamp); otherwise
# that step is a no-op. `make install` does only that step.
#
# Variables:
#   CONFIG=config/test.yaml    a config file merged on top of config/config.yaml (snakemake --configfile)
#   CORES=2                    cores for snakemake (default: all)
#   ARGS="..."                 more arguments for snakemake (make run) or pytest (make test), e.g.
#                              make run ARGS="-n"   or   make run ARGS="--config tasks='[trec]'"

SHELL := /bin/bash
VENV := .venv
CORES ?= all
CONFIG ?=
ARGS ?=

.PHONY: run test install

install:
	@bash install.sh --if-needed

run: install
	$(VENV)/bin/snakemake --cores $(CORES)$(if $(CONFIG), --configfile $(CONFIG)) $(ARGS)

test: install
	$(VENV)/bin/python -m pytest $(ARGS)
