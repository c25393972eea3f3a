"""Several prune types side by side (``--variants lt,reinit,random,hessian``), paired by construction.

Each variant is an ordinary run (:func:`~prunehess.training.run.run_training`) into ``<output>/<type>/`` with its
own zip (``<dataset>.zip``, files named ``…_<type>…``), ``train_config.yaml`` and resumable progress. They share
the seed, hence the initial weights (the ``initial_state_dict_<type>.pth`` files are byte-identical), the order
of the training batches in every epoch of every iteration, and the Hessian batch; the components (data, Hessian
batch) are loaded once for all of them. What differs is only what the type decides: which weights are pruned and
where the survivors restart — so a comparison between two variants is a paired one.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from prunehess.training.components import RunComponents, default_components
from prunehess.training.config import TrainConfig
from prunehess.training.hessian_aware import TraceFn
from prunehess.training.run import Emit, Measure, RunSummary, run_training

__all__ = ["run_variants"]


def _shared(components: RunComponents) -> RunComponents:
    """The components with the Hessian batch loaded at most once."""
    if components.hessian_batches is None:
        return components
    load, cache = components.hessian_batches, []

    def hessian_batches():
        if not cache:
            cache.append(list(load()))
        return cache[0]

    return dataclasses.replace(components, hessian_batches=hessian_batches)


def run_variants(
    config: TrainConfig,
    *,
    components: Optional[RunComponents] = None,
    tracker: Optional[Measure] = None,
    layer_traces: Optional[TraceFn] = None,
    on_event: Optional[Emit] = None,
) -> dict[str, RunSummary]:
    """Run (or resume) every run of ``config``: its ``variants`` one after the other, each into
    ``output/<type>/``, or the single run of ``prune_type`` into ``output``.

    The arguments are :func:`~prunehess.training.run.run_training`'s, shared by all variants.

    Returns:
        ``{prune type: RunSummary}`` in the order given.
    """
    configs = config.variant_configs()
    components = _shared(components or default_components(configs[0]))
    return {c.prune_type: run_training(c, components=components, tracker=tracker, layer_traces=layer_traces,
                                       on_event=on_event) for c in configs}
