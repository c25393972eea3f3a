"""discover: each layout, numeric order (epochs and iterations >= 100), unmatched files, custom patterns."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from prunehess.checkpoints.naming import CheckpointRef, discover
from prunehess.errors import ArchiveError, ConfigError


def triples(discovery) -> list[tuple]:
    return [(r.iteration, r.epoch, r.kind) for r in discovery.checkpoints]


def rel(root: Path, paths) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in paths]


# --- lottery-ticket (the seed) ----------------------------------------------------------------------------------


def test_lottery_ticket_flat_numeric_order(tree):
    names = ["initial_state_dict_lt.pth"]
    for ite in (0, 1, 2, 10, 99, 100, 101):
        names += [f"{ite}_model_lt.pth"] + [f"{ite}_model_lt_epoch{e}.pth" for e in (0, 5, 10, 80, 100, 120)]
    root = tree(list(reversed(names)))
    found = discover(root)
    assert found.naming == "lottery-ticket" and not found.unmatched and not found.masks
    expected = [(-1, 0, "initial")]
    for ite in (0, 1, 2, 10, 99, 100, 101):
        expected += [(ite, e, "snapshot") for e in (0, 5, 10, 80, 100, 120)] + [(ite, None, "best")]
    assert triples(found) == expected
    assert found.checkpoints[0].path == root / "initial_state_dict_lt.pth"
    assert found.checkpoints[-1].path == root / "101_model_lt.pth"


def test_lottery_ticket_nested_and_pth_tar(tree):
    root = tree(["saves/fc1/mnist/0_model_reinit_epoch10.pth.tar", "saves/fc1/mnist/0_model_reinit.pth.tar",
                 "saves/fc1/mnist/initial_state_dict_reinit.pth.tar", "README.md", "remain_params.txt"])
    found = discover(root)
    assert triples(found) == [(-1, 0, "initial"), (0, 10, "snapshot"), (0, None, "best")]
    assert rel(root, [r.path for r in found.checkpoints])[1] == "saves/fc1/mnist/0_model_reinit_epoch10.pth.tar"
    assert found.unmatched == []


def test_pth_is_preferred_over_pth_tar_which_is_listed(tree):
    root = tree(["0_model_lt.pth", "0_model_lt.pth.tar", "0_model_lt_epoch0.pth"])
    found = discover(root)
    assert rel(root, [r.path for r in found.checkpoints]) == ["0_model_lt_epoch0.pth", "0_model_lt.pth"]
    assert rel(root, found.unmatched) == ["0_model_lt.pth.tar"]


def test_two_runs_are_refused_with_a_layout_that_picks_one(tree):
    root = tree(["initial_state_dict_lt.pth", "0_model_lt.pth", "0_model_lt_epoch10.pth",
                 "initial_state_dict_reinit.pth", "0_model_reinit.pth", "0_model_reinit_epoch10.pth"])
    with pytest.raises(ArchiveError) as info:
        discover(root)
    message = str(info.value)
    assert "types lt, reinit" in message and "\n" not in message
    suggestion = re.search(r"--layout '(.*)'$", message)[1]
    found = discover(root, naming_regex=suggestion)
    assert found.naming == "custom"
    assert triples(found) == [(-1, 0, "initial"), (0, 10, "snapshot"), (0, None, "best")]
    assert all("_lt" in r.path.name for r in found.checkpoints)
    assert sorted(p.name for p in found.unmatched) == ["0_model_reinit.pth", "0_model_reinit_epoch10.pth",
                                                        "initial_state_dict_reinit.pth"]


def test_same_checkpoint_twice_is_refused_naming_both(tree):
    root = tree(["a/3_model_lt_epoch10.pth", "b/3_model_lt_epoch10.pth"])
    with pytest.raises(ArchiveError, match=r"iteration 3, epoch 10: a/3_model_lt_epoch10.pth, b/3_model_lt_epoch"):
        discover(root)


# --- OpenLTH ----------------------------------------------------------------------------------------------------


def test_openlth(tree):
    names = []
    for level in (0, 1, 2, 10, 100):
        base = f"open_lth_data/lottery_abc/replicate_1/level_{level}/main/"
        names += [base + n for n in ("model_ep0_it0.pth", "model_ep160_it0.pth", "model_ep2_it136.pth", "mask.pth",
                                     "sparsity_report.json", "checkpoint.pth", "logger", "hparams.log")]
    root = tree(names)
    found = discover(root)
    assert found.naming == "openlth"
    assert triples(found) == [(lv, e, "snapshot") for lv in (0, 1, 2, 10, 100) for e in (0, 2, 160)]
    assert sorted(found.masks) == sorted(found.reports) == [0, 1, 2, 10, 100]
    assert found.masks[100] == root / "open_lth_data/lottery_abc/replicate_1/level_100/main/mask.pth"
    assert found.reports[2].name == "sparsity_report.json"
    assert found.unmatched == []  # checkpoint.pth is OpenLTH's resume file: ignored quietly


def test_openlth_two_replicates_are_refused(tree):
    root = tree([f"replicate_{r}/level_0/main/model_ep0_it0.pth" for r in (1, 2)])
    with pytest.raises(ArchiveError, match="several checkpoints for iteration 0, epoch 0"):
        discover(root)


# --- Lightning --------------------------------------------------------------------------------------------------


def test_lightning_iteration_from_the_enclosing_folder(tree):
    root = tree([
        "iteration_3/lightning_logs/version_0/checkpoints/epoch=3-step=100.ckpt",
        "iteration_3/lightning_logs/version_0/checkpoints/epoch=120-step=4000.ckpt",
        "iteration_3/lightning_logs/version_0/checkpoints/last.ckpt",
        "level_12/epoch=0-step=0.ckpt",
        "101/epoch=7-step=9-val_loss=0.12.ckpt",
        "round-0/epoch=1-step=2.ckpt",
        "checkpoints/epoch=5-step=5.ckpt",  # no iteration folder
    ])
    found = discover(root)
    assert found.naming == "lightning"
    assert triples(found) == [(0, 1, "snapshot"), (3, 3, "snapshot"), (3, 120, "snapshot"), (12, 0, "snapshot"),
                              (101, 7, "snapshot")]
    assert rel(root, found.unmatched) == ["checkpoints/epoch=5-step=5.ckpt"]


# --- custom -----------------------------------------------------------------------------------------------------


def test_custom_regex_on_the_relative_path_or_the_name(tree):
    root = tree(["run7/e120.bin", "run7/e9.bin", "run7/best.bin", "run100/e0.bin", "init.bin", "notes.txt",
                 "other.pt"])
    regex = r"(?:run(?P<iteration>\d+)/(?:e(?P<epoch>\d+)|best)|(?P<initial>init))\.bin"
    found = discover(root, naming_regex=regex)
    assert found.naming == "custom"
    assert triples(found) == [(-1, 0, "initial"), (7, 9, "snapshot"), (7, 120, "snapshot"), (7, None, "best"),
                              (100, 0, "snapshot")]
    assert rel(root, found.unmatched) == ["other.pt"]


def test_custom_regex_matching_nothing(tree):
    root = tree(["a.pth"])
    regex = r"x(?P<iteration>\d+)"
    with pytest.raises(ArchiveError) as info:
        discover(root, naming_regex=regex)
    assert f"no file matches --layout {regex!r}" in str(info.value) and "a.pth" in str(info.value)


def test_custom_regex_matches_the_file_name_alone(tree):
    root = tree(["deep/er/it2_ep10.pt", "deep/it2_best.pt"])
    found = discover(root, naming_regex=r"it(?P<iteration>\d+)_(?:ep(?P<epoch>\d+)|(?P<best>best))\.pt")
    assert triples(found) == [(2, 10, "snapshot"), (2, None, "best")]


@pytest.mark.parametrize("regex, words", [("(?P<iteration>\\d+", "not a valid regular expression"),
                                          ("(?P<epoch>\\d+)", "(?P<iteration>")])
def test_bad_custom_regex(tree, regex, words):
    root = tree(["a.pth"])
    with pytest.raises(ConfigError) as info:
        discover(root, naming_regex=regex)
    assert words in str(info.value) and "--layout" in str(info.value)


# --- unmatched, errors, junk ------------------------------------------------------------------------------------


def test_unmatched_lists_only_checkpoint_like_files(tree):
    root = tree(["0_model_lt.pth", "weights.bin", "sub/final.pt", "3_model_lt_epoch10_copy.pth", "model.ckpt", "backup.tar", "README.md",
                 "remain_params.txt", "summary.csv", "train.log", "level_0/main/model_ep0_it0.pth"])
    found = discover(root)
    assert found.naming == "lottery-ticket"
    assert rel(root, found.unmatched) == ["3_model_lt_epoch10_copy.pth", "backup.tar", "level_0/main/model_ep0_it0.pth", "model.ckpt",
                                          "sub/final.pt", "weights.bin"]


def test_no_checkpoints(tree):
    root = tree(["README.md", "final.pt"])
    with pytest.raises(ArchiveError) as info:
        discover(root)
    message = str(info.value)
    assert message.startswith(f"{root}: no checkpoints found (looked for")
    assert "--layout" in message and "final.pt" in message and "\n" not in message


def test_root_must_be_a_folder(tmp_path):
    with pytest.raises(ArchiveError, match="not a folder"):
        discover(tmp_path / "missing")


def test_macos_junk_is_skipped(tree):
    root = tree(["0_model_lt.pth", "__MACOSX/._0_model_lt.pth", "__MACOSX/0_model_lt.pth", "._1_model_lt.pth",
                 ".DS_Store"])
    found = discover(root)
    assert triples(found) == [(0, None, "best")] and found.unmatched == []


def test_majority_layout_wins_and_the_rest_is_listed(tree):
    root = tree(["0_model_lt.pth", "1_model_lt.pth", "iteration_0/epoch=1-step=1.ckpt"])
    found = discover(root)
    assert found.naming == "lottery-ticket"
    assert rel(root, found.unmatched) == ["iteration_0/epoch=1-step=1.ckpt"]


# --- CheckpointRef ----------------------------------------------------------------------------------------------


def test_refs_sort_with_best_last_and_compare_by_value():
    refs = [CheckpointRef(1, None, Path("b"), "best"), CheckpointRef(1, 100, Path("s"), "snapshot"),
            CheckpointRef(-1, 0, Path("i"), "initial"), CheckpointRef(1, 20, Path("t"), "snapshot"),
            CheckpointRef(0, None, Path("c"), "best")]
    assert [(r.iteration, r.epoch) for r in sorted(refs)] == [(-1, 0), (0, None), (1, 20), (1, 100), (1, None)]
    assert CheckpointRef(1, 2, Path("x"), "snapshot") == CheckpointRef(1, 2, Path("x"), "snapshot")
    assert CheckpointRef(1, 2, Path("x"), "snapshot") != CheckpointRef(1, 2, Path("y"), "snapshot")
    assert "_key" not in repr(refs[0])
    with pytest.raises(ValueError):
        CheckpointRef(1, None, Path("x"), "snapshot")
    with pytest.raises(ValueError):
        CheckpointRef(1, 3, Path("x"), "final")
