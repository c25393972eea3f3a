"""Find the checkpoints in an unpacked folder and map each to (prune iteration, epoch), by their naming scheme.

Namings, detected automatically (the folder may be flat or nested; names are parsed with patterns, numbers
compared as numbers, so epochs and iterations of 100 and more sort right):

- ``lottery-ticket`` (the seed's trainer): ``<ite>_model_<type>_epoch<E>.pth`` (snapshot),
  ``<ite>_model_<type>.pth`` (best of iteration ``ite``), ``initial_state_dict_<type>.pth`` (initial weights);
  ``.pth.tar`` too. ``<type>`` is any word (``lt``, ``reinit``, ...); two types under one root are two runs and
  are refused (the message suggests a ``--layout`` that picks one). When ``X.pth`` and ``X.pth.tar`` both
  exist, ``X.pth`` (a plain state dict) is used and ``X.pth.tar`` is listed in ``unmatched``.
- ``openlth``: ``level_<L>/main/model_ep<E>_it<I>.pth`` (iteration L, epoch E), with ``mask.pth`` and
  ``sparsity_report.json`` of the level. ``checkpoint.pth`` in a level folder is OpenLTH's resume file (a copy of
  the latest state) and is ignored quietly.
- ``lightning``: ``.ckpt`` files whose name holds ``epoch=<E>`` (e.g. ``epoch=3-step=100.ckpt``) under a
  per-iteration folder: the nearest enclosing folder named ``<letters><sep?><integer>`` (``iteration_3``,
  ``level_3``, ``round-3``, ``3``), skipping Lightning's own ``version_<N>``. ``last.ckpt`` (a copy of the latest
  state) is ignored quietly.
- ``custom``: ``naming_regex`` with named groups ``iteration`` and, optionally, ``epoch`` (absent or empty: the best
  checkpoint), ``best`` (matched: the best checkpoint) and ``initial`` (matched: the initial weights). It must match
  the whole path relative to the root (posix separators) or the whole file name.

The initial weights are ``CheckpointRef(iteration=-1, epoch=0, kind="initial")``: the weights at epoch 0 before any
training (the seed's output names them ``000_00``). The best checkpoint of an iteration has ``epoch=None`` and
sorts after that iteration's snapshots. Two files that map to the same (iteration, epoch) are refused with both
names. ``unmatched`` lists the files with a checkpoint-like extension (``.pth .pt .tar .ckpt .bin``) that are
not used; other files (READMEs, logs, ``remain_params.txt``) are ignored. macOS junk (``__MACOSX/``,
``.DS_Store``, ``._*``) is skipped.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from prunehess.errors import ArchiveError, ConfigError

__all__ = ["CheckpointRef", "Discovery", "discover", "NAMINGS", "CHECKPOINT_SUFFIXES"]

NAMINGS = ("lottery-ticket", "openlth", "lightning", "custom")
KINDS = ("snapshot", "best", "initial")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin")

_LT_SNAPSHOT = re.compile(r"(?P<ite>\d+)_model_(?P<type>\w+?)_epoch(?P<epoch>\d+)\.pth(?:\.tar)?")
_LT_BEST = re.compile(r"(?P<ite>\d+)_model_(?P<type>\w+)\.pth(?:\.tar)?")
_EPOCH_IN_TYPE = re.compile(r"_epoch\d")  # e.g. 3_model_lt_epoch10_copy.pth: not a best checkpoint
_LT_INITIAL = re.compile(r"initial_state_dict_(?P<type>\w+)\.pth(?:\.tar)?")
_OPENLTH_LEVEL = re.compile(r"level_(?P<level>\d+)")
_OPENLTH_MODEL = re.compile(r"model_ep(?P<epoch>\d+)_it(?P<it>\d+)\.pth")
_LIGHTNING_CKPT = re.compile(r"(?:.*[-_])?epoch=(?P<epoch>\d+)(?:[-_].*)?\.ckpt")
_ITERATION_DIR = re.compile(r"(?:[A-Za-z]+[_\-]?)?(?P<n>\d+)")

_LOOKED_FOR = (
    "looked for <ite>_model_<type>_epoch<E>.pth, <ite>_model_<type>.pth and initial_state_dict_<type>.pth "
    "(lottery-ticket), level_<L>/main/model_ep<E>_it<I>.pth (OpenLTH), <iteration folder>/epoch=<E>-step=<S>.ckpt "
    "(Lightning); name other layouts with --layout REGEX"
)


@dataclass(frozen=True, order=True)
class CheckpointRef:
    """One checkpoint file and where it sits in the pruning run.

    Attributes:
        iteration: prune iteration from 0 (0 = the dense network); -1 for the initial weights.
        epoch: the training epoch; None for the best checkpoint of the iteration; 0 for the initial weights.
        path: the file.
        kind: ``"snapshot"``, ``"best"`` or ``"initial"``.

    Refs sort numerically by iteration, then snapshots by epoch, then the best checkpoint.
    """

    _key: tuple = field(init=False, repr=False)
    iteration: int = field(compare=False)
    epoch: int | None = field(compare=False)
    path: Path = field(compare=False)
    kind: str = field(compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if (self.epoch is None) != (self.kind == "best"):
            raise ValueError("epoch is None exactly for the best checkpoint")
        best = self.epoch is None
        key = (self.iteration, best, 0 if best else self.epoch, KINDS.index(self.kind), str(self.path))
        object.__setattr__(self, "_key", key)


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found.

    Attributes:
        naming: the naming scheme found: ``"lottery-ticket"``, ``"openlth"``, ``"lightning"`` or ``"custom"``.
        checkpoints: the checkpoints, sorted (see :class:`CheckpointRef`).
        unmatched: checkpoint-like files not used (matching no layout, another layout, or shadowed), sorted.
        masks: iteration -> ``mask.pth`` (OpenLTH).
        reports: iteration -> ``sparsity_report.json`` (OpenLTH).
    """

    naming: str
    checkpoints: list[CheckpointRef]
    unmatched: list[Path]
    masks: dict[int, Path] = field(default_factory=dict)
    reports: dict[int, Path] = field(default_factory=dict)


@dataclass
class _Found:
    """The files one naming scheme claims."""

    refs: list[CheckpointRef] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)  # known auxiliary files, skipped quietly
    masks: dict[int, list[Path]] = field(default_factory=dict)
    reports: dict[int, list[Path]] = field(default_factory=dict)
    types: set[str] = field(default_factory=set)


def discover(root: Path, *, naming_regex: str | None = None) -> Discovery:
    """Find and order the checkpoints under ``root``.

    Args:
        root: the unpacked folder (searched recursively; links to folders are not followed).
        naming_regex: a custom naming (``--layout REGEX``, see the module docstring); None detects the naming.

    Raises:
        ArchiveError: ``root`` is not a folder, holds no checkpoints, or two files map to the same checkpoint.
        ConfigError: ``naming_regex`` is not a valid pattern or lacks the ``iteration`` group.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ["initial_state_dict_lt.pth", "0_model_lt.pth", "0_model_lt_epoch10.pth"]:
        ...     _ = (root / name).write_bytes(b"")
        >>> [(r.iteration, r.epoch, r.kind) for r in discover(root).checkpoints]
        [(-1, 0, 'initial'), (0, 10, 'snapshot'), (0, None, 'best')]
    """
    root = Path(root)
    if not root.is_dir():
        raise ArchiveError(f"{root}: not a folder")
    rels = sorted(_walk(root), key=lambda p: p.as_posix())
    if naming_regex is not None:
        name, found = "custom", _match_custom(rels, naming_regex)
    else:
        candidates = {
            "lottery-ticket": _match_lottery_ticket(rels),
            "openlth": _match_openlth(rels),
            "lightning": _match_lightning(rels),
        }
        name = max(candidates, key=lambda k: len(candidates[k].refs))  # ties: the first listed
        found = candidates[name]
    if name == "lottery-ticket" and len(found.types) > 1:
        _refuse_several_types(root, found)
    refs, shadowed = _resolve(root, found.refs)
    used = {r.path for r in refs} | set(found.ignored)
    used |= {p for paths in (*found.masks.values(), *found.reports.values()) for p in paths}
    unmatched = sorted({p for p in rels if p not in used and _checkpoint_like(p)} | set(shadowed))
    if not refs:
        hint = f"no file matches --layout {naming_regex!r}" if naming_regex is not None else f"({_LOOKED_FOR})"
        extra = f"; checkpoint-like files: {_some(unmatched)}" if unmatched else ""
        raise ArchiveError(f"{root}: no checkpoints found {hint}{extra}")
    return Discovery(
        naming=name,
        checkpoints=sorted(CheckpointRef(r.iteration, r.epoch, root / r.path, r.kind) for r in refs),
        unmatched=[root / p for p in unmatched],
        masks={k: root / _single(root, f"mask for iteration {k}", v) for k, v in sorted(found.masks.items())},
        reports={k: root / _single(root, f"report for iteration {k}", v) for k, v in sorted(found.reports.items())},
    )


def _walk(root: Path) -> Iterator[PurePosixPath]:
    """Relative paths of the files under ``root``, skipping macOS junk; folder links are not followed."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__MACOSX"]
        rel = Path(folder).relative_to(root)
        for f in files:
            if f == ".DS_Store" or f.startswith("._"):
                continue
            yield PurePosixPath(rel.as_posix(), f) if rel.parts else PurePosixPath(f)


def _checkpoint_like(rel: PurePosixPath) -> bool:
    return rel.name.lower().endswith(CHECKPOINT_SUFFIXES)


def _ref(iteration: int, epoch: int | None, rel: PurePosixPath, kind: str) -> CheckpointRef:
    return CheckpointRef(iteration, epoch, Path(rel), kind)


# --- layouts ----------------------------------------------------------------------------------------------------


def _match_lottery_ticket(rels: list[PurePosixPath]) -> _Found:
    found = _Found()
    for rel in rels:
        if m := _LT_SNAPSHOT.fullmatch(rel.name):
            found.refs.append(_ref(int(m["ite"]), int(m["epoch"]), rel, "snapshot"))
        elif m := _LT_INITIAL.fullmatch(rel.name):
            found.refs.append(_ref(-1, 0, rel, "initial"))
        elif (m := _LT_BEST.fullmatch(rel.name)) and not _EPOCH_IN_TYPE.search(m["type"]):
            found.refs.append(_ref(int(m["ite"]), None, rel, "best"))
        else:
            continue
        found.types.add(m["type"])
    return found


def _match_openlth(rels: list[PurePosixPath]) -> _Found:
    found = _Found()
    for rel in rels:
        parts = rel.parts
        if len(parts) < 3 or parts[-2] != "main" or not (level := _OPENLTH_LEVEL.fullmatch(parts[-3])):
            continue
        it = int(level["level"])
        if m := _OPENLTH_MODEL.fullmatch(rel.name):
            found.refs.append(_ref(it, int(m["epoch"]), rel, "snapshot"))
        elif rel.name == "mask.pth":
            found.masks.setdefault(it, []).append(rel)
        elif rel.name == "sparsity_report.json":
            found.reports.setdefault(it, []).append(rel)
        elif rel.name == "checkpoint.pth":
            found.ignored.append(rel)
    return found


def _match_lightning(rels: list[PurePosixPath]) -> _Found:
    found = _Found()
    for rel in rels:
        if not rel.name.endswith(".ckpt"):
            continue
        it = _lightning_iteration(rel)
        if it is None:
            continue
        if m := _LIGHTNING_CKPT.fullmatch(rel.name):
            found.refs.append(_ref(it, int(m["epoch"]), rel, "snapshot"))
        elif rel.name == "last.ckpt":
            found.ignored.append(rel)
    return found


def _lightning_iteration(rel: PurePosixPath) -> int | None:
    """The integer of the nearest enclosing per-iteration folder, skipping Lightning's ``version_<N>``."""
    for folder in reversed(rel.parts[:-1]):
        if folder.lower().startswith("version"):
            continue
        if m := _ITERATION_DIR.fullmatch(folder):
            return int(m["n"])
    return None


def _match_custom(rels: list[PurePosixPath], naming_regex: str) -> _Found:
    try:
        rx = re.compile(naming_regex)
    except re.error as exc:
        raise ConfigError(f"--layout {naming_regex!r}: not a valid regular expression ({exc})") from None
    if "iteration" not in rx.groupindex:
        raise ConfigError(
            f"--layout {naming_regex!r}: needs a named group (?P<iteration>...) and optionally (?P<epoch>...)"
        )
    found = _Found()
    for rel in rels:
        m = rx.fullmatch(rel.as_posix()) or rx.fullmatch(rel.name)
        if not m:
            continue
        groups = m.groupdict()
        if groups.get("initial") is not None:
            found.refs.append(_ref(-1, 0, rel, "initial"))
            continue
        if not groups["iteration"]:
            continue
        iteration = _as_int(naming_regex, "iteration", groups["iteration"], rel)
        epoch = groups.get("epoch")
        if groups.get("best") is not None or not epoch:
            found.refs.append(_ref(iteration, None, rel, "best"))
        else:
            found.refs.append(_ref(iteration, _as_int(naming_regex, "epoch", epoch, rel), rel, "snapshot"))
    return found


def _as_int(regex: str, group: str, text: str, rel: PurePosixPath) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--layout {regex!r}: group {group!r} matched {text!r} in {rel}, not an integer") from None


# --- conflicts --------------------------------------------------------------------------------------------------


def _resolve(root: Path, refs: list[CheckpointRef]) -> tuple[list[CheckpointRef], list[PurePosixPath]]:
    """One ref per (iteration, epoch): prefer ``X.pth`` over ``X.pth.tar``; refuse any other clash."""
    by_key: dict[tuple, list[CheckpointRef]] = {}
    for r in refs:
        by_key.setdefault((r.iteration, r.epoch), []).append(r)
    kept, shadowed = [], []
    for (iteration, epoch), group in by_key.items():
        if len(group) == 2:
            a, b = sorted(group, key=lambda r: len(str(r.path)))
            if str(b.path) == str(a.path) + ".tar":
                kept.append(a)
                shadowed.append(PurePosixPath(b.path.as_posix()))
                continue
        if len(group) > 1:
            what = "the initial weights" if iteration < 0 else f"iteration {iteration}, epoch {_epoch_label(epoch)}"
            names = ", ".join(r.path.as_posix() for r in sorted(group, key=lambda r: str(r.path)))
            raise ArchiveError(
                f"{root}: several checkpoints for {what}: {names}; keep one or choose with --layout REGEX"
            )
        kept.append(group[0])
    return kept, shadowed


def _refuse_several_types(root: Path, found: _Found) -> None:
    types = sorted(found.types)
    pick = re.escape(types[0])
    suggestion = (
        rf"(?:(?P<initial>initial)_state_dict|(?P<iteration>\d+)_model)_{pick}(?:_epoch(?P<epoch>\d+))?\.pth(?:\.tar)?"
    )
    raise ArchiveError(
        f"{root}: checkpoints of {len(types)} runs (types {', '.join(types)}); keep one run in the folder "
        f"or choose one with --layout '{suggestion}'"
    )


def _single(root: Path, what: str, paths: list[PurePosixPath]) -> PurePosixPath:
    if len(paths) > 1:
        raise ArchiveError(f"{root}: several files for the {what}: {_some(sorted(paths))}")
    return paths[0]


def _epoch_label(epoch: int | None) -> str:
    return "best" if epoch is None else str(epoch)


def _some(paths: list, n: int = 5) -> str:
    shown = ", ".join(PurePosixPath(p).as_posix() for p in paths[:n])
    return shown + (f" and {len(paths) - n} more" if len(paths) > n else "")
