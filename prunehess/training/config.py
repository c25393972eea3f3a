"""The configuration of one iterative-pruning run (``prunehess train``): every option declared once.

Config flows one way: YAML file / command line → :class:`TrainConfig` → :func:`prunehess.training.run_variants`.
Each field is declared with :func:`prunehess.options.option` (default, help, spellings, checks, whether it changes
the numbers), so ``prunehess train``'s click options, its ``--config`` YAML keys and the checks come from here. A
bad value raises :class:`prunehess.errors.ConfigError` naming the option.

Example:
    >>> config = TrainConfig(dataset="digits", model="fc1", output="run", prune_type="random", lr_milestones="5,8",
    ...                      device="cpu")
    >>> config.archive_name, config.milestone_epochs, config.fingerprint()["lr_milestones"]
    ('digits.zip', (5, 8), '5,8')
    >>> [c.output.as_posix() for c in TrainConfig(dataset="digits", model="fc1", output="run", device="cpu",
    ...                                           variants="lt,random").variant_configs()]
    ['run/lt', 'run/random']
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from prunehess.devices import resolve_device
from prunehess.errors import ConfigError
from prunehess.options import check, key_of, option, value_type

__all__ = ["TrainConfig", "PRUNE_TYPES", "REWINDING_TYPES", "OPTIMIZERS", "BATCH_SCHEDULES", "ABSA_REFERENCES"]

PRUNE_TYPES = ("lt", "reinit", "random", "hessian")
REWINDING_TYPES = ("lt", "random", "hessian")  # the survivors restart from saved weights (reinit draws new ones)
OPTIMIZERS = ("sgd", "adam")
BATCH_SCHEDULES = ("constant", "absa")
ABSA_REFERENCES = ("peak", "previous")

# The keys of the previous version's resume fingerprint: always in it, so that its interrupted runs still resume.
# Options added since enter the fingerprint only when they differ from their default.
_V1_FINGERPRINT = frozenset({
    "dataset", "model", "prune_percent", "epochs", "save_freq", "prune_type", "global_pruning", "seed", "optimizer",
    "lr", "momentum", "weight_decay", "batch_size", "test_batch_size", "device", "track_eigen", "hessian_batch_size",
    "hessian_mini_batch_size", "trace_probes", "batch_schedule", "absa_factor", "absa_threshold",
    "absa_max_batch_size", "absa_reference", "model_kwargs",
})
_MODEL_SWITCHES = ("depth", "batch_norm", "residual")  # folded into model_kwargs
_NOT_WRITTEN = frozenset({"cuda", *_MODEL_SWITCHES})  # resolved into `device` / `model_kwargs`

_ABSA_HELP = (
    "Batch-size schedule. 'absa' (Yao et al. 2018, HessianFlow) multiplies the batch size by --absa-factor, up to "
    "--absa-max-batch-size, whenever a tracked top eigenvalue is at most (1 - --absa-threshold) times the reference "
    "eigenvalue (a flatter region); the reference is the largest value since the last batch-size change ('peak') "
    "or the previous record ('previous'), see --absa-reference. Needs --track-eigen; restarts each iteration; the "
    "new size applies from the next epoch."
)
_PRUNE_TYPE_HELP = (
    "lt: magnitude pruning, survivors rewound to the initial weights (or --rewind-epoch's); reinit: magnitude "
    "pruning, survivors re-initialised; random: the control, a seeded random mask removing exactly as many weights "
    "from each layer as magnitude pruning would; hessian: the pruning-PyHessian fork's Hessian-aware rates, layers "
    "whose trace is at or above the mean trace pruned at P/2 %, the others at min(2P, 30) %, layers under 1 % of "
    "the parameters kept whole."
)


def _items(value: Any) -> list[str]:
    """The items of ``"a,b"``, ``["a", "b"]`` (Python) or ``"['a', 'b']"`` (a YAML list as click hands it on)."""
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        text = str(value).strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        parts = text.split(",")
    return [p.strip().strip("'\"").strip() for p in parts if p.strip().strip("'\"").strip()]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines an iterative-pruning run (see each option's help, ``prunehess train --help``).

    Iterations are numbered ``0 … prune_iterations-1``; iteration 0 trains the dense network. Epoch ``e`` of the
    file names is the state after ``e`` completed epochs, so ``0`` is the (rewound or re-initialised, masked) start
    of an iteration. ``device`` is resolved at construction (:func:`prunehess.devices.resolve_device` from
    ``device`` and ``cuda``); ``depth``, ``batch_norm`` and ``residual`` are folded into ``model_kwargs``.
    """

    dataset: Optional[str] = option(None, show_default=False,
                                    help="Dataset: digits (bundled), mnist, fashionmnist, cifar10, svhn.")
    model: Optional[str] = option(None, show_default=False,
                                  help="Model: fc1, lenet5, resnet20, resnet18, vgg11_bn.")
    output: Optional[Path] = option(None, numerics=False, show_default=False,
                                    help="Output folder (checkpoints, zip, remain_params.txt, train_log.csv); with "
                                         "--variants one subfolder per variant. Rerun to resume.")
    prune_iterations: int = option(5, minimum=1, numerics=False,
                                   help="Iterations 0..K-1, the dense iteration 0 included (K-1 pruning rounds).")
    prune_percent: float = option(20.0, minimum=0,
                                  help="Percent of the remaining prunable weights removed per round (< 100).")
    epochs: int = option(20, minimum=1, help="Training epochs per iteration.")
    save_freq: int = option(10, minimum=1, help="Snapshot every F epochs: epoch0 (before training), F, 2F, ... "
                                                "<= --epochs.")
    prune_type: str = option("lt", choices=PRUNE_TYPES, help=_PRUNE_TYPE_HELP)
    global_pruning: bool = option(False, aliases=("--global",),
                                  help="Rank weights across all prunable layers (OpenLTH's default) instead of per "
                                       "layer; with random, each layer loses what global magnitude pruning chose.")
    rewind_epoch: int = option(0, minimum=0, metavar="E",
                               help="Late rewinding (Frankle et al. 2020): survivors restart from the weights saved "
                                    "at epoch E of iteration 0 (a saved epoch: 0, F, 2F, ...); 0 = the initial "
                                    "weights. Not with reinit.")
    variants: Optional[str] = option(None, numerics=False, show_default=False, metavar="T1,T2,...",
                                     help="Train several prune types (lt, reinit, random, hessian) from the same "
                                          "initialisation and data order, each into OUTPUT/<type>/ with its own "
                                          "zip; replaces --prune-type.")
    seed: int = option(0, help="Seed of everything random (initialisation, data order, masks, Hessian batch).")
    # optimisation
    optimizer: str = option("adam", choices=OPTIMIZERS, help="Optimizer (a fresh one each iteration).")
    lr: float = option(1.2e-3, positive=True, help="Learning rate (the peak, with --warmup / --lr-milestones).")
    momentum: float = option(0.9, minimum=0, help="SGD momentum.")
    weight_decay: float = option(1e-4, minimum=0, help="Weight decay.")
    warmup: int = option(0, minimum=0, metavar="N",
                         help="Linear learning-rate warmup: epoch e <= N trains at lr * e / N. Restarts each "
                              "iteration.")
    lr_milestones: Optional[str] = option(None, show_default=False, metavar="E1,E2,...",
                                          help="Multiply the lr by --lr-gamma after each of these epochs (each "
                                               "< --epochs; epochs E+1, ... train at the lower lr, like torch's "
                                               "MultiStepLR). Restarts each iteration.")
    lr_gamma: float = option(0.1, positive=True, help="The lr factor at each --lr-milestones epoch.")
    batch_size: int = option(60, minimum=1,
                             help="Training batch size (the initial one under --batch-schedule absa).")
    test_batch_size: int = option(1000, minimum=1, help="Evaluation batch size.")
    # data and device
    data_root: Optional[Path] = option(None, numerics=False, show_default=False,
                                       help="Dataset folder (default: ./data).")
    download: bool = option(False, numerics=False, help="Download the dataset if missing.")
    cuda: Optional[bool] = option(None, off=("--no-cuda",), numerics=False, show_default=False,
                                  help="Train on CUDA (default: when available).")
    device: Optional[str] = option(None, show_default=False,
                                   help="Explicit torch device (e.g. cpu, cuda:1); wins over --cuda.")
    num_workers: int = option(0, minimum=0, numerics=False, help="DataLoader worker processes.")
    # curvature: tracking, and the Hessian batch of --prune-type hessian
    track_eigen: Optional[int] = option(None, minimum=1, metavar="N", show_default=False,
                                        help="Every N epochs (0 included) log the top Hessian eigenvalue and trace "
                                             "(engine, surviving weights).")
    hessian_batch_size: int = option(200, minimum=1,
                                     help="Training samples in the fixed Hessian batch (tracking, hessian pruning).")
    hessian_mini_batch_size: Optional[int] = option(None, minimum=1, show_default=False,
                                                    help="Split the Hessian batch into mini-batches of this size "
                                                         "(default: one batch).")
    trace_probes: int = option(20, minimum=1, help="Hutchinson probes per trace (tracking, hessian pruning).")
    # adaptive batch size (Yao et al. 2018)
    batch_schedule: str = option("constant", choices=BATCH_SCHEDULES, help=_ABSA_HELP)
    absa_factor: int = option(2, minimum=2, help="ABSA: batch-size growth factor.")
    absa_threshold: float = option(0.5, positive=True,
                                   help="ABSA: relative eigenvalue drop that grows the batch (0.5: λ halved), < 1.")
    absa_max_batch_size: int = option(4096, minimum=1, help="ABSA: the largest batch size.")
    absa_reference: str = option("peak", choices=ABSA_REFERENCES,
                                 help="ABSA: compare with the largest eigenvalue since the last change, or with "
                                      "the previous one.")
    # the model's own switches (folded into model_kwargs)
    depth: Optional[int] = option(None, minimum=1, show_default=False, help="Model depth (resnet20 family).")
    batch_norm: Optional[bool] = option(None, off=("--no-batch-norm",), show_default=False,
                                        help="Model with or without BatchNorm (where it has it).")
    residual: Optional[bool] = option(None, off=("--no-residual",), show_default=False,
                                      help="Residual connections on or off (resnet20 family).")
    # output naming
    zip_name: Optional[str] = option(None, key="zipname", numerics=False, show_default=False,
                                     help="Name of the zip (default: <dataset>.zip).")
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # library use: any keyword of the model factory

    def __post_init__(self) -> None:
        check(self)
        for f in dataclasses.fields(self):  # 5.0 from a YAML file or Python is the integer 5
            value = getattr(self, f.name)
            if isinstance(value, float) and value.is_integer() and value_type(type(self), f) is int:
                object.__setattr__(self, f.name, int(value))
        switches = {name: getattr(self, name) for name in _MODEL_SWITCHES if getattr(self, name) is not None}
        object.__setattr__(self, "model_kwargs", {**dict(self.model_kwargs), **switches})
        missing = [name for name in ("dataset", "model", "output") if getattr(self, name) is None]
        if missing:
            raise ConfigError(f"missing {', '.join('--' + m for m in missing)}")
        object.__setattr__(self, "variants", self._canonical_variants())
        object.__setattr__(self, "lr_milestones", self._canonical_milestones())
        self._check_ranges()
        for prune_type in self.variant_types or (self.prune_type,):
            self._check_type(prune_type)
        object.__setattr__(self, "device", str(resolve_device(self.device, self.cuda)))

    def _canonical_variants(self) -> Optional[str]:
        if self.variants is None:
            return None
        names = _items(self.variants)
        for name in names:
            if name not in PRUNE_TYPES:
                raise ConfigError(f"--variants: {name!r} is not one of {', '.join(PRUNE_TYPES)}")
        if len(set(names)) != len(names) or not names:
            raise ConfigError(f"--variants: give distinct prune types, e.g. lt,reinit,random; got {self.variants!r}")
        if self.prune_type != "lt":
            raise ConfigError("--variants replaces --prune-type: give one of them")
        return ",".join(names)

    def _canonical_milestones(self) -> Optional[str]:
        if self.lr_milestones is None:
            return None
        epochs = []
        for item in _items(self.lr_milestones):
            try:
                epochs.append(int(item))
            except ValueError:
                raise ConfigError(f"--lr-milestones: {item!r} is not an epoch; give E1,E2,... e.g. 10,15") from None
        if len(set(epochs)) != len(epochs) or any(not 1 <= e < self.epochs for e in epochs):
            raise ConfigError(f"--lr-milestones: give distinct epochs in 1..{self.epochs - 1} (--epochs "
                              f"{self.epochs}); got {self.lr_milestones!r}")
        return ",".join(str(e) for e in sorted(epochs)) or None

    def _check_ranges(self) -> None:
        if not float(self.prune_percent) < 100.0:
            raise ConfigError(f"--prune-percent must be in [0, 100), got {self.prune_percent}")
        if not float(self.absa_threshold) < 1.0:
            raise ConfigError(f"--absa-threshold must be in (0, 1), got {self.absa_threshold}")
        if self.warmup > self.epochs:
            raise ConfigError(f"--warmup {self.warmup} is longer than --epochs {self.epochs}")
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

    def _check_type(self, prune_type: str) -> None:
        if self.rewind_epoch and prune_type not in REWINDING_TYPES:
            raise ConfigError(f"--rewind-epoch {self.rewind_epoch}: {prune_type} re-initialises the survivors, it "
                              f"does not rewind (rewinding types: {', '.join(REWINDING_TYPES)})")
        if self.rewind_epoch not in self.snapshot_epochs:
            saved = ", ".join(map(str, self.snapshot_epochs))
            raise ConfigError(f"--rewind-epoch {self.rewind_epoch} is not a saved epoch of iteration 0 ({saved}: "
                              f"--save-freq {self.save_freq}, --epochs {self.epochs})")
        if prune_type == "hessian" and self.global_pruning:
            raise ConfigError("--prune-type hessian sets a pruning rate per layer: it cannot be --global")

    # ------------------------------------------------------------------ derived values
    @property
    def archive_name(self) -> str:
        """The zip's file name: ``zip_name`` or ``<dataset>.zip``."""
        return self.zip_name or f"{self.dataset}.zip"

    @property
    def snapshot_epochs(self) -> tuple[int, ...]:
        """The epochs that get a snapshot: ``0, F, 2F, … <= epochs``."""
        return tuple(range(0, self.epochs + 1, self.save_freq))

    @property
    def milestone_epochs(self) -> tuple[int, ...]:
        """``lr_milestones`` as sorted epochs (``()`` when none)."""
        return tuple(int(e) for e in _items(self.lr_milestones)) if self.lr_milestones else ()

    @property
    def variant_types(self) -> tuple[str, ...]:
        """``variants`` as prune types (``()`` when none)."""
        return tuple(_items(self.variants)) if self.variants else ()

    def variant_configs(self) -> tuple["TrainConfig", ...]:
        """One config per run: ``(self,)``, or with ``variants`` one per type into ``output/<type>/``."""
        if not self.variants:
            return (self,)
        return tuple(dataclasses.replace(self, output=Path(self.output) / name, prune_type=name, variants=None)
                     for name in self.variant_types)

    def tracked(self, epoch: int) -> bool:
        """Whether the curvature is recorded at ``epoch`` (``0, N, 2N, …``)."""
        return self.track_eigen is not None and epoch % self.track_eigen == 0

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values keyed by field name (``train_config.yaml``; paths as strings); ``cuda`` and
        the model switches are left out, resolved into ``device`` and ``model_kwargs``."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in _NOT_WRITTEN:
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else dict(value) if isinstance(value, Mapping) \
                else value
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues: the options that change the numbers, those of
        the previous version always (the same dict as it gave), newer ones only when not at their default."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        out = {}
        for name, value in self.to_dict().items():
            spec = fields[name].metadata.get("option")
            if spec is not None and not spec.numerics:
                continue
            if name in _V1_FINGERPRINT or value != fields[name].default:
                out[name] = value
        return out

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: Optional[str] = None) -> "TrainConfig":
        """Build from a mapping keyed by field names or option keys (``-`` or ``_``: ``zipname`` or ``zip_name``);
        unknown keys raise ConfigError (prefixed with ``source`` when given)."""
        prefix = f"{source}: " if source else ""
        names = {f.name: f.name for f in dataclasses.fields(cls)}
        names.update({key_of(f): f.name for f in dataclasses.fields(cls)})
        normalised = {}
        for key, value in values.items():
            name = names.get(str(key).replace("-", "_"))
            if name is None:
                raise ConfigError(f"{prefix}unknown option {key!r}")
            normalised[name] = value
        missing = [name for name in ("dataset", "model", "output") if normalised.get(name) is None]
        if missing:
            raise ConfigError(f"{prefix}missing {', '.join('--' + m for m in missing)}")
        return cls(**normalised)

