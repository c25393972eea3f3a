#!/usr/bin/env python
"""The seed's job done with PyHessian, as one script: what ``bench_e2e.py`` times against ``prunehess extract``.

A PyHessian user's script, written from PyHessian's documented API (PyPI ``pyhessian`` 0.1) and the seed's
formats (``../shared/SEED_FORMATS.md``): unzip the checkpoints, and for each one load the weights into the
300-100 network, build ``hessian(model, criterion, dataloader=batches)`` over the Hessian batch, then
``eigenvalues(top_n=1)``, ``trace()`` and ``density()`` with their defaults, and write what the seed writes —
``top_eigenvalues/``, ``trace/`` (the mean of the Hutchinson samples), ``density_eigen/``, ``density_weight/`` and
the ESD figure ``esd_plot/*.pdf``; with ``--compute-each-layer`` the same per parameter tensor (the others'
``requires_grad`` switched off, as PyHessian sees only parameters that require gradients) into
``<metric>_layer<k>/``.

- Data as such a user loads it: digits with ``sklearn.datasets.load_digits`` (1500 training images, /16),
  MNIST with ``torchvision.datasets.MNIST`` (normalised 0.1307/0.3081); the Hessian batch is the same seeded
  permutation ``prunehess`` takes, already split into tensors (PyHessian's strongest form: no DataLoader).
- The ESD figure: PyHessian's ``density_plot.get_esd_plot`` is in its GitHub repository, not in the PyPI package.
  With ``--pyhessian-repo DIR`` (a clone) that function draws it (it saves ``example.pdf`` in the working folder,
  moved to its place); otherwise :func:`esd_figure`, written here from its documented behaviour: 10,000 grid
  points over ``[min node − 0.01, max node + 0.01]``, a Gaussian of variance ``1e-5·max(1, λmax − λmin)`` per
  node, evaluated one grid point at a time, normalised; ``plt.semilogy`` of ``density + 1e-7``, labels at
  fontsize 14, ticks at 12, x limits one beyond the nodes, ``tight_layout``, ``savefig``. Unlike the seed it
  closes the figure after saving (the seed's curves piled up from one checkpoint to the next).
- ``density()`` calls ``torch.eig``, removed in PyTorch 2: ``_bench_pyhessian.eig_shim`` puts that one function
  back (``torch.linalg.eigh`` on PyHessian's symmetric tridiagonal), as in ``bench_engine.py``.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resume", required=True, help="folder holding the zip")
    p.add_argument("--zipname", default="mnist.zip")
    p.add_argument("--dataset", choices=("digits", "mnist"), default="mnist")
    p.add_argument("--data-root", default="data")
    p.add_argument("--output", required=True)
    p.add_argument("--hessian-batch-size", type=int, default=1000)
    p.add_argument("--mini-hessian-batch-size", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--compute-each-layer", action="store_true")
    p.add_argument("--pyhessian-repo", default=None, help="a clone of PyHessian's repository (for density_plot)")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


# ----- the data and the model, as a user writes them ---------------------------------------------------------------
def hessian_batches(args):
    import torch

    if args.dataset == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.images[:1500], dtype=torch.float32).unsqueeze(1) / 16.0
        y = torch.tensor(digits.target[:1500], dtype=torch.int64)
    else:
        from torchvision import datasets

        train = datasets.MNIST(args.data_root, train=True, download=False)
        x = (train.data.float().div(255.0).sub(0.1307).div(0.3081)).unsqueeze(1)
        y = train.targets
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(args.seed))[: args.hessian_batch_size]
    x, y = x[order], y[order]
    m = args.mini_hessian_batch_size
    return [(x[i : i + m], y[i : i + m]) for i in range(0, len(y), m)], int(x[0].numel())


def fc1(in_features: int):
    from torch import nn

    class FC1(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = nn.Sequential(nn.Linear(in_features, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                                            nn.Linear(100, 10))

        def forward(self, x):
            return self.classifier(x.flatten(1))

    return FC1()


# ----- the seed's checkpoint names and output files -------------------------------------------------------------
_NAME = re.compile(r"^(?:(?P<initial>initial_state_dict)_\w+|(?P<ite>\d+)_model_\w+?(?:_epoch(?P<epoch>\d+))?)\.pth$")


def checkpoints(folder: Path):
    """``(III, EE, path)`` of each checkpoint in the seed's lottery-ticket naming."""
    found = []
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match is None:
            continue
        if match["initial"]:
            found.append(("000", "00", path))
        else:
            epoch = match["epoch"]
            found.append((f"{int(match['ite']) + 1:03d}", f"{int(epoch):02d}" if epoch is not None else "best", path))
    return found


def write_lines(output: Path, metric: str, tag: str, values) -> None:
    folder = output / metric
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{metric}{tag}.txt").write_text("".join(f"{float(v)}\n" for v in values))


# ----- the ESD figure -------------------------------------------------------------------------------------------
def esd_figure(eigenvalues, weights, path: Path) -> None:
    """PyHessian's ESD figure, written from its documented behaviour (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    nodes, w = np.array(eigenvalues, dtype=float), np.array(weights, dtype=float)
    hi = np.mean(np.max(nodes, axis=1)) + 0.01
    lo = np.mean(np.min(nodes, axis=1)) - 0.01
    grid = np.linspace(lo, hi, num=10000)
    var = 1e-5 * max(1.0, hi - lo)
    density = np.zeros((nodes.shape[0], grid.size))
    for run in range(nodes.shape[0]):
        for j, x in enumerate(grid):
            bumps = np.exp(-((x - nodes[run]) ** 2) / (2.0 * var)) / np.sqrt(2 * np.pi * var)
            density[run, j] = np.sum(bumps * w[run])
    density = density.mean(axis=0)
    density /= density.sum() * (grid[1] - grid[0])
    plt.semilogy(grid, density + 1.0e-7)
    plt.ylabel("Density (Log Scale)", fontsize=14, labelpad=10)
    plt.xlabel("Eigenvlaue", fontsize=14, labelpad=10)
    plt.xticks(fontsize=12)
    plt.yticks(fontsize=12)
    plt.axis([np.min(nodes) - 1, np.max(nodes) + 1, None, None])
    plt.tight_layout()
    plt.savefig(path)
    plt.close("all")


def esd_with_repo(eigenvalues, weights, path: Path) -> None:
    """PyHessian's own ``density_plot.get_esd_plot`` (it saves ``example.pdf`` in the working folder)."""
    import density_plot  # from --pyhessian-repo
    import matplotlib.pyplot as plt

    density_plot.get_esd_plot(eigenvalues, weights)
    shutil.move("example.pdf", path)
    plt.close("all")


# ----- one checkpoint -------------------------------------------------------------------------------------------
def analyse(model, batches, output: Path, tag: str, suffix: str, esd) -> int:
    """PyHessian's three analyses on ``model``'s parameters that require gradients; returns its products."""
    from torch import nn

    from _bench_pyhessian import HVPCounter, eig_shim

    from pyhessian import hessian

    model.zero_grad(set_to_none=True)
    with HVPCounter().installed() as counter, eig_shim():
        H = hessian(model, nn.CrossEntropyLoss(), dataloader=batches, cuda=False)
        top, _ = H.eigenvalues(top_n=1)
        trace = H.trace()
        eigen, weight = H.density()
    write_lines(output, f"top_eigenvalues{suffix}", tag, top)
    write_lines(output, f"trace{suffix}", tag, [sum(trace) / len(trace)])
    write_lines(output, f"density_eigen{suffix}", tag, eigen[0])
    write_lines(output, f"density_weight{suffix}", tag, weight[0])
    (output / f"esd_plot{suffix}").mkdir(parents=True, exist_ok=True)
    esd(eigen, weight, output / f"esd_plot{suffix}" / f"esd_plot{tag}.pdf")
    return counter.count


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pyhessian_repo:
        sys.path.insert(0, str(Path(args.pyhessian_repo).resolve()))
    esd = esd_with_repo if args.pyhessian_repo else esd_figure
    resume, output = Path(args.resume), Path(args.output)
    folder = resume / Path(args.zipname).stem
    with zipfile.ZipFile(resume / args.zipname) as archive:
        archive.extractall(folder)
    batches, in_features = hessian_batches(args)
    model = fc1(in_features)
    products = 0
    for tag_iii, tag_ee, path in checkpoints(folder):
        tag = f"{tag_iii}_{tag_ee}"
        model.load_state_dict(torch.load(path, map_location="cpu"))
        products += analyse(model, batches, output, tag, "", esd)
        if args.compute_each_layer:
            params = list(model.parameters())
            for k, p in enumerate(params):
                for q in params:
                    q.requires_grad_(q is p)
                products += analyse(model, batches, output, tag, f"_layer{k}", esd)
            for q in params:
                q.requires_grad_(True)
    print(f"pyhessian: {products} products, {time.perf_counter() - started:.1f} s after start-up", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
