"""The cheapest product on this machine: the yardstick of prunehess's floor ratio in ``bench_e2e.py``.

An extract's floor is the products its accuracy needs times the cheapest product measured for that model and
device. :func:`cheapest_products` builds the Hessian of the 300-100 network over the same Hessian batch as the
extract (same dataset, size, mini-batches and seed), loads the first checkpoint's weights, and times one product
of each candidate configuration — graph reuse over the mini-batches and over one merged chunk, PyHessian's double
backward over the mini-batches and over one chunk — for the whole network and (``per_layer``) each parameter
tensor's block; the candidates take turns, each timed ``repeats`` times after a warm-up, and a block's figure is
the smallest of the candidates' medians.
"""
from __future__ import annotations

import io
import statistics
import time
from typing import Optional

import torch

CONFIGS = (("graph", False), ("graph", True), ("double_backward", False), ("double_backward", True))


def cheapest_products(dataset: str, data_root: str, state: bytes, size: int, mini_batch_size: int, *,
                      per_layer: bool, repeats: int = 15) -> dict[Optional[int], float]:
    """Seconds of the cheapest product of each block: ``None`` for the whole network, ``k`` for layer ``k``."""
    from prunehess.data import dataset_info, hessian_batch
    from prunehess.models import build_model
    from prunehess.operators import HessianOperator

    info = dataset_info(dataset)
    model = build_model("fc1", input_shape=info.input_shape, num_classes=info.num_classes)
    model.load_state_dict(torch.load(io.BytesIO(state)))
    batches = hessian_batch(dataset, root=data_root, size=size, mini_batch_size=mini_batch_size, seed=1)
    op = HessianOperator(model, batches, masks=None)
    blocks: dict[Optional[int], object] = {None: op}
    if per_layer:
        blocks.update({k: op.restrict([name]) for k, name in enumerate(op.names)})
    times: dict[tuple, list[float]] = {}
    generator = torch.Generator().manual_seed(0)
    vectors = {k: torch.randn(b.size, generator=generator) for k, b in blocks.items()}
    for round_ in range(repeats + 1):
        for strategy, merged in CONFIGS:
            op.set_chunk_size(size if merged else None)  # shared by the blocks
            for k, block in blocks.items():
                block.set_strategy(strategy)
                block._matvec(vectors[k])  # builds the graph after a change of chunking
                started = time.perf_counter()
                block._matvec(vectors[k])
                if round_:  # the first round warms up
                    times.setdefault((k, strategy, merged), []).append(time.perf_counter() - started)
    op.release()
    return {k: min(statistics.median(times[(k, s, m)]) for s, m in CONFIGS) for k in blocks}
