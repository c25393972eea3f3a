# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test bench install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PINS) || $(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e '.[digits]'

install-test: $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PINS) || $(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e '.[test]'

demo: install
	$(BIN)/prunehess extract --resume sample_checkpoints --output demo_output --compute-each-layer
	$(BIN)/prunehess plot all --path demo_output --save-path demo_output/figures
	$(BIN)/prunehess report demo_output
	@echo
	@echo "Results: demo_output/ (summary.csv, top_eigenvalues/, trace/, density_*/, esd_plot/)"
	@echo "Figures: demo_output/figures/   Report: demo_output/report.html"

test: install-test
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/bench_engine.py --models lenet   # ResNet-20 on a CPU takes hours: add --device cuda

clean:
	rm -rf $(VENV) demo_output *.egg-info
