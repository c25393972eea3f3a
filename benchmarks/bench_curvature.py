#!/usr/bin/env python
"""Seconds per product of the Hessian, the generalised Gauss–Newton and the empirical Fisher operators.

LeNet-300-100 (``prunehess.models.FC1`` on 28×28 images) on ``--samples`` samples of real MNIST in mini-batches of
``--mini-batch`` when ``<data-root>/MNIST`` exists (``prunehess.data.hessian_batch``), else scikit-learn's digits
upsampled to 28×28; the network as initialised and trained for ``--steps`` SGD steps on that batch (so the
curvature is not a random network's), dense, and with ``--prune`` of each weight matrix zeroed by magnitude (the
operators then act on the surviving weights). For each: the Hessian with the strategies ``tune`` picks; the GGN
(``reuse`` and ``recompute``, and ``vmap`` over ``--k`` vectors); the empirical Fisher (building the per-sample
gradients, then cached and recomputed products); and curvlinops' ``GGNLinearOperator`` when ``curvlinops`` is
importable (dense network only: it has no masks), with the relative difference of its product from prunehess's.
Times are medians of ``--repeats`` after a warm-up; batched ones per vector.

    python benchmarks/bench_curvature.py [--device cuda] [--samples 1000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
try:
    import prunehess  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parent))

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prunehess.data import hessian_batch  # noqa: E402
from prunehess.estimators import exact_diagonal  # noqa: E402
from prunehess.models import build_model  # noqa: E402
from prunehess.operators import EmpiricalFisherOperator, GGNOperator, HessianOperator, tune  # noqa: E402

sys.path.insert(0, str(HERE))
from _bench_measure import sync, timed  # noqa: E402


def load_batch(args, device: torch.device) -> tuple[list, str]:
    root = Path(args.data_root)
    if (root / "MNIST").is_dir():
        data = hessian_batch("mnist", root=root, size=args.samples, mini_batch_size=args.mini_batch, seed=0,
                             device=device)
        return data, f"{args.samples} real MNIST samples ({root / 'MNIST'})"
    data = hessian_batch("digits", root=root, size=args.samples, mini_batch_size=args.mini_batch, seed=0)
    data = [(F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).to(device), y.to(device))
            for x, y in data]
    return data, f"{args.samples} scikit-learn digits upsampled to 28x28 (no MNIST under {root})"


def trained_models(data: list, args, device: torch.device):
    """LeNet-300-100 after ``args.steps`` SGD steps on the batch, and a copy with ``args.prune`` of each weight
    matrix zeroed by magnitude (exact zeros: masks detected by the operators)."""
    torch.manual_seed(0)
    model = build_model("fc1", input_shape=(1, 28, 28), num_classes=10).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(args.steps):
        x, y = data[step % len(data)]
        optimiser.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
    model.eval()
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        for p in pruned.parameters():
            if p.dim() >= 2:
                p[p.abs() <= p.abs().flatten().kthvalue(int(args.prune * p.numel())).values] = 0
    return {"dense": model, f"pruned {args.prune:.0%}": pruned}


def per_product(op, args, device: torch.device, batched: bool = False) -> float:
    """Median seconds per product (per vector when ``batched``), after a warm-up."""
    g = torch.Generator().manual_seed(0)
    V = torch.randn(op.size, args.k if batched else 1, generator=g).to(op.dtype).to(device)
    fn = (lambda: op.matmat(V)) if batched else (lambda: op.matvec(V[:, 0]))
    seconds, _ = timed(fn, device, repeats=args.repeats, warmup=1)
    return seconds / (args.k if batched else 1)


def once(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure(model, data, args, device: torch.device) -> list[tuple[str, float, str]]:
    rows = []
    H = HessianOperator(model, data)
    choice = tune(H)
    rows.append(("Hessian, tuned", per_product(H, args, device), f"{choice.strategy}, chunk {choice.chunk_size}"))
    rows.append((f"Hessian, {args.k} at once (per vector)", per_product(H, args, device, True), H.batched_strategy))
    H.release()
    G = GGNOperator(model, data, batched_strategy="vmap")
    rows.append(("GGN, reuse", per_product(G, args, device), "one JVP + one VJP, forward graph kept"))
    rows.append((f"GGN, {args.k} at once (per vector)", per_product(G, args, device, True), "vmap"))
    G.set_strategy("recompute", "vmap")
    rows.append(("GGN, recompute", per_product(G, args, device), "forward rebuilt per product"))
    rows.append(("GGN exact diagonal (whole)", once(lambda: exact_diagonal(G), device), "per-sample VJPs, 10/sample"))
    G.release()
    Fo = EmpiricalFisherOperator(model, data)
    rows.append(("Fisher, per-sample gradients (once)", once(lambda: Fo.matvec(torch.zeros(Fo.size, device=device)),
                                                           device), f"{Fo.cache_nbytes() / 1e6:.0f} MB cached"))
    rows.append(("Fisher, cached", per_product(Fo, args, device), "two matrix-vector products"))
    rows.append((f"Fisher, {args.k} at once (per vector)", per_product(Fo, args, device, True), "matmul"))
    Fo.release()
    Fo.set_strategy("recompute")
    rows.append(("Fisher, recompute", per_product(Fo, args, device), "vmap(grad) per product"))
    return rows


def curvlinops_rows(model, data, args, device: torch.device) -> list[tuple[str, float, str]]:
    try:
        from curvlinops import GGNLinearOperator
    except ImportError:
        return [("curvlinops GGN", float("nan"), "curvlinops not importable")]
    params = [p for p in model.parameters() if p.requires_grad]
    op = GGNLinearOperator(model, torch.nn.CrossEntropyLoss(), params, data, progressbar=False,
                           check_deterministic=False)
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(1)).to(device)
    seconds, theirs = timed(lambda: op @ v, device, repeats=args.repeats, warmup=1)
    ours = GGNOperator(model, data, masks=None).matvec(v)
    diff = float((theirs.reshape(-1) - ours).norm() / ours.norm())
    return [("curvlinops GGNLinearOperator", seconds, f"relative difference from ours {diff:.1e}")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--mini-batch", type=int, default=200)
    p.add_argument("--steps", type=int, default=50, help="SGD steps before measuring")
    p.add_argument("--prune", type=float, default=0.8, help="fraction of each weight matrix zeroed")
    p.add_argument("--k", type=int, default=10, help="vectors per batched product")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: torch's; 1 gives steadier figures on a shared machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data, note = load_batch(args, device)
    print(f"LeNet-300-100 on {note}, mini-batches of {args.mini_batch}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for label, model in trained_models(data, args, device).items():
        rows = measure(model, data, args, device)
        if label == "dense":
            rows += curvlinops_rows(model, data, args, device)
        n = sum(int((q != 0).sum()) if q.dim() >= 2 else q.numel() for q in model.parameters())
        print(f"\n{label} ({n:,} weights)\n{'quantity':<40} {'ms':>10}  note")
        for name, seconds, extra in rows:
            print(f"{name:<40} {seconds * 1e3:>10.2f}  {extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
