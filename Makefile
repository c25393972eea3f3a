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
	$(BIN)/prunehess extract --resume sample_checkpoints --output demo_output --compute-each-layer --top-n 2 \
		--save-eigenvectors
	$(BIN)/prunehess landscape demo_output --directions top1,top2,random --surface --no-plot
	$(BIN)/prunehess barrier demo_output --pairs consecutive,rewind --no-plot
	$(BIN)/prunehess pruning-step demo_output --no-plot
	$(BIN)/prunehess plot all --path demo_output
	$(BIN)/prunehess report demo_output
	$(BIN)/prunehess extract --resume sample_checkpoints --output demo_output_ggn --curvature ggn --top-n 2
	$(BIN)/prunehess compare demo_output demo_output_ggn --save-path demo_output/figures/hessian_vs_ggn
	@echo
	@echo "Results: demo_output/ (summary.csv, top_eigenvalues/, trace/, bottom_eigenvalues/, density_*/, esd_plot/,"
	@echo "         eigenvectors/, landscape/, barrier/, pruning_step/)"
	@echo "Figures: demo_output/figures/   Report: demo_output/report.html"
	@echo "The GGN of the same checkpoints: demo_output_ggn/; Hessian against GGN: demo_output/figures/hessian_vs_ggn/"

test: install-test
	$(BIN)/python -m pytest -q

# PyHessian and the peers are installed without their dependencies (none may bring a second torch), then the
# pure-Python ones they need (`pip install -e '.[bench]'` pins the same versions, with their dependencies).
BENCH_TOOLS ?= pyhessian==0.1 hessian-eigenthings==1.0.0a5 curvlinops-for-pytorch==3.0.1
BENCH_DEPS ?= backpack-for-pytorch einops einconv linear-operator opt-einsum scipy

bench: install
	$(BIN)/pip install -q --no-deps $(BENCH_TOOLS)
	$(BIN)/pip install -q $(BENCH_DEPS)
	$(BIN)/python benchmarks/bench_e2e.py --markdown bench_e2e.md --json bench_e2e.json      # whole processes vs PyHessian
	$(BIN)/python benchmarks/bench_peers.py --markdown bench_peers.md --json bench_peers.json  # vs curvlinops, hessian-eigenthings
	$(BIN)/python benchmarks/bench_engine.py --models lenet   # per estimator; ResNet-20 on a CPU takes hours: add --device cuda

clean:
	rm -rf $(VENV) demo_output demo_output_ggn *.egg-info bench_e2e.md bench_e2e.json bench_peers.md bench_peers.json
