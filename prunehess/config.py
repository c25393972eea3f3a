"""The resolved configuration of ``prunehess extract``: YAML file → one frozen dataclass → the pipeline.

The command line fills :class:`ExtractConfig` (a ``--config`` YAML file supplies defaults, the command line wins);
library users construct it directly. Values are validated here, loudly, naming the allowed choices.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from prunehess.errors import ConfigError

__all__ = ["ExtractConfig", "load_yaml_config", "METHODS", "PARAM_MODES", "TRACE_METHODS", "STRATEGY_CHOICES"]

METHODS = ("lanczos", "power")
PARAM_MODES = ("active", "all")
TRACE_METHODS = ("hutchinson", "hutch++")
STRATEGY_CHOICES = ("auto", "graph", "double_backward", "forward_over_reverse")


@dataclass(frozen=True)
class ExtractConfig:
    """Everything ``prunehess extract`` needs. Field names are the CLI options' (dashes → underscores)."""

    resume: Path
    zipname: Optional[str] = None  # None: mnist.zip (the seed's default) if present, else the folder's only zip
    dataset: Optional[str] = None  # None: from the run's train_config.yaml, else "mnist"
    model: Optional[str] = None  # None: from the run's train_config.yaml, else "fc1"
    output: Path = Path("output")
    mini_hessian_batch_size: int = 200
    hessian_batch_size: int = 200
    seed: int = 1
    batch_norm: bool = True
    residual: bool = True
    depth: int = 20
    cuda: Optional[bool] = None  # None: use a GPU when there is one
    device: Optional[str] = None  # overrides cuda (e.g. "cuda:1", "cpu")
    compute_each_layer: bool = False
    extract: bool = True
    parallel: bool = False
    data_root: Path = Path("data")
    download: bool = False
    top_n: int = 1
    method: str = "lanczos"
    tol: float = 1e-3
    max_iter: int = 100
    trace_method: str = "hutchinson"
    trace_probes: int = 100
    trace_tol: Optional[float] = 1e-3
    trace_min_probes: int = 10
    trace_deflation: bool = True
    slq_steps: int = 100
    slq_runs: int = 1
    params: str = "active"
    strategy: str = "auto"
    layout: Optional[str] = None
    trust_checkpoints: bool = False
    test_accuracy: bool = True
    max_unpacked_mb: int = 8192
    max_ratio: float = 250.0

    def __post_init__(self):
        object.__setattr__(self, "resume", Path(self.resume))
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "data_root", Path(self.data_root))
        for name, allowed in (("method", METHODS), ("params", PARAM_MODES), ("trace_method", TRACE_METHODS),
                              ("strategy", STRATEGY_CHOICES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        for name in ("mini_hessian_batch_size", "hessian_batch_size", "top_n", "trace_probes", "trace_min_probes",
                     "slq_steps", "slq_runs", "max_iter", "depth", "max_unpacked_mb"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.trace_method == "hutch++" and self.trace_probes < 3:
            raise ConfigError("trace_probes must be at least 3 for hutch++")
        if self.tol <= 0:
            raise ConfigError(f"tol must be positive, got {self.tol}")
        if not self.max_ratio > 0:
            raise ConfigError(f"max_ratio must be positive, got {self.max_ratio}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ExtractConfig":
        """Build from a mapping with CLI-style or field-style keys; unknown keys are refused by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        plain = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(plain) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "resume" not in plain or plain["resume"] in (None, ""):
            raise ConfigError("resume: the folder holding the zip is required (--resume DIR)")
        return cls(**plain)

    def zip_path(self) -> Path:
        """The zip to unpack: ``--zipname`` in ``--resume``; unnamed, ``mnist.zip`` or else the folder's only zip."""
        if self.zipname:
            return self.resume / self.zipname
        if (self.resume / "mnist.zip").is_file():
            return self.resume / "mnist.zip"
        zips = sorted(p.name for p in self.resume.glob("*.zip")) if self.resume.is_dir() else []
        if len(zips) == 1:
            return self.resume / zips[0]
        found = f"it holds {', '.join(zips)}" if zips else "it holds no .zip file"
        raise ConfigError(f"{self.resume}: which zip? {found}; name one with --zipname")

    def unpacked_folder(self) -> Path:
        """Where the checkpoints are read: ``<resume>/<zip stem>/``, or ``--resume`` itself with ``--no-extract``."""
        return self.resume / self.zip_path().stem if self.extract else self.resume

    def with_run_defaults(self, folder: Path) -> "ExtractConfig":
        """Fill ``dataset``/``model`` (and the ResNet switches, when not set) from a ``train_config.yaml`` that
        ``prunehess train`` put in the zip; else the seed's defaults, ``mnist`` and ``fc1``."""
        if self.dataset is not None and self.model is not None:
            return self
        found = sorted(Path(folder).rglob("train_config.yaml"))
        run = load_yaml_config(found[0]) if found else {}
        return dataclasses.replace(
            self,
            dataset=self.dataset or str(run.get("dataset") or "mnist"),
            model=self.model or str(run.get("model") or "fc1"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    def numerics_key(self) -> str:
        """A digest of every option that changes the numbers (finished checkpoints are reused only under the same key)."""
        ignore = {"output", "cuda", "device", "parallel", "extract", "download", "trust_checkpoints", "data_root",
                  "resume", "zipname", "strategy", "max_unpacked_mb", "max_ratio"}
        items = {k: v for k, v in self.to_dict().items() if k not in ignore}
        if self.trace_method != "hutchinson" or self.trace_tol is None:
            items.pop("trace_min_probes")  # only the stopping rule reads it: no reason to recompute other runs
        return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16]


def load_yaml_config(path: Path) -> dict[str, Any]:
    """Read a YAML mapping of options; a malformed file is one ConfigError line naming it."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror or err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', None) or err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}
