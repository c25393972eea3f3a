"""The frozen configuration of one iterative-pruning run (``prunehess train``).

Config flows one way: YAML file / command line → :class:`TrainConfig` → :func:`prunehess.training.run_training`.
Every field is validated in ``__post_init__``; a bad value raises :class:`prunehess.errors.ConfigError` naming
the option and the allowed values.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from prunehess.errors import ConfigError

__all__ = ["TrainConfig", "PRUNE_TYPES", "OPTIMIZERS", "BATCH_SCHEDULES", "ABSA_REFERENCES"]

PRUNE_TYPES = ("lt", "reinit")
OPTIMIZERS = ("sgd", "adam")
BATCH_SCHEDULES = ("constant", "absa")
ABSA_REFERENCES = ("peak", "previous")

# Fields that do not change what a run computes: a rerun may change them and still resume.
_RESUME_FREE = frozenset({"output", "zip_name", "prune_iterations", "data_root", "download", "num_workers"})


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines an iterative magnitude-pruning run.

    Attributes:
        dataset: dataset name of :mod:`prunehess.data` (e.g. ``digits``, ``mnist``).
        model: model name of :mod:`prunehess.models` (``fc1``, ``lenet5``, ``resnet20``, ``resnet18``, ``vgg11_bn``).
        output: folder that receives the checkpoints, the zip, ``remain_params.txt`` and the log.
        prune_iterations: number of train–prune iterations *including* the dense iteration 0; iterations are
            numbered ``0 … prune_iterations-1`` and ``prune_iterations-1`` pruning rounds happen.
        prune_percent: percent of the *remaining* prunable weights removed in each round (``0 <= P < 100``).
        epochs: training epochs per iteration. Epoch ``e`` of the file names is the state after ``e`` completed
            epochs, so ``0`` is the (rewound / re-initialised, masked) start of the iteration.
        save_freq: a snapshot ``<ite>_model_<type>_epoch<e>.pth`` is written for every ``e`` in
            ``0, F, 2F, … <= epochs``.
        prune_type: ``lt`` rewinds the survivors to the initial weights; ``reinit`` re-initialises them.
        global_pruning: rank all prunable weights together instead of layer by layer.
        seed: the seed of everything random (initialisation, shuffling, re-initialisation, Hessian batch).
        track_eigen: record the top Hessian eigenvalue and trace every N epochs (``None``: never).
        batch_schedule: ``constant`` or ``absa`` (adaptive batch size; needs ``track_eigen``).
    """

    dataset: str
    model: str
    output: Path
    prune_iterations: int = 5
    prune_percent: float = 20.0
    epochs: int = 20
    save_freq: int = 10
    prune_type: str = "lt"
    global_pruning: bool = False
    seed: int = 0
    # optimisation
    optimizer: str = "adam"
    lr: float = 1.2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 60
    test_batch_size: int = 1000
    # data and device
    data_root: Optional[Path] = None
    download: bool = False
    device: str = "cpu"
    num_workers: int = 0
    # curvature tracking
    track_eigen: Optional[int] = None
    hessian_batch_size: int = 200
    hessian_mini_batch_size: Optional[int] = None
    trace_probes: int = 20
    # adaptive batch size (Yao et al. 2018)
    batch_schedule: str = "constant"
    absa_factor: int = 2
    absa_threshold: float = 0.5
    absa_max_batch_size: int = 4096
    absa_reference: str = "peak"
    # output naming
    zip_name: Optional[str] = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))
        if self.data_root is not None:
            object.__setattr__(self, "data_root", Path(self.data_root))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        self._check_choice("prune_type", PRUNE_TYPES)
        self._check_choice("optimizer", OPTIMIZERS)
        self._check_choice("batch_schedule", BATCH_SCHEDULES)
        self._check_choice("absa_reference", ABSA_REFERENCES)
        for name in ("prune_iterations", "epochs", "save_freq", "batch_size", "test_batch_size",
                     "hessian_batch_size", "trace_probes", "absa_max_batch_size"):
            self._check_int(name, minimum=1)
        self._check_int("num_workers", minimum=0)
        self._check_int("absa_factor", minimum=2)
        for name in ("track_eigen", "hessian_mini_batch_size"):
            if getattr(self, name) is not None:
                self._check_int(name, minimum=1)
        if not 0.0 <= float(self.prune_percent) < 100.0:
            raise ConfigError(f"--prune-percent must be in [0, 100), got {self.prune_percent}")
        if not float(self.lr) > 0.0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if float(self.weight_decay) < 0.0 or float(self.momentum) < 0.0:
            raise ConfigError("--weight-decay and --momentum must be non-negative")
        if not 0.0 < float(self.absa_threshold) < 1.0:
            raise ConfigError(f"--absa-threshold must be in (0, 1), got {self.absa_threshold}")
        if self.batch_schedule == "absa":
            if self.track_eigen is None:
                raise ConfigError("--batch-schedule absa needs the tracked eigenvalue: add --track-eigen N")
            if self.absa_max_batch_size < self.batch_size:
                raise ConfigError(
                    f"--absa-max-batch-size ({self.absa_max_batch_size}) is below --batch-size ({self.batch_size})"
                )
        if self.zip_name is not None and (not self.zip_name.endswith(".zip") or "/" in self.zip_name
                                          or "\\" in self.zip_name):
            raise ConfigError(f"--zipname must be a plain file name ending in .zip, got {self.zip_name!r}")

    def _check_choice(self, name: str, allowed: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in allowed:
            raise ConfigError(f"{_option(name)} must be one of {', '.join(allowed)}; got {value!r}")

    def _check_int(self, name: str, *, minimum: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{_option(name)} must be an integer >= {minimum}, got {value!r}")

    # ------------------------------------------------------------------ derived values
    @property
    def archive_name(self) -> str:
        """The zip's file name: ``zip_name`` or ``<dataset>.zip``."""
        return self.zip_name or f"{self.dataset}.zip"

    @property
    def snapshot_epochs(self) -> tuple[int, ...]:
        """The epochs that get a snapshot: ``0, F, 2F, … <= epochs``."""
        return tuple(range(0, self.epochs + 1, self.save_freq))

    def tracked(self, epoch: int) -> bool:
        """Whether the curvature is recorded at ``epoch`` (``0, N, 2N, …``)."""
        return self.track_eigen is not None and epoch % self.track_eigen == 0

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values (paths as strings)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    def fingerprint(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in self.to_dict().items() if k not in _RESUME_FREE}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "config") -> "TrainConfig":
        """Build from a mapping whose keys are field names (``-`` or ``_``); unknown keys raise ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        normalised = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ConfigError(f"{source}: unknown option {key!r}")
            normalised[name] = value
        missing = [name for name in ("dataset", "model", "output") if name not in normalised]
        if missing:
            raise ConfigError(f"{source}: missing {', '.join(_option(m) for m in missing)}")
        try:
            return cls(**normalised)
        except TypeError as err:  # pragma: no cover - defensive
            raise ConfigError(f"{source}: {err}") from None
