# One entry point for every task. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench fuzz build wheels clean

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
	$(PY) -m ruff check src tests benchmarks demo
	$(PY) -m mypy

# Benchmark (not a test): the authorizer vs. the proof of concept on 10k/100k/1M-entry CRLs and OCSP, on loopback
# servers started and stopped by the script. Report: stdout and benchmarks/results.md. `make bench BENCH_ARGS=--quick`.
bench: $(STAMP)
	@PYTHONPATH=src $(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis

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

build-AuthorizerFunction: $(STAMP)
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it; or use 'make build')" >&2; exit 2; }
	mkdir -p "$(ARTIFACTS_DIR)"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile --upgrade $(call lambda_wheels,$(LAMBDA_PIP_ARCH)) \
		$(if $(OFFLINE),--no-index --find-links $(WHEELHOUSE)/$(LAMBDA_PIP_ARCH)) \
		--target "$(ARTIFACTS_DIR)" -r requirements.txt
	rm -rf "$(ARTIFACTS_DIR)/authorizer"
	cp -R src/authorizer "$(ARTIFACTS_DIR)/authorizer"
	find "$(ARTIFACTS_DIR)/authorizer" -name __pycache__ -type d -prune -exec rm -rf {} +

# The same package without the SAM CLI, laid out as `sam build` does (.aws-sam/build/AuthorizerFunction plus a
# template whose CodeUri points at it), so `sam deploy` / `sam local invoke` can use it directly.
build: $(STAMP)
	rm -rf $(SAM_BUILD_DIR)/AuthorizerFunction
	$(MAKE) --no-print-directory build-AuthorizerFunction ARTIFACTS_DIR="$(CURDIR)/$(SAM_BUILD_DIR)/AuthorizerFunction"
	sed 's#^\( *\)CodeUri: \.$$#\1CodeUri: AuthorizerFunction#' template.yaml > $(SAM_BUILD_DIR)/template.yaml

# Lambda-platform wheels for both architectures, fetched once per requirements change.
wheels: $(WHEELHOUSE)/aarch64/.done $(WHEELHOUSE)/x86_64/.done
$(WHEELHOUSE)/%/.done: requirements.txt $(STAMP)
	$(PY) -m pip download --quiet --disable-pip-version-check -d $(WHEELHOUSE)/$* $(call lambda_wheels,$*) \
		-r requirements.txt
	touch $@

# ---- Demo and sample events -----------------------------------------------------------------------
# The real authorizer end to end on this machine: throwaway PKI (openssl CLI), openssl ocsp, a CRL server,
# S3 (moto), live revocation; prints a table of decisions (demo/run.py).
demo: $(STAMP)
	$(PY) demo/run.py

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
