"""``prunehess extract`` through the CLI on zips in every checkpoint layout the tool reads.

Each test builds its own zip (or folder) and checks the detected layout, the file names of the output tree
(iteration + 1 padded to 3 digits, epoch padded to 2 or ``best``), the numeric order of the work and that files
matching no layout are named in one warning. The numbers themselves are checked in ``test_numbers.py``.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.nn.utils import prune


def _tags(output: Path, metric: str = "top_eigenvalues", layer: int | None = None) -> list[str]:
    folder = output / (metric if layer is None else f"{metric}_layer{layer}")
    return sorted(re.fullmatch(rf"{metric}(\d+_\w+)\.(txt|pdf)", p.name)[1] for p in folder.iterdir())


def _assert_complete(output: Path, tags: list[str]) -> None:
    """Every metric folder holds exactly the files of ``tags``."""
    for metric in ("top_eigenvalues", "trace", "density_eigen", "density_weight", "esd_plot"):
        assert _tags(output, metric) == sorted(tags), metric


def _progress_order(output_text: str) -> list[str]:
    return re.findall(r"^\[\d+/\d+\] (\S+) \(", output_text, flags=re.M)


def _percent(state: dict[str, torch.Tensor]) -> float:
    total = sum(v.numel() for v in state.values())
    alive = sum(int((v != 0).sum()) for v in state.values())
    return round(100.0 * alive / total, 1)


def test_lottery_ticket_flat_zip_with_the_default_model(kit, tmp_path):
    """The seed's trainer's names, a flat zip, fc1 (the default model) on digits."""
    states = {
        "initial_state_dict_lt.pth": kit.fc1_state(0),
        "0_model_lt_epoch0.pth": kit.fc1_state(1),
        "0_model_lt.pth": kit.fc1_state(2),
        "1_model_lt_epoch0.pth": kit.fc1_state(3, prune=0.5),
    }
    kit.write_zip(tmp_path / "run" / "mnist.zip", list(states.items()))
    out = tmp_path / "out"
    result = kit.extract(tmp_path / "run", out)
    assert "layout: lottery-ticket" in result.output
    assert "warning" not in result.output
    tags = ["000_00", "001_00", "001_best", "002_00"]
    _assert_complete(out, tags)
    assert _progress_order(result.output) == tags
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"] == "fc1" and config["dataset"] == "digits" and config["layout_detected"] == "lottery-ticket"
    # one eigenvalue (--top-n 1), one trace, 12 SLQ nodes (--slq-steps 12) whose weights sum to 1
    assert kit.numbers(out / "top_eigenvalues" / "top_eigenvalues002_00.txt").shape == (1,)
    assert kit.numbers(out / "trace" / "trace002_00.txt").shape == (1,)
    # the seed's density format: one node per line (12 lines for --slq-steps 12), one column per run
    assert len((out / "density_eigen" / "density_eigen002_00.txt").read_text().splitlines()) == 12
    assert kit.numbers(out / "density_eigen" / "density_eigen002_00.txt").shape == (12,)
    assert kit.numbers(out / "density_weight" / "density_weight002_00.txt").sum() == pytest.approx(1.0, abs=1e-9)
    assert (out / "esd_plot" / "esd_plot000_00.pdf").read_bytes().startswith(b"%PDF")
    # remain_params: iteration 0 (dense), iteration 1 (half of every weight matrix pruned)
    assert (out / "remain_params.txt").read_text().split() == [
        "100.0", f"{_percent(states['1_model_lt_epoch0.pth']):.1f}"]
    assert [n.split("\t")[1] for n in (out / "layers.txt").read_text().splitlines()[1:]] == [
        "classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias",
        "classifier.4.weight", "classifier.4.bias"]


def test_lottery_ticket_nested_zip_with_junk_and_pth_tar(kit, tmp_path):
    """A zip of a folder (as Finder or `zip -r` makes it), macOS junk, a README, and a `.pth.tar` twin."""
    model = kit.model_file(tmp_path)
    kit.write_zip(tmp_path / "run" / "cifar_run.zip", [
        ("experiments/", b""),
        ("experiments/lt/README.md", b"notes"),
        ("experiments/lt/ckpt/initial_state_dict_lt.pth", kit.tiny_state(0)),
        ("experiments/lt/ckpt/0_model_lt_epoch1.pth", kit.tiny_state(1)),
        ("experiments/lt/ckpt/0_model_lt.pth", kit.tiny_state(2)),
        ("experiments/lt/ckpt/0_model_lt.pth.tar", kit.tiny_state(2)),  # shadowed by 0_model_lt.pth
        ("__MACOSX/experiments/lt/ckpt/._0_model_lt.pth", b"\x00\x05\x16\x07"),
        ("experiments/.DS_Store", b"junk"),
    ])
    out = tmp_path / "out"
    result = kit.extract(tmp_path / "run", out, model=model)  # the folder's only zip: no --zipname needed
    assert "layout: lottery-ticket" in result.output
    _assert_complete(out, ["000_00", "001_01", "001_best"])
    assert (tmp_path / "run" / "cifar_run" / "experiments" / "lt" / "ckpt" / "0_model_lt.pth").is_file()
    assert not (tmp_path / "run" / "cifar_run" / "__MACOSX").exists()
    warnings = [ln for ln in result.output.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "0_model_lt.pth.tar" in warnings[0]


def test_openlth_levels_with_mask_pth(kit, tmp_path):
    """OpenLTH: level_<L>/main/model_ep<E>_it<I>.pth; the level's mask.pth decides the surviving weights, even
    where a surviving weight happens to be exactly zero."""
    model = kit.model_file(tmp_path)
    dense = kit.tiny_state(1)
    masks = {k: (torch.rand(v.shape, generator=torch.Generator().manual_seed(7)) > 0.6).float()
             for k, v in dense.items() if k.endswith("weight")}
    level1 = {k: v * masks[k] if k in masks else v.clone() for k, v in kit.tiny_state(2).items()}
    kept = masks["fc1.weight"].nonzero()[0]
    level1["fc1.weight"][tuple(kept)] = 0.0  # a surviving weight that is exactly zero: the mask keeps it
    kit.write_zip(tmp_path / "lth" / "mnist.zip", [
        ("lottery/level_0/main/model_ep2_it0.pth", dense),
        ("lottery/level_0/main/checkpoint.pth", {"model_state_dict": dense, "ep": 2}),  # resume file: ignored
        ("lottery/level_1/main/model_ep2_it0.pth", level1),
        ("lottery/level_1/main/mask.pth", masks),
        ("lottery/level_1/main/sparsity_report.json", b'{"total": 592, "unpruned": 240}'),
    ])
    out = tmp_path / "out"
    result = kit.extract(tmp_path / "lth", out, "--slq-steps", "700", model=model)
    assert "layout: openlth" in result.output and "warning" not in result.output
    _assert_complete(out, ["001_02", "002_02"])
    # with --slq-steps above the dimension, the density has one node per surviving coordinate
    active = int(sum(m.sum() for m in masks.values())) + 8 + 10
    assert np.loadtxt(out / "density_eigen" / "density_eigen002_02.txt", ndmin=2).shape == (active, 1)
    assert np.loadtxt(out / "density_eigen" / "density_eigen001_02.txt", ndmin=2).shape == (610, 1)


def test_lightning_ckpt_with_model_prefix_and_state_dict_wrapper(kit, tmp_path):
    """Lightning: epoch=<E>-step=<S>.ckpt under per-iteration folders (version_<N> skipped), keys `model.*` inside
    `state_dict`, with Lightning's other entries beside it; last.ckpt is a copy and is ignored quietly."""
    model = kit.model_file(tmp_path)

    def ckpt(seed, epoch, step, prune_fraction=0.0):
        state = {f"model.{k}": v for k, v in kit.tiny_state(seed, prune_fraction).items()}
        return {"epoch": epoch, "global_step": step, "pytorch-lightning_version": "2.1.0", "state_dict": state,
                "optimizer_states": [], "lr_schedulers": [], "callbacks": {}}

    kit.write_zip(tmp_path / "pl" / "mnist.zip", [
        ("iteration_0/version_0/checkpoints/epoch=2-step=20.ckpt", ckpt(0, 2, 20)),
        ("iteration_0/version_0/checkpoints/last.ckpt", ckpt(0, 2, 20)),
        ("iteration_1/version_0/checkpoints/epoch=2-step=20.ckpt", ckpt(1, 2, 20, 0.5)),
        ("iteration_1/version_0/checkpoints/epoch=11-step=110.ckpt", ckpt(2, 11, 110, 0.5)),
    ])
    out = tmp_path / "out"
    result = kit.extract(tmp_path / "pl", out, model=model)
    assert "layout: lightning" in result.output and "warning" not in result.output
    tags = ["001_02", "002_02", "002_11"]
    _assert_complete(out, tags)
    assert _progress_order(result.output) == tags  # epoch 11 after epoch 2: numeric, not by name


def test_torch_prune_pairs_are_folded_with_their_masks(kit, tmp_path):
    """`torch.nn.utils.prune` checkpoints hold <name>_orig and <name>_mask: the weight is orig * mask and the mask
    (not the zeros) decides the surviving coordinates."""
    model_spec = kit.model_file(tmp_path)
    net = kit.tiny_model(3)
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)
    prune.random_unstructured(net.fc2, "weight", amount=0.25)
    with torch.no_grad():  # a surviving weight that is exactly zero in orig: still a coordinate
        idx = tuple(net.fc1.weight_mask.nonzero()[0])
        net.fc1.weight_orig[idx] = 0.0
    state = net.state_dict()
    assert "fc1.weight_orig" in state and "fc1.weight_mask" in state and "fc1.weight" not in state
    kit.write_zip(tmp_path / "run" / "mnist.zip", [("0_model_lt.pth", kit.tiny_state(0)), ("1_model_lt.pth", state)])
    out = tmp_path / "out"
    kit.extract(tmp_path / "run", out, "--slq-steps", "700", model=model_spec)
    _assert_complete(out, ["001_best", "002_best"])
    active = int(state["fc1.weight_mask"].sum() + state["fc2.weight_mask"].sum()) + 8 + 10
    assert np.loadtxt(out / "density_eigen" / "density_eigen002_best.txt", ndmin=2).shape == (active, 1)
    remain = (out / "remain_params.txt").read_text().split()
    folded = {"fc1.weight": state["fc1.weight_orig"] * state["fc1.weight_mask"], "fc1.bias": state["fc1.bias"],
              "fc2.weight": state["fc2.weight_orig"] * state["fc2.weight_mask"], "fc2.bias": state["fc2.bias"]}
    assert remain == ["100.0", f"{_percent(folded):.1f}"]


def test_custom_layout_regex_on_an_unpacked_folder(kit, tmp_path):
    """--layout REGEX with named groups (iteration, epoch, best, initial) and --no-extract on a folder."""
    model = kit.model_file(tmp_path)
    folder = tmp_path / "my_run"
    files = {"init.pt": kit.tiny_state(0), "ckpts/it3/ep120.pt": kit.tiny_state(1),
             "ckpts/it3/ep7.pt": kit.tiny_state(2), "ckpts/it3/best.pt": kit.tiny_state(3),
             "ckpts/it12/ep0.pt": kit.tiny_state(4, 0.3)}
    for name, state in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, folder / name)
    regex = r"(?:(?P<initial>init)|ckpts/it(?P<iteration>\d+)/(?:ep(?P<epoch>\d+)|(?P<best>best)))\.pt"
    out = tmp_path / "out"
    result = kit.extract(folder, out, "--no-extract", "--layout", regex, model=model)
    assert "layout: custom" in result.output
    tags = ["000_00", "004_07", "004_120", "004_best", "013_00"]
    _assert_complete(out, tags)
    assert _progress_order(result.output) == tags
    assert (out / "top_eigenvalues" / "top_eigenvalues004_120.txt").is_file()
    assert not (tmp_path / "my_run" / "mnist").exists()  # --no-extract: nothing unpacked


def test_large_numbers_numeric_order_and_one_warning_for_unmatched_files(kit, tmp_path):
    """Epochs and iterations of 100 and more get their own names (the seed's collided or crashed); work and
    summary follow numeric order, not the zip's; files of no layout are listed in one warning."""
    model = kit.model_file(tmp_path)
    states = {
        "100_model_lt_epoch100.pth": kit.tiny_state(1, 0.8),
        "2_model_lt_epoch100.pth": kit.tiny_state(2),
        "10_model_lt_epoch20.pth": kit.tiny_state(3, 0.2),
        "initial_state_dict_lt.pth": kit.tiny_state(4),
        "99_model_lt.pth": kit.tiny_state(5, 0.5),
        "2_model_lt_epoch5.pth": kit.tiny_state(6),
    }
    unmatched = {"notes.pth": kit.tiny_state(7), "extra/weird.pt": kit.tiny_state(8),
                 "3_model_lt_epoch10_copy.pth": kit.tiny_state(9)}
    kit.write_zip(tmp_path / "run" / "mnist.zip", [*states.items(), *unmatched.items(), ("log.txt", b"hello")])
    out = tmp_path / "out"
    result = kit.extract(tmp_path / "run", out, model=model)
    tags = ["000_00", "003_05", "003_100", "011_20", "100_best", "101_100"]
    assert _progress_order(result.output) == tags
    _assert_complete(out, tags)
    for name in ("top_eigenvalues101_100.txt", "top_eigenvalues003_05.txt", "top_eigenvalues003_100.txt",
                 "top_eigenvalues100_best.txt", "top_eigenvalues000_00.txt"):
        assert (out / "top_eigenvalues" / name).is_file(), name
    warnings = [ln for ln in result.output.splitlines() if "warning" in ln.lower()]
    assert len(warnings) == 1, result.output
    assert "3 files" in warnings[0]
    for name in unmatched:
        assert Path(name).name in warnings[0]
    assert "log.txt" not in warnings[0]  # not checkpoint-like: ignored quietly
    rows = kit.summary(out)
    assert [(r["iteration"], r["epoch"]) for r in rows] == [(-1, 0), (2, 5), (2, 100), (10, 20), (99, None),
                                                            (100, 100)]
    # one line per iteration, in iteration order (2, 10, 99, 100)
    expected = [_percent(states[n]) for n in ("2_model_lt_epoch5.pth", "10_model_lt_epoch20.pth",
                                               "99_model_lt.pth", "100_model_lt_epoch100.pth")]
    assert [float(v) for v in (out / "remain_params.txt").read_text().split()] == expected
    assert expected == sorted(expected, reverse=True) and len(set(expected)) == 4


def test_two_runs_in_one_zip_are_refused_with_a_layout_suggestion(kit, tmp_path):
    kit.write_zip(tmp_path / "run" / "mnist.zip", [("0_model_lt.pth", kit.tiny_state(0)),
                                                   ("0_model_reinit.pth", kit.tiny_state(1))])
    result = kit.invoke("extract", "--resume", tmp_path / "run", "--output", tmp_path / "out",
                        "--model", kit.model_file(tmp_path), *kit.FAST)
    line = kit.error_line(result, "2 runs", "lt, reinit", "--layout", alone=False)
    assert str(tmp_path / "run" / "mnist") in line


def test_help_explains_every_option_with_examples(kit):
    result = kit.ok(kit.invoke("extract", "--help"))
    for option in ("--resume", "--zipname", "--dataset", "--model", "--output", "--mini-hessian-batch-size",
                   "--hessian-batch-size", "--seed", "--batch-norm", "--residual", "--cuda", "--compute-each-layer",
                   "--extract", "--parallel", "--config", "--data-root", "--download", "--top-n", "--method",
                   "--trace-probes", "--slq-steps", "--slq-runs", "--params", "--device", "--layout",
                   "--trust-checkpoints", "--max-unpacked-mb", "--max-ratio"):
        assert option in result.output, option
    assert "Example" in result.output


def test_bundled_sample_with_the_run_defaults_from_its_train_config(kit, tmp_path):
    """The bundled sample (fc1 trained on digits by `prunehess train`): dataset and model come from the
    train_config.yaml inside the zip; a --layout that picks the best checkpoint of every iteration keeps it quick,
    and remain_params.txt matches the trainer's own (20 % of each layer's weights pruned per iteration)."""
    import shutil

    sample = Path(__file__).resolve().parents[2] / "sample_checkpoints" / "digits.zip"
    if not sample.is_file():
        pytest.skip("the bundled sample is not in this checkout")
    (tmp_path / "runs").mkdir()
    shutil.copy(sample, tmp_path / "runs" / "digits.zip")
    out = tmp_path / "out"
    args = ["extract", "--resume", tmp_path / "runs", "--output", out, "--layout", r"(?P<iteration>\d+)_model_lt\.pth",
            "--hessian-batch-size", 100, "--slq-steps", 8, "--trace-probes", 4, "--strategy", "graph", "--no-cuda"]
    result = kit.ok(kit.invoke(*args))
    assert "4 computed" in result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["dataset"] == "digits" and config["model"] == "fc1" and config["zipname"] == "digits.zip"
    _assert_complete(out, ["001_best", "002_best", "003_best", "004_best"])
    with zipfile.ZipFile(sample) as zf:
        trainer = zf.read("remain_params.txt").decode().split()
    assert (out / "remain_params.txt").read_text().split() == trainer
    accuracies = [row["test_accuracy"] for row in kit.summary(out)]
    assert all(0.5 < a <= 1.0 for a in accuracies), accuracies  # trained networks, not random ones
