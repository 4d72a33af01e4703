# One entry point for every task. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench fuzz build wheels clean build-AuthorizerFunction build-IndexerFunction wheel layer cold-start lambda-python

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .  # the mtls-authorizer command
	touch $(STAMP)

# The tests build the Lambda package offline from wheels fetched here, at install time (see `wheels`).
test: $(STAMP) lint wheels
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks demo examples
	$(PY) -m mypy
	$(PY) -m mypy examples

# Benchmark (not a test): the authorizer vs. the proof of concept on 10k/100k/1M-entry CRLs and OCSP, on loopback
# servers started and stopped by the script. Report: stdout and benchmarks/results.md. `make bench BENCH_ARGS=--quick`.
bench: $(STAMP)
	@PYTHONPATH=src $(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist

# ---- Lambda package -------------------------------------------------------------------------------
# `sam build` (template.yaml: Metadata BuildMethod: makefile) runs `make build-AuthorizerFunction` with
# ARTIFACTS_DIR set. Wheels are fetched for the Lambda platform, not this machine, so no container is needed:
# ARCH=arm64 (default, as the template's Architecture parameter) or ARCH=x86_64 (`ARCH=x86_64 sam build`).
# python3.13 functions run on Amazon Linux 2023 (glibc 2.34): manylinux2014 up to manylinux_2_34 wheels fit.
ARCH ?= arm64
LAMBDA_PYTHON_VERSION ?= 3.13
LAMBDA_PIP_ARCH = $(if $(filter arm64 aarch64,$(ARCH)),aarch64,$(if $(filter x86_64 amd64,$(ARCH)),x86_64,$(error ARCH must be arm64 or x86_64, not '$(ARCH)')))
LAMBDA_PLATFORMS = manylinux2014 manylinux_2_28 manylinux_2_34
SAM_BUILD_DIR := .aws-sam/build

# pip's flags for Lambda wheels of one machine ($(1): aarch64 or x86_64).
lambda_wheels = $(foreach p,$(LAMBDA_PLATFORMS),--platform $(p)_$(1)) \
	--implementation cp --python-version $(LAMBDA_PYTHON_VERSION) --only-binary=:all:
# OFFLINE=1 installs only from the wheelhouse `make wheels` filled (what the tests do).
WHEELHOUSE := $(VENV)/wheelhouse
OFFLINE ?=

# Bytecode: /var/task (and a layer's /opt) is read-only, so a package without .pyc files compiles every
# module it imports on every cold start. The build compiles the whole package (dependencies and authorizer)
# with the runtime's own minor version, as unchecked-hash .pyc in the usual __pycache__/*.cpython-313.pyc
# layout: valid whatever the files' mtimes after unzipping, never re-checked against the source.
# LAMBDA_PYTHON: that interpreter; found as python3.13 on PATH (one that runs: a pyenv shim of an inactive
# version does not) or in pyenv's versions. Empty (none found, or LAMBDA_PYTHON= ): no bytecode, with a warning.
find_lambda_python = for p in "$$(command -v python$(LAMBDA_PYTHON_VERSION))" \
	$$(ls -d "$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")"/versions/$(LAMBDA_PYTHON_VERSION)*/bin/python$(LAMBDA_PYTHON_VERSION) 2>/dev/null | sort -rV); do \
	[ -n "$$p" ] && "$$p" -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(LAMBDA_PYTHON_VERSION)")' 2>/dev/null && { echo "$$p"; break; }; done
LAMBDA_PYTHON ?= $(shell $(find_lambda_python))

# Prints the interpreter the build compiles bytecode with (nothing when there is none).
lambda-python:
	@echo "$(LAMBDA_PYTHON)"

build-AuthorizerFunction: $(STAMP)
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it; or use 'make build')" >&2; exit 2; }
	@py='$(LAMBDA_PYTHON)'; test -z "$$py" || "$$py" -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(LAMBDA_PYTHON_VERSION)")' \
		|| { echo "LAMBDA_PYTHON=$$py is not Python $(LAMBDA_PYTHON_VERSION), the Lambda runtime's version: its bytecode would never be used" >&2; exit 2; }
	mkdir -p "$(ARTIFACTS_DIR)"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile --upgrade $(call lambda_wheels,$(LAMBDA_PIP_ARCH)) \
		$(if $(OFFLINE),--no-index --find-links $(WHEELHOUSE)/$(LAMBDA_PIP_ARCH)) \
		--target "$(ARTIFACTS_DIR)" -r requirements.txt
	rm -rf "$(ARTIFACTS_DIR)/authorizer"
	cp -R src/authorizer "$(ARTIFACTS_DIR)/authorizer"
	find "$(ARTIFACTS_DIR)/authorizer" -name __pycache__ -type d -prune -exec rm -rf {} +
	@py='$(LAMBDA_PYTHON)'; if [ -n "$$py" ]; then \
		echo "bytecode: compiling the package with $$py ($$("$$py" -c 'import platform; print(platform.python_version())')), unchecked-hash"; \
		"$$py" -m compileall -q -f --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)" || exit 1; \
	else \
		echo "WARNING: no Python $(LAMBDA_PYTHON_VERSION) found (python$(LAMBDA_PYTHON_VERSION) on PATH or in pyenv): the package ships without bytecode, so every cold start compiles each module it imports. Install it (pyenv install $(LAMBDA_PYTHON_VERSION)) or set LAMBDA_PYTHON=/path/to/python$(LAMBDA_PYTHON_VERSION)." >&2; \
	fi

# The indexer (template.yaml IndexerFunction) is the same package with another handler.
build-IndexerFunction: build-AuthorizerFunction

# A Lambda layer of the authorizer and its dependencies (python/ at the root, as Lambda's /opt/python), for
# your own functions: `sam build` runs this for a LayerVersion with Metadata BuildMethod: makefile and the
# logical ID AuthorizerLayer; `make layer` zips it.
build-AuthorizerLayer: $(STAMP)
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it; or use 'make layer')" >&2; exit 2; }
	rm -rf "$(ARTIFACTS_DIR)/python"
	$(MAKE) --no-print-directory build-AuthorizerFunction ARTIFACTS_DIR="$(ARTIFACTS_DIR)/python"

# The same package without the SAM CLI, laid out as `sam build` does (.aws-sam/build/AuthorizerFunction plus a
# template whose CodeUri points at it), so `sam deploy` / `sam local invoke` can use it directly.
build: $(STAMP)
	rm -rf $(SAM_BUILD_DIR)/AuthorizerFunction
	$(MAKE) --no-print-directory build-AuthorizerFunction ARTIFACTS_DIR="$(CURDIR)/$(SAM_BUILD_DIR)/AuthorizerFunction"
	sed 's#^\( *\)CodeUri: \.$$#\1CodeUri: AuthorizerFunction#' template.yaml > $(SAM_BUILD_DIR)/template.yaml

# Lambda-platform wheels for both architectures, fetched once per requirements change, and the wheel build
# backend (pyproject.toml's build-system), so `make wheel OFFLINE=1` builds without the index.
wheels: $(WHEELHOUSE)/aarch64/.done $(WHEELHOUSE)/x86_64/.done $(WHEELHOUSE)/backend/.done
$(WHEELHOUSE)/%/.done: requirements.txt $(STAMP)
	$(PY) -m pip download --quiet --disable-pip-version-check -d $(WHEELHOUSE)/$* $(call lambda_wheels,$*) \
		-r requirements.txt
	touch $@
$(WHEELHOUSE)/backend/.done: pyproject.toml $(STAMP)
	$(PY) -m pip download --quiet --disable-pip-version-check --only-binary=:all: -d $(WHEELHOUSE)/backend \
		$$($(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"])')
	touch $@

# ---- Wheel and layer ------------------------------------------------------------------------------
# The library (`pip install dist/mtls_revocation_authorizer-*.whl`; `from authorizer import check_request`) and
# a Lambda layer zip for ARCH (python/ with the authorizer, its dependencies and their bytecode).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/authorizer/__init__.py)
DIST ?= dist
LAYER_BUILD ?= build/layer-$(ARCH)
LAYER_ZIP ?= $(DIST)/mtls-authorizer-layer-$(VERSION)-python$(LAMBDA_PYTHON_VERSION)-$(ARCH).zip

wheel: $(STAMP)
	rm -rf build/lib build/bdist.*
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$(DIST)" \
		$(if $(OFFLINE),--no-index --find-links $(WHEELHOUSE)/backend) .
	@ls "$(DIST)"/mtls_revocation_authorizer-$(VERSION)-*.whl

layer: $(STAMP)
	rm -rf "$(LAYER_BUILD)"
	$(MAKE) --no-print-directory build-AuthorizerLayer ARTIFACTS_DIR="$(abspath $(LAYER_BUILD))"
	mkdir -p "$(dir $(LAYER_ZIP))"
	rm -f "$(LAYER_ZIP)"
	$(PY) -c 'import shutil, sys; shutil.make_archive(sys.argv[1].removesuffix(".zip"), "zip", sys.argv[2], "python")' \
		"$(LAYER_ZIP)" "$(LAYER_BUILD)"
	@echo "$(LAYER_ZIP): Lambda layer for python$(LAMBDA_PYTHON_VERSION) on $(ARCH)"

# Cold-start import of authorizer.app on Python 3.13 with and without bytecode, on a package built for this
# machine (benchmarks/cold_start.py).
cold-start: $(STAMP)
	@$(PY) benchmarks/cold_start.py $(COLD_START_ARGS)

# ---- Demo and sample events -----------------------------------------------------------------------
# The real authorizer end to end on this machine: throwaway PKI (openssl CLI), openssl ocsp, a CRL server,
# S3 (moto), live revocation; prints a table of decisions (demo/run.py).
demo: $(STAMP)
	$(PY) demo/run.py

# A local mutual-TLS endpoint in front of the real handler, doing what API Gateway's mTLS custom domain does
# (src/authorizer/gateway.py): `make gateway TRUSTSTORE=truststore.pem`, then `curl --cert --key` (README: "Try
# it with curl"). More options through GATEWAY_ARGS, e.g. GATEWAY_ARGS="--format http --denylist denylist.txt".
TRUSTSTORE ?= truststore.pem
GATEWAY_PORT ?= 8443
.PHONY: gateway
gateway: $(STAMP)
	@test -f "$(TRUSTSTORE)" || { echo "no $(TRUSTSTORE) here: make gateway TRUSTSTORE=path/to/truststore.pem" >&2; exit 2; }
	$(VENV)/bin/mtls-authorizer gateway --truststore "$(TRUSTSTORE)" --port $(GATEWAY_PORT) $(GATEWAY_ARGS)

# Regenerates events/ (sample events for `sam local invoke -e`) from a throwaway PKI (demo/make_events.py).
.PHONY: events
events: $(STAMP)
	$(PY) demo/make_events.py

# ---- Fuzzing --------------------------------------------------------------------------------------
# Property-based fuzzing of the handler and the parsers (tests/test_fuzz.py) with the "long" Hypothesis profile:
# random seeds, many more examples, failures kept in .hypothesis/ and replayed first next time. `make test` runs
# the same file with the derandomized "ci" profile. Override the budget with FUZZ_PROFILE=dev (faster).
FUZZ_PROFILE ?= long
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=$(FUZZ_PROFILE) $(PY) -m pytest -q tests/test_fuzz.py --hypothesis-show-statistics
