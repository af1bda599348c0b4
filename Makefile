# The two newcomer commands: `make run` (set up, then run the default adaptation) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: setup run test test-fast ui bench experiment clean-store

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: setup              ## the default adaptation on the embedded sample, recorded in mlruns/
	$(PY) src/main.py $(ARGS)

test: setup             ## the whole suite (slow end-to-end tests included)
	$(PY) -m pytest -q $(ARGS)

test-fast: setup        ## without the slow end-to-end tests
	$(PY) -m pytest -q -m "not slow" $(ARGS)

ui: setup               ## MLflow UI on this project's store
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts

bench: setup            ## runner throughput and FLOP-rate benchmarks (figures go to bench/RESULTS.md)
	$(PY) bench/bench_runner.py
	$(PY) bench/bench_energy.py
	$(PY) src/profiling.py
	$(PY) bench/bench_search.py --validate
	$(PY) bench/bench_adapt.py
