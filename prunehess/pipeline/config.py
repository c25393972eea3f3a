"""The configuration of ``prunehess extract``: four sections of options, each declared once.

:class:`ExtractConfig` is composed of :class:`SourceOptions` (the zip and how to read it), :class:`DataOptions`
(the model and the Hessian batch), the analyses section (:class:`~prunehess.analyses.AnalysisOptions`: what is
analysed, and each analysis's own options) and :class:`EngineOptions` (where and how products run), plus the
output folder. Every field is declared with :func:`prunehess.options.option`, so the command line, ``--config``
YAML files and the written ``config.yaml`` share one flat namespace of keys (``top_n``, ``trace_probes`` …), the
click options take their defaults and help from here, and the resume key is a digest of the fields declared as
changing numbers.

Example:
    >>> config = ExtractConfig.of(resume="runs", top_n=3, trace_probes=50)
    >>> config.analyses.top_eigen.k, config.analyses.trace.probes, config.data.seed
    (3, 50, 1)
    >>> config.to_dict()["top_n"]
    3
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from prunehess.analyses import AnalysisOptions
from prunehess.errors import ConfigError
from prunehess.options import all_keys, check, flat, from_flat, load_yaml_config, numerics_items, option

__all__ = ["ExtractConfig", "SourceOptions", "DataOptions", "EngineOptions", "STRATEGY_CHOICES"]

STRATEGY_CHOICES = ("auto", "tune", "graph", "double_backward", "forward_over_reverse")


@dataclass(frozen=True)
class SourceOptions:
    """Where the checkpoints come from and how their zip is read."""

    resume: Path = option(Path("."), numerics=False,
                          help="Folder holding the zip (with --no-extract: the unpacked folder). Default: the "
                               "current folder. Example: --resume runs/")
    zipname: Optional[str] = option(None, numerics=False, show_default=False,
                                    help="Zip of checkpoints inside --resume (or a path to it), unpacked into "
                                         "<zip folder>/<zip stem>/. Default: mnist.zip (the seed's), else the folder's "
                                         "only zip.")
    extract: bool = option(True, off=("--no-extract",), numerics=False,
                           help="Unpack the zip, or read an already-unpacked --resume folder.")
    naming: Optional[str] = option(None, key="layout", show_default=False,
                                   help=r"Regex for other checkpoint namings, with groups iteration and epoch. "
                                        r"Example: 'it(?P<iteration>\d+)/ep(?P<epoch>\d+)\.pt'")
    trust_checkpoints: bool = option(False, numerics=False,
                                     help="Allow checkpoints that are pickled objects (runs code from the file: only "
                                          "for files you trust).")
    max_unpacked_mb: int = option(8192, minimum=1, numerics=False, help="Refuse zips that unpack to more than this.")
    max_ratio: float = option(250.0, positive=True, numerics=False,
                              help="Refuse zip entries compressed more than this ratio.")

    def __post_init__(self) -> None:
        check(self)

    def zip_path(self) -> Path:
        """The zip to unpack: ``--zipname`` in ``--resume`` (or the path it names); unnamed, ``mnist.zip`` or else
        the folder's only zip."""
        if self.zipname:
            named = Path(self.zipname)
            if named.parent != Path(".") and not (self.resume / named).is_file() and named.is_file():
                return named  # --zipname runs/mnist.zip: a path from the current folder
            return self.resume / named
        if (self.resume / "mnist.zip").is_file():
            return self.resume / "mnist.zip"
        zips = sorted(p.name for p in self.resume.glob("*.zip")) if self.resume.is_dir() else []
        if len(zips) == 1:
            return self.resume / zips[0]
        found = f"it holds {', '.join(zips)}" if zips else "it holds no .zip file"
        raise ConfigError(f"{self.resume}: which zip? {found}; name one with --zipname")

    def unpacked_folder(self) -> Path:
        """Where the checkpoints are read: ``<zip folder>/<zip stem>/``, or ``--resume`` itself with
        ``--no-extract``."""
        if not self.extract:
            return self.resume
        zip_path = self.zip_path()
        return zip_path.parent / zip_path.stem


@dataclass(frozen=True)
class DataOptions:
    """The model the checkpoints load into, and the data the Hessian is taken over."""

    dataset: Optional[str] = option(None, show_default=False,
                                    help="mnist, fashionmnist, cifar10, svhn (torchvision, from --data-root) or digits "
                                         "(bundled). Default: the run's train_config.yaml (zips from `prunehess "
                                         "train`), else mnist.")
    model: Optional[str] = option(None, show_default=False,
                                  help="fc1, lenet5, resnet20, resnet18, vgg11_bn, or your own as FILE.py:factory / "
                                       "package.module:factory. Default: the run's train_config.yaml, else fc1.")
    depth: int = option(20, minimum=1, help="Depth of resnet20-family models (6n+2).")
    batch_norm: bool = option(True, aliases=("--batch_norm",), off=("--no-batch-norm", "--no_batch_norm"),
                              help="BatchNorm in ResNet models.")
    residual: bool = option(True, off=("--no-residual",), help="Skip connections in ResNet models.")
    data_root: Path = option(Path("data"), aliases=("--data_root",), numerics=False,
                             help="Where torchvision datasets live (e.g. <root>/MNIST/raw).")
    download: bool = option(True, off=("--no-download",), numerics=False,
                            help="Download a missing torchvision dataset into --data-root (with progress); "
                                 "--no-download: only read what is there.")
    hessian_batch_size: int = option(200, aliases=("--hessian_batch_size",), minimum=1,
                                     help="Samples in the Hessian batch (a seeded subset of the training split).")
    mini_hessian_batch_size: int = option(200, aliases=("--mini_hessian_batch_size",), minimum=1,
                                          help="Samples per mini-batch of the Hessian batch (bounds memory).")
    seed: int = option(1, help="Seed of the Hessian batch and of every estimator's probes.")
    test_accuracy: bool = option(True, off=("--no-test-accuracy",), help="Record each checkpoint's test accuracy.")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class EngineOptions:
    """Where the products run and how they are computed (never the numbers, beyond rounding)."""

    cuda: Optional[bool] = option(None, off=("--no-cuda",), numerics=False, show_default=False,
                                  help="Use a GPU (default: when there is one).")
    device: Optional[str] = option(None, numerics=False, show_default=False,
                                   help="Explicit torch device, e.g. cuda:1 or cpu (overrides --cuda).")
    parallel: bool = option(False, numerics=False,
                            help="DataParallel over the visible GPUs for the Hessian-vector products.")
    strategy: str = option("auto", choices=STRATEGY_CHOICES, numerics=False,
                           help="How Hessian-vector products are computed; auto chooses by a rule without timing "
                                "(graph reuse, mini-batches merged into larger chunks where their activations fit "
                                "64 MiB, on a GPU replayed from CUDA graphs), tune times the candidates on the first "
                                "checkpoint; either choice is saved for every checkpoint of the run.")
    data_parallel: bool = option(False, numerics=False,
                                 help="Under torchrun: split the Hessian batch across ranks (all-reduced HVPs) "
                                      "instead of sharding checkpoints.")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class ExtractConfig:
    """Everything ``prunehess extract`` needs, in sections (see the module docstring)."""

    source: SourceOptions = field(default_factory=SourceOptions)
    data: DataOptions = field(default_factory=DataOptions)
    analyses: AnalysisOptions = field(default_factory=AnalysisOptions)
    engine: EngineOptions = field(default_factory=EngineOptions)
    output: Path = option(Path("output"), numerics=False, help="Output tree root.")

    def __post_init__(self) -> None:
        check(self)

    # ----- building -------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ExtractConfig":
        """Build from flat option keys (dashes or underscores, as on the command line or in YAML); unknown keys
        are refused by name."""
        known = set(all_keys(cls))
        plain = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(plain) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return from_flat(cls, plain)

    @classmethod
    def of(cls, **options: Any) -> "ExtractConfig":
        """``from_mapping(options)``: ``ExtractConfig.of(resume="runs", top_n=3)``."""
        return cls.from_mapping(options)

    def replace(self, **options: Any) -> "ExtractConfig":
        """A copy with some options (flat keys) changed."""
        return self.from_mapping({**self.to_dict(), **options})

    def with_run_defaults(self, folder: Path) -> "ExtractConfig":
        """Fill ``dataset``/``model`` from a ``train_config.yaml`` that ``prunehess train`` put in the zip; else the
        seed's defaults, ``mnist`` and ``fc1``."""
        if self.data.dataset is not None and self.data.model is not None:
            return self
        found = sorted(Path(folder).rglob("train_config.yaml"))
        run = load_yaml_config(found[0]) if found else {}
        data = dataclasses.replace(self.data, dataset=self.data.dataset or str(run.get("dataset") or "mnist"),
                                   model=self.data.model or str(run.get("model") or "fc1"))
        return dataclasses.replace(self, data=data)

    # ----- reading ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every option as ``{key: value}`` (paths as strings): what ``config.yaml`` holds."""
        return flat(self)

    def numerics_key(self) -> str:
        """A digest of every option declared as changing the numbers: finished checkpoints are reused only under
        the same key."""
        items = numerics_items(self)
        return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16]
