"""tune(): what it measures, how it decides, and the Tuning record it returns (applied with apply_tuning).

Timings are real where only the structure of the result is checked; where a decision is checked, a fake clock
(each product advances it by its strategy's cost) or a fake memory rule makes it deterministic.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

import cases
from helpers import assert_close, check_products, columns
from prunehess import HessianOperator
from prunehess.operators import Tuning, tune
from prunehess.operators import tuning as tuning_module
from prunehess.operators.hessian import BATCHED_STRATEGIES, PROBES_PER_PRODUCT
from prunehess.operators.hvp import STRATEGIES

pytestmark = pytest.mark.usefixtures("float64")

RTOL, ATOL = 1e-9, 1e-12


def configuration(op: HessianOperator) -> tuple:
    return op.strategy, op.batched_strategy, op.cuda_graphs, op.chunk_size


# ----- the record ----------------------------------------------------------------------------------------------
def test_tuning_record_is_strategy_json_format():
    """``to_dict`` is what ``extract`` saves in ``strategy.json``: the four settings and the timings rounded to 6
    decimals (``inf`` for a rejected batched strategy); ``from_dict`` reads it back, ignoring other keys."""
    t = Tuning("graph", "graph_batched", False, 64,
               {"graph": 0.0123456789, "graph+one_chunk": 0.01, "batched:loop": 0.0123456789, "batched:vmap": float("inf")})
    record = t.to_dict()
    assert record == {"strategy": "graph", "batched_strategy": "graph_batched", "cuda_graphs": False, "chunk_size": 64,
                      "timings": {"graph": 0.012346, "graph+one_chunk": 0.01, "batched:loop": 0.012346,
                                  "batched:vmap": float("inf")}}
    assert list(record) == ["strategy", "batched_strategy", "cuda_graphs", "chunk_size", "timings"]
    assert list(record["timings"]) == list(t.timings)  # the order measured
    saved = json.loads(json.dumps({**record, "key": "abc", "device": "cpu"}))
    back = Tuning.from_dict(saved)
    assert back == Tuning("graph", "graph_batched", False, 64, record["timings"])
    assert back.to_dict() == record
    hand_set = Tuning.from_dict({"strategy": "double_backward", "batched_strategy": "loop"})  # a --strategy choice
    assert hand_set == Tuning("double_backward") and hand_set.timings == {} and hand_set.chunk_size is None


def test_tuning_is_frozen_and_validated():
    t = Tuning("graph", timings={"graph": 1.0})
    with pytest.raises(Exception):
        t.strategy = "double_backward"
    with pytest.raises(TypeError):
        t.timings["graph"] = 2.0  # a read-only view
    assert hash(t) == hash(Tuning("graph", timings={"graph": 2.0})) and t != Tuning("graph", timings={"graph": 2.0})
    with pytest.raises(ValueError, match="unknown strategy 'magic'; choose one of graph, double_backward"):
        Tuning("magic")
    with pytest.raises(ValueError, match="unknown batched strategy 'magic'; choose one of loop, vmap"):
        Tuning("graph", "magic")


def test_apply_tuning_configures_the_operator():
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    total = sum(int(y.shape[0]) for _, y in c.data)
    op.apply_tuning(Tuning("double_backward", "graph_batched", chunk_size=total))
    assert configuration(op) == ("double_backward", "graph_batched", False, total) and len(op.problem.batches) == 1
    check_products(op, c.expected, "applied", rtol=RTOL, atol=ATOL)
    op.apply_tuning(Tuning.from_dict({"strategy": "graph", "batched_strategy": "loop", "cuda_graphs": True}))
    assert configuration(op) == ("graph", "loop", False, None)  # CUDA graphs only where supported (a GPU)
    check_products(op, c.expected, "applied again", rtol=RTOL, atol=ATOL)
    assert op.engine.gradient.built
    op.apply_tuning(Tuning("double_backward", "vmap"))  # nothing reuses the first-order graph: freed
    assert configuration(op) == ("double_backward", "vmap", False, None) and not op.engine.gradient.built
    check_products(op, c.expected, "without graph reuse", rtol=RTOL, atol=ATOL)


# ----- measurements and decisions ----------------------------------------------------------------------------
def test_tune_returns_timings_and_stays_exact():
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    t = tune(op, k=4, repeats=1)
    timings = t.timings
    expected_keys = set(STRATEGIES) | {"batched:loop", "batched:vmap", "batched:graph_batched"}
    if op.strategy == "graph":  # graph reuse also times the mini-batches merged into one chunk
        expected_keys.add("graph+one_chunk")
    assert set(timings) == expected_keys
    assert all(isinstance(t, float) and 0 < t < 60 for t in timings.values())
    assert configuration(op) == (t.strategy, t.batched_strategy, t.cuda_graphs, t.chunk_size)  # left configured
    assert op.strategy in STRATEGIES and op.batched_strategy in BATCHED_STRATEGIES
    fastest = min(timings[s] for s in STRATEGIES)
    assert timings[op.strategy] == fastest or (op.strategy == "graph" and timings["graph"] <= 1.15 * fastest)
    assert timings[f"batched:{op.batched_strategy}"] == min(v for k, v in timings.items() if k.startswith("batched:"))
    assert_close(columns(op), c.expected, rtol=RTOL, atol=ATOL, name=f"after tune ({op.strategy})")
    assert_close(op.to_dense(), c.expected, rtol=RTOL, atol=ATOL, name=f"after tune ({op.batched_strategy})")
    only = tune(HessianOperator(c.model, c.data, c.loss_fn), k=2, repeats=1, candidates=["double_backward"]).timings
    assert set(only) == {"double_backward", "batched:loop"}


def test_tune_then_apply_tuning_is_the_chosen_configuration(monkeypatch):
    """``tune`` leaves the operator configured; applying its result again changes nothing (the same products, bit
    for bit), and applying it to a fresh operator gives that one the same configuration."""
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    clock = _FakeClock()
    monkeypatch.setattr(tuning_module, "time", clock)
    matvec = HessianOperator._matvec  # graph reuse over one chunk is the fastest: a configuration off the defaults
    monkeypatch.setattr(HessianOperator, "_matvec", lambda self, v: clock.tick(
        0.5 if self.chunk_size else 1.0 if self.strategy == "graph" else 3.0) or matvec(self, v))
    monkeypatch.setattr(tuning_module, "_within", lambda device, single, before, after, factor: True)
    t = tune(op, k=2, repeats=1, candidates=["graph", "double_backward", "one_chunk"])
    monkeypatch.undo()
    assert (t.strategy, t.chunk_size) == ("graph", sum(int(y.shape[0]) for _, y in c.data))
    assert configuration(op) == (t.strategy, t.batched_strategy, t.cuda_graphs, t.chunk_size)
    V = torch.randn(op.size, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    before = op.matmat(V)
    op.apply_tuning(t)
    assert configuration(op) == (t.strategy, t.batched_strategy, t.cuda_graphs, t.chunk_size)
    assert torch.equal(op.matmat(V), before)
    fresh = HessianOperator(c.model, c.data, c.loss_fn)
    fresh.apply_tuning(Tuning.from_dict(t.to_dict()))
    assert configuration(fresh) == configuration(op)
    assert torch.equal(fresh.matmat(V), before)


def test_tune_times_one_chunk_for_graph_reuse():
    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    timings = tune(op, k=2, repeats=1, candidates=["graph", "one_chunk"]).timings
    assert set(timings) == {"graph", "graph+one_chunk", "batched:loop"}
    total = sum(int(y.shape[0]) for _, y in c.data)
    assert op.chunk_size in (None, total)
    if op.chunk_size == total:
        assert 1.05 * timings["graph+one_chunk"] < timings["graph"]
    check_products(op, c.expected, f"after tune (chunk_size={op.chunk_size})", rtol=RTOL, atol=ATOL)
    single = tune(HessianOperator(c.model, c.data[:1], c.loss_fn), k=2, repeats=1, candidates=["graph", "one_chunk"])
    assert "graph+one_chunk" not in single.timings  # one mini-batch: nothing to merge


def test_tune_times_its_candidates_in_rounds(monkeypatch):
    """After one timing each (with its warm-up and memory peak), the candidates take turns: a load passing over
    the machine slows every candidate of a round alike, not one candidate's every repeat (a shared machine once
    made graph reuse look 100x slower than forward-over-reverse that way)."""
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    monkeypatch.setattr(tuning_module, "_HOPELESS", float("inf"))  # every candidate takes its turns
    seen_single, seen_batched = [], []
    matvec, matmat = HessianOperator._matvec, HessianOperator._matmat
    monkeypatch.setattr(HessianOperator, "_matvec", lambda self, v: seen_single.append(self.strategy) or matvec(self, v))
    monkeypatch.setattr(HessianOperator, "_matmat",
                        lambda self, V: seen_batched.append(self.batched_strategy) or matmat(self, V))
    tune(op, k=2, repeats=3, candidates=["graph", "double_backward", "forward_over_reverse", "vmap", "graph_batched"])
    singles = ["graph", "double_backward", "forward_over_reverse"]
    first_pass = [name for name in singles for _ in range(2)]  # warm-up, then one timing
    assert seen_single[:6] == first_pass and seen_single[6:12] == singles * 2  # then two rounds, in turn
    batched = ["vmap", "graph_batched"]
    assert seen_batched[:4] == [name for name in batched for _ in range(2)]
    assert seen_batched[4:10] == [*batched, "loop"] * 2  # the loop they must beat takes its turns too
    check_products(op, c.expected, "after tune", rtol=RTOL, atol=ATOL)


class _FakeClock:
    """``time`` for the tuning module: each product advances it by its strategy's cost, nothing else does."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def test_tune_leaves_hopeless_candidates_out_of_its_rounds(monkeypatch):
    """A candidate whose first timing (after its warm-up) is already twice the default's is left out of the
    rounds: on ResNet-20 on a CPU, vmap over ten vectors costs ~35 s a product, most of tune()'s time."""
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    clock = _FakeClock()
    monkeypatch.setattr(tuning_module, "time", clock)
    single_cost = {"graph": 1.0, "double_backward": 3.0, "forward_over_reverse": 1.5}
    batched_cost = {"loop": 2.0, "vmap": 5.0, "graph_batched": 3.0}  # k = 2: the loop costs two products
    seen_single, seen_batched, in_matmat = [], [], []
    matvec, matmat = HessianOperator._matvec, HessianOperator._matmat

    def fake_matvec(self, v):
        if not in_matmat:
            seen_single.append(self.strategy)
            clock.now += single_cost[self.strategy]
        return matvec(self, v)

    def fake_matmat(self, V):
        seen_batched.append(self.batched_strategy)
        clock.now += batched_cost[self.batched_strategy]
        in_matmat.append(True)
        try:
            return matmat(self, V)
        finally:
            in_matmat.pop()

    monkeypatch.setattr(HessianOperator, "_matvec", fake_matvec)
    monkeypatch.setattr(HessianOperator, "_matmat", fake_matmat)
    timings = tune(op, k=2, repeats=3, candidates=["forward_over_reverse", "double_backward", "graph", "vmap",
                                                    "graph_batched"]).timings
    # each candidate: a warm-up and one timing; double backward's 3 > 2 × 1 (graph reuse's): no rounds for it
    assert seen_single == [name for name in ("forward_over_reverse", "double_backward", "graph") for _ in range(2)] \
        + ["forward_over_reverse", "graph"] * 2
    # vmap's 5 > 2 × 2 (the loop of k = 2 products): no rounds for it; graph_batched takes its turns
    assert seen_batched == ["vmap", "vmap", "graph_batched", "graph_batched", *["graph_batched", "loop"] * 2]
    assert timings["double_backward"] == 3.0 and timings["forward_over_reverse"] == 1.5
    assert timings["batched:vmap"] == 2.5 and timings["batched:graph_batched"] == 1.5
    assert op.strategy == "graph" and op.batched_strategy == "loop"
    check_products(op, c.expected, "after tune", rtol=RTOL, atol=ATOL)


def test_tune_does_not_time_a_batched_candidate_whose_warm_up_broke_the_memory_rule(monkeypatch):
    """vmap over ten vectors on ResNet-20 on a CPU: ~35 s a product, and out on memory anyway (it holds ten sets of
    activations): its warm-up decides."""
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    seen = []
    matmat = HessianOperator._matmat
    monkeypatch.setattr(HessianOperator, "_matmat",
                        lambda self, V: seen.append(self.batched_strategy) or matmat(self, V))
    monkeypatch.setattr(tuning_module, "_within", lambda device, single, before, after, factor: False)
    timings = tune(op, k=2, repeats=3, candidates=["graph", "vmap", "graph_batched"]).timings
    assert seen == ["vmap", "graph_batched"]  # one warm-up each, no timing, no rounds
    assert timings["batched:vmap"] == timings["batched:graph_batched"] == float("inf")
    assert op.batched_strategy == "loop"


def test_tune_skips_a_failing_candidate(monkeypatch):
    """A strategy that fails (here: out of memory at its warm-up) is not timed and cannot be chosen."""
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    matvec = HessianOperator._matvec

    def failing(self, v):
        if self.strategy == "forward_over_reverse":
            raise RuntimeError("CUDA out of memory (simulated)")
        return matvec(self, v)

    monkeypatch.setattr(HessianOperator, "_matvec", failing)
    t = tune(op, k=2, repeats=2, candidates=["graph", "forward_over_reverse"])
    assert set(t.timings) == {"graph", "batched:loop"} and t.strategy == "graph"


def test_tune_with_custom_forward_skips_torch_func():
    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn, forward=lambda x: c.model(x))
    timings = tune(op, k=2, repeats=1).timings
    assert "forward_over_reverse" not in timings and "batched:vmap" not in timings
    check_products(op, c.expected, "tuned custom forward", rtol=RTOL, atol=ATOL)


def test_tune_does_not_time_cuda_graphs_without_a_gpu():
    case = cases.build("mlp_tanh_ce")
    op = HessianOperator(case.model, case.data, case.loss_fn)
    t = tune(op, k=2, repeats=1)
    assert "graph+cuda_graphs" not in t.timings and not t.cuda_graphs


def test_default_probes_per_product():
    assert PROBES_PER_PRODUCT == tuning_module.PROBES_PER_PRODUCT == 10


# ----- the rule (``--strategy auto``): no timing ---------------------------------------------------------------
def test_rule_picks_graph_reuse_one_chunk_and_single_products_without_timing(monkeypatch):
    """Small activations: graph reuse over all mini-batches merged into one chunk, products one at a time, no CUDA
    graphs on a CPU, no timings; and nothing is timed and no product is computed to decide it."""
    from prunehess.operators.rule import rule_tuning

    c = cases.build("cnn_batchnorm")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    monkeypatch.setattr(tuning_module, "time", None)  # a timing would fail
    monkeypatch.setattr(HessianOperator, "_matvec", lambda self, v: pytest.fail("the rule computed a product"))
    chosen = rule_tuning(op)
    monkeypatch.undo()
    total = sum(int(y.shape[0]) for _, y in c.data)
    assert chosen == Tuning("graph", "loop", False, total) and dict(chosen.timings) == {}
    assert chosen.to_dict()["timings"] == {} and Tuning.from_dict(chosen.to_dict()) == chosen
    assert configuration(op) == ("graph", "loop", False, None)  # chosen, not applied
    op.apply_tuning(chosen)
    check_products(op, c.expected, "the rule's configuration", rtol=RTOL, atol=ATOL)
    single = HessianOperator(c.model, c.data[:1], c.loss_fn)
    assert rule_tuning(single).chunk_size is None  # one mini-batch: nothing to merge


def test_rule_merges_only_what_fits_its_memory_budget():
    from prunehess.operators.rule import graph_bytes_per_sample, merged_chunk_size, rule_tuning

    c = cases.build("mlp_tanh_ce")  # mini-batches of 4, 4 and 2
    op = HessianOperator(c.model, c.data, c.loss_fn)
    per_sample = graph_bytes_per_sample(op.problem, op.names)
    copied = sum(x.element_size() * x.numel() + y.element_size() * y.numel() for x, y in c.data)
    assert rule_tuning(op, merge_budget=copied - 1).chunk_size is None  # not even the merged copy of the inputs
    assert rule_tuning(op, merge_budget=copied + 4 * per_sample).chunk_size == 8  # two mini-batches of 4
    assert rule_tuning(op, merge_budget=copied + 6 * per_sample).chunk_size == 10  # all of them
    op.apply_tuning(rule_tuning(op, merge_budget=copied + 4 * per_sample))
    assert [int(y.shape[0]) for _, y in op.problem.batches] == [8, 2]
    check_products(op, c.expected, "chunks of 8", rtol=RTOL, atol=ATOL)
    uneven = [(torch.zeros(n, 3), torch.zeros(n, dtype=torch.long)) for n in (5, 5, 5, 1)]
    assert merged_chunk_size(uneven, per_sample=0, budget=10**6) == 16
    assert merged_chunk_size(uneven[:1], per_sample=0, budget=10**6) is None


def test_graph_bytes_per_sample_is_what_the_kept_graph_holds_per_sample():
    """One sample's count against a whole mini-batch's, per sample: the tensors autograd saves for the first-order
    graph grow with the samples, and leave out the parameters and the batch's own storage."""
    from prunehess.operators.hvp import HVPProblem
    from prunehess.operators.rule import graph_bytes_per_sample, saved_bytes

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 30), torch.nn.ReLU(), torch.nn.Linear(30, 20), torch.nn.ReLU(),
                                torch.nn.Linear(20, 4)).double()
    x, y = torch.randn(64, 12, dtype=torch.float64), torch.randint(0, 4, (64,))
    problem = HVPProblem(model, torch.nn.functional.cross_entropy, [(x, y)], [1.0])
    names = [n for n, _ in model.named_parameters()]
    one = graph_bytes_per_sample(problem, names)
    assert one >= (30 + 20) * 8  # at least the hidden activations
    assert one < 10 * (12 + 30 + 20 + 4) * 8  # a few copies per activation, not more
    per_sample = saved_bytes(problem, names, x, y) / 64
    assert per_sample == pytest.approx(one, rel=0.1)  # what a mini-batch keeps, per sample


def test_rule_falls_back_to_double_backward_where_the_kept_graph_would_not_fit(monkeypatch):
    from prunehess.operators import rule

    c = cases.build("mlp_tanh_ce")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    monkeypatch.setattr(rule, "_free_bytes", lambda device: 1000)  # a kilobyte free
    assert rule.rule_tuning(op) == Tuning("double_backward")
    monkeypatch.setattr(rule, "_free_bytes", lambda device: None)  # unknown: graph reuse
    assert rule.rule_tuning(op).strategy == "graph"


# ----- the run's choice (pipeline.strategy): chosen once, saved, reused --------------------------------------------
def _run_strategy(tmp_path, requested: str):
    from prunehess.layout import OutputLayout
    from prunehess.pipeline.state import RunState
    from prunehess.pipeline.strategy import RunStrategy

    layout = OutputLayout(tmp_path / "out")
    layout.records_dir.mkdir(parents=True, exist_ok=True)
    notes = []
    return RunStrategy(requested, RunState(layout, "key"), torch.device("cpu"), notes.append), layout, notes


def test_auto_chooses_by_rule_saves_it_and_a_resumed_run_reuses_it(tmp_path, monkeypatch):
    from prunehess.pipeline import strategy as strategy_module

    c = cases.build("cnn_batchnorm")
    total = sum(int(y.shape[0]) for _, y in c.data)
    monkeypatch.setattr(strategy_module, "tune", lambda op: pytest.fail("auto timed the strategies"))
    run, layout, notes = _run_strategy(tmp_path, "auto")
    first, second = HessianOperator(c.model, c.data, c.loss_fn), HessianOperator(c.model, c.data, c.loss_fn)
    run.settle(first)
    run.settle(second)
    assert configuration(first) == configuration(second) == ("graph", "loop", False, total)
    saved = json.loads(layout.strategy_file.read_text())
    assert saved == {"strategy": "graph", "batched_strategy": "loop", "cuda_graphs": False, "chunk_size": total,
                     "timings": {}, "key": "key", "device": "cpu"}
    assert [n.text for n in notes] == [f"  HVP strategy (by rule, untimed): graph, chunks of {total} / batched loop"]
    check_products(second, c.expected, "auto", rtol=RTOL, atol=ATOL)
    # a resumed run (or another rank) applies the saved choice, whichever way it was made, without choosing again
    json.dump({**saved, "chunk_size": None}, layout.strategy_file.open("w"))
    monkeypatch.setattr(strategy_module, "rule_tuning", lambda op: pytest.fail("chose again"))
    resumed, _, notes = _run_strategy(tmp_path, "auto")
    assert resumed.known() == {k: v for k, v in saved.items() if k not in ("key", "device")} | {"chunk_size": None}
    op = HessianOperator(c.model, c.data, c.loss_fn)
    resumed.settle(op)
    assert configuration(op) == ("graph", "loop", False, None) and notes == []


def test_tune_times_on_the_first_checkpoint_and_saves_its_choice(tmp_path, monkeypatch):
    from prunehess.pipeline import strategy as strategy_module

    c = cases.build("mlp_tanh_ce")
    picked = Tuning("double_backward", "loop", timings={"graph": 0.002, "double_backward": 0.001})
    calls = []
    monkeypatch.setattr(strategy_module, "tune", lambda op: calls.append(op) or picked)
    monkeypatch.setattr(strategy_module, "rule_tuning", lambda op: pytest.fail("tune used the rule"))
    run, layout, notes = _run_strategy(tmp_path, "tune")
    assert run.known() == {}
    for _ in range(2):
        op = HessianOperator(c.model, c.data, c.loss_fn)
        run.settle(op)
        assert op.strategy == "double_backward"
    assert len(calls) == 1
    assert {k: v for k, v in json.loads(layout.strategy_file.read_text()).items() if k not in ("key", "device")} \
        == picked.to_dict()
    assert notes[0].text == "  HVP strategy: graph 2.0 ms, double_backward 1.0 ms -> double_backward / batched loop"
    assert run.known() == picked.to_dict()


def test_named_strategies_and_data_parallel_choose_nothing(tmp_path, monkeypatch):
    from prunehess.pipeline import strategy as strategy_module

    c = cases.build("mlp_tanh_ce")
    monkeypatch.setattr(strategy_module, "tune", lambda op: pytest.fail("timed"))
    monkeypatch.setattr(strategy_module, "rule_tuning", lambda op: pytest.fail("chose by rule"))
    run, layout, _ = _run_strategy(tmp_path, "double_backward")
    op = HessianOperator(c.model, c.data, c.loss_fn)
    run.settle(op)
    assert configuration(op) == ("double_backward", "loop", False, None) and not layout.strategy_file.exists()
    assert run.known() == {"strategy": "double_backward", "batched_strategy": "loop"}
    for requested in ("auto", "tune"):  # every rank of a data-parallel run: graph reuse, as given
        run, _, _ = _run_strategy(tmp_path / requested, requested)
        op = HessianOperator(c.model, c.data, c.loss_fn, reduce=lambda t: t)
        run.settle(op)
        assert configuration(op) == ("graph", "loop", False, None)


def test_rule_counts_a_whole_mini_batch_for_a_model_that_cannot_take_one_sample():
    from prunehess.operators.rule import graph_bytes_per_sample, saved_bytes

    class Squeezing(torch.nn.Module):  # a forward written for batches only: one sample loses its batch dimension
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3).double()

        def forward(self, x):
            return self.fc(torch.tanh(x)).squeeze()

    model = Squeezing()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    op = HessianOperator(model, [(x[:4], y[:4]), (x[4:], y[4:])])
    with pytest.raises((RuntimeError, ValueError, IndexError)):
        saved_bytes(op.problem, op.names, x[:1], y[:1])
    per_sample = graph_bytes_per_sample(op.problem, op.names)
    assert per_sample == -(-saved_bytes(op.problem, op.names, x[:4], y[:4]) // 4) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rule_on_a_gpu_replays_merged_chunks_from_cuda_graphs():
    """On a GPU the rule adds CUDA graphs (over the merged chunk); the products equal the CPU's dense Hessian."""
    from prunehess.operators.rule import rule_tuning

    c = cases.build("cnn_batchnorm")
    model = copy.deepcopy(c.model).cuda()
    data = [(x.cuda(), y.cuda()) for x, y in c.data]
    op = HessianOperator(model, data, c.loss_fn)
    chosen = rule_tuning(op)
    assert (chosen.strategy, chosen.batched_strategy, chosen.cuda_graphs) == ("graph", "loop", True)
    assert chosen.chunk_size == sum(int(y.shape[0]) for _, y in c.data)
    op.apply_tuning(chosen)
    V = torch.randn(op.size, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for j in range(3):  # captured at the first product, replayed after
        assert_close(op.matvec(V[:, j].cuda()).cpu(), c.expected @ V[:, j], rtol=RTOL, atol=ATOL, name=f"col {j}")
    with_dp = HessianOperator(model, data, c.loss_fn, forward=torch.nn.DataParallel(model))
    assert not rule_tuning(with_dp).cuda_graphs  # a custom forward: no capture
