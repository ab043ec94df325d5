# zkwarden developer tasks.  `make test` works on a fresh Debian machine (as root, or with
# sudo): it installs Java, ZooKeeper and the Curator jars from Debian, and the Python
# dependencies into .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := default-jre-headless zookeeper libcurator-discovery-java libcurator-recipes-java

# pytest-xdist workers.  The tests mostly wait (on ZooKeeper, timeouts, faults), not
# compute, so more workers than the 2 cores pays off; beyond 4, the JVMs each worker
# starts cost more CPU than the overlap saves.  --dist loadfile keeps a module's tests
# on one worker, so a module-scoped ensemble starts once, not once per worker.
PYTEST_WORKERS ?= 4
PYTEST_ARGS ?=

.PHONY: deps system-deps test lint clean demo bench

deps: system-deps $(STAMP)

# apt only when something is missing, so a second run is instant and needs no network.
# javac (a JDK) is needed by the Curator interop tests; venv by a Debian python3; the
# Kerberos packages by the SASL GSSAPI tests (a KDC of their own) and to build gssapi.
system-deps:
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	command -v javac >/dev/null 2>&1 || missing="$$missing default-jdk-headless"; \
	command -v tcpdump >/dev/null 2>&1 || missing="$$missing tcpdump"; \
	if [ -z "$${ZOOKEEPER_HOME:-}" ] && [ ! -f /usr/share/java/zookeeper.jar ]; then \
		missing="$$missing zookeeper"; fi; \
	[ -f /usr/share/java/curator-x-discovery.jar ] || missing="$$missing libcurator-discovery-java"; \
	[ -f /usr/share/java/curator-recipes.jar ] || missing="$$missing libcurator-recipes-java"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	[ -f /usr/include/krb5.h ] || missing="$$missing libkrb5-dev"; \
	[ -x /usr/sbin/krb5kdc ] || missing="$$missing krb5-kdc"; \
	[ -x /usr/sbin/kadmin.local ] || missing="$$missing krb5-admin-server"; \
	command -v kinit >/dev/null 2>&1 || missing="$$missing krb5-user"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	$(PYTHON) -c 'import os, sysconfig; assert os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
		>/dev/null 2>&1 || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing from apt:$$missing"; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$(APT_PACKAGES) $$missing; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# pytest exits 5 when it collected no tests: with this suite that means something broke
# collection, so it is reported as a failure rather than passed off as success.
test: deps
	@rc=0; $(VPY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

lint: deps
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy --strict src

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis .benchmarks
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -maxdepth 2 -name '*.egg-info' -type d -prune -exec rm -rf {} +

# The demo needs Python >= 3.11, Java and ZooKeeper (installed from apt when missing);
# zkwarden itself has no dependencies, so it runs straight from this checkout.
# `make demo DEMO_ARGS=--quick` for a shorter run.
DEMO_ARGS ?=
demo:
	@missing=""; \
	command -v $(PYTHON) >/dev/null 2>&1 || missing="$$missing python3"; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	if [ -z "$${ZOOKEEPER_HOME:-}" ] && [ ! -f /usr/share/java/zookeeper.jar ]; then \
		missing="$$missing zookeeper"; fi; \
	if [ -n "$$missing" ]; then \
		echo "make demo: installing from apt:$$missing"; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$$missing; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "make demo: zkwarden needs Python >= 3.11; $(PYTHON) is older (set PYTHON=...)" >&2; \
		exit 1; }
	@PYTHONPATH=src $(PYTHON) -m zkwarden demo $(DEMO_ARGS)

# The benchmarks (bench/README.md): starts its own ZooKeeper, installs kazoo and aiozk
# (the `bench` extra) into .venv, runs every scenario for every client, prints the tables
# and writes bench/results.json.  BENCH_ARGS is passed on (e.g. --only get_seq,get_pipelined
# --rounds 7, or --quick for a smoke run).
BENCH_STAMP := $(VENV)/.bench-installed-stamp
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	@touch $@

bench: deps $(BENCH_STAMP)
	@uptime
	$(VPY) -m bench $(BENCH_ARGS)

# The deterministic simulation (tests/sim): the default test run does the exhaustive
# fault-point sweep plus 2,000 random schedules; `make sim` searches longer.
# SIM_ARGS is passed on (e.g. --sim-first-seed=100000, or --sim-seed=N to replay one).
SIM_SCHEDULES ?= 20000
SIM_ARGS ?=
.PHONY: sim
sim: deps
	$(VPY) -m pytest tests/sim -q -p no:randomly --sim-schedules=$(SIM_SCHEDULES) $(SIM_ARGS)
