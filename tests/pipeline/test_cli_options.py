"""``extract``'s options come from the declared fields of ExtractConfig: every spelling the command line ever had is
still there, each option's default and help are the dataclass's, and the resume key digests exactly the fields
declared as changing numbers."""
from __future__ import annotations

import click

from prunehess.cli import main
from prunehess.options import all_keys, numerics_items, option_fields
from prunehess.pipeline import ExtractConfig

SPELLINGS = [  # every flag of `prunehess extract` before the options were declared in the dataclasses
    "--batch-norm", "--batch_norm", "--compute-each-layer", "--compute_each_layer", "--config", "--cuda",
    "--data-parallel", "--data-root", "--data_root", "--dataset", "--depth", "--device", "--download", "--extract",
    "--hessian-batch-size", "--hessian_batch_size", "--layout", "--max-iter", "--max-ratio", "--max-unpacked-mb",
    "--method", "--mini-hessian-batch-size", "--mini_hessian_batch_size", "--model", "--no-batch-norm", "--no-cuda",
    "--no-extract", "--no-residual", "--no-test-accuracy", "--no-trace-deflation", "--no_batch_norm", "--output",
    "--parallel", "--params", "--residual", "--resume", "--seed", "--slq-runs", "--slq-steps", "--strategy",
    "--test-accuracy", "--tol", "--top-n", "--top_n", "--trace-deflation", "--trace-method", "--trace-min-probes",
    "--trace-probes", "--trace-tol", "--trust-checkpoints", "--zipname",
]


def _extract_params() -> dict[str, click.Option]:
    return {p.name: p for p in main.commands["extract"].params if isinstance(p, click.Option)}


def test_every_old_spelling_is_still_accepted():
    flags = {flag for p in _extract_params().values() for flag in (*p.opts, *p.secondary_opts)}
    assert not set(SPELLINGS) - flags


def test_defaults_and_help_come_from_the_dataclasses():
    params = _extract_params()
    declared = {key: (owner, field, spec) for owner, field, spec in option_fields(ExtractConfig)
                for key in [spec.key or field.name]}
    assert set(declared) == set(params) - {"config"}
    defaults = ExtractConfig().to_dict()
    for key, (_, _, spec) in declared.items():
        param = params[key]
        assert param.help == spec.help and spec.help, key
        assert param.default == defaults[key], key
        if spec.choices:
            assert list(param.type.choices) == list(spec.choices), key


def test_the_resume_key_digests_the_numbers_changing_fields():
    keys = set(numerics_items(ExtractConfig()))
    assert keys == {"dataset", "model", "depth", "batch_norm", "residual", "hessian_batch_size",
                    "mini_hessian_batch_size", "seed", "test_accuracy", "layout", "params", "compute_each_layer",
                    "top_n", "method", "tol", "max_iter", "save_eigenvectors", "trace_method", "trace_probes",
                    "trace_tol", "trace_min_probes", "trace_deflation", "slq_steps", "slq_runs", "bottom_n",
                    "bottom_tol", "bottom_max_iter", "curvature"}
    assert keys < set(all_keys(ExtractConfig))
    base = ExtractConfig.of(resume="a")
    for key, value in [("output", "elsewhere"), ("device", "cpu"), ("strategy", "graph"), ("resume", "b"),
                       ("data_root", "x"), ("max_ratio", 9.0), ("parallel", True)]:
        assert base.replace(**{key: value}).numerics_key() == base.numerics_key(), key
    for key, value in [("top_n", 2), ("seed", 3), ("slq_steps", 7), ("params", "all"), ("tol", 1e-4)]:
        assert base.replace(**{key: value}).numerics_key() != base.numerics_key(), key


def test_the_resume_key_is_a_digest_of_the_sorted_numerics_items():
    """The key's recipe is fixed: a rerun of the same version finds its records whatever the option order. (Outputs
    of versions before the negative-curvature analysis lack its files and columns, so they are recomputed once.)"""
    import hashlib
    import json

    config = ExtractConfig.of(resume="r", top_n=3, bottom_n=0, save_eigenvectors=True)
    digest = hashlib.sha256(json.dumps(numerics_items(config), sort_keys=True).encode()).hexdigest()[:16]
    assert config.numerics_key() == digest
    assert numerics_items(config)["bottom_n"] == 0 and numerics_items(config)["save_eigenvectors"] is True
