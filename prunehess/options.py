"""Options declared once: a dataclass field carries its default, its help, its spellings and its effect.

Every setting a user can give (on the command line, in a ``--config`` YAML file, or in Python) is a field of a
frozen dataclass declared with :func:`option`. The field's metadata says what the command line needs (the
primary flag is ``--<key with dashes>``; ``aliases`` adds other spellings, ``off`` the ``--no-…`` spellings of a
switch), how a value is checked (``choices``, ``minimum``) and whether it changes numbers (``numerics``: the
resume key of an output folder is a digest of those fields). Sections nest: a field whose value is itself such
a dataclass contributes its own fields, so one flat namespace of keys (``top_n``, ``trace_probes`` …) serves the
command line, YAML files and ``config.yaml``, while the code sees one small options object per concern.

This module knows nothing of click; :mod:`prunehess.cli` builds its options from these declarations.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Probes:
    ...     count: int = option(10, key="probes", minimum=1, help="How many probes.")
    ...     verbose: bool = option(False, numerics=False, help="Say more.")
    ...     def __post_init__(self):
    ...         check(self)
    >>> flat(Probes(count=3))
    {'probes': 3, 'verbose': False}
    >>> numerics_items(Probes(count=3))
    {'probes': 3}
    >>> Probes(count=0)
    Traceback (most recent call last):
    ...
    prunehess.errors.ConfigError: probes must be at least 1, got 0
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from prunehess.errors import ConfigError

__all__ = ["Option", "option", "option_fields", "key_of", "value_type", "check", "flat", "numerics_items", "from_flat",
           "all_keys", "load_yaml_config"]


@dataclass(frozen=True)
class Option:
    """What the command line, YAML files and the resume key know of one field.

    Attributes:
        help: one or two sentences for ``--help``.
        key: the flat name (click's destination, the YAML key, the ``config.yaml`` key); default the field name.
        aliases: other spellings of the flag (e.g. ``("--top_n",)``, the seed tool's).
        off: for a switch, the spellings that turn it off (``("--no-cuda",)``); without them a boolean is a flag.
        numerics: whether the value changes the numbers written (part of the resume key).
        choices: the allowed values of a string option.
        minimum: the smallest allowed value of a number (inclusive); ``positive`` excludes 0 as well.
        positive: numbers must be > 0.
        zero_is_none: on the command line, ``0`` stands for ``None`` (e.g. ``--trace-tol 0``: no stopping rule).
        show_default: show the default in ``--help``.
        metavar: the value's name in ``--help``.
    """

    help: str
    key: str = ""
    aliases: tuple[str, ...] = ()
    off: tuple[str, ...] = ()
    numerics: bool = True
    choices: tuple[str, ...] = ()
    minimum: Optional[float] = None
    positive: bool = False
    zero_is_none: bool = False
    show_default: bool = True
    metavar: str = ""


def option(default: Any, *, help: str, **spec: Any) -> Any:
    """A dataclass field with default ``default`` and the :class:`Option` metadata ``help``, ``**spec``."""
    return dataclasses.field(default=default, metadata={"option": Option(help=help, **spec)})


def _spec(field: dataclasses.Field) -> Optional[Option]:
    return field.metadata.get("option")


def key_of(field: dataclasses.Field) -> str:
    spec = _spec(field)
    return (spec.key if spec is not None and spec.key else field.name)


def option_fields(section_type: type) -> Iterator[tuple[type, dataclasses.Field, Option]]:
    """``(owner type, field, Option)`` of every option of ``section_type``, nested sections expanded in declaration
    order."""
    hints = typing.get_type_hints(section_type)
    for field in dataclasses.fields(section_type):
        spec = _spec(field)
        if spec is not None:
            yield section_type, field, spec
        elif dataclasses.is_dataclass(hints.get(field.name)):
            yield from option_fields(hints[field.name])


def value_type(section_type: type, field: dataclasses.Field) -> type:
    """The plain type of a field: ``int``, ``float``, ``str``, ``bool`` or ``Path`` (``Optional`` unwrapped)."""
    hint = typing.get_type_hints(section_type)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def check(section: Any) -> None:
    """Coerce paths and validate every option of ``section`` (not nested ones: each section checks its own),
    raising :class:`~prunehess.errors.ConfigError` that names the option's key."""
    for field in dataclasses.fields(section):
        spec = _spec(field)
        if spec is None:
            continue
        key, value = key_of(field), getattr(section, field.name)
        kind = value_type(type(section), field)
        if kind is Path and value is not None and not isinstance(value, Path):
            object.__setattr__(section, field.name, Path(value))
            continue
        if spec.zero_is_none and value == 0 and not isinstance(value, bool):
            object.__setattr__(section, field.name, None)
            continue
        if value is None:
            continue
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, spec.choices))}")
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
                raise ConfigError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
            if spec.positive and not value > 0:
                raise ConfigError(f"{key} must be positive, got {value!r}")
            if spec.minimum is not None and value < spec.minimum:
                raise ConfigError(f"{key} must be at least {spec.minimum:g}, got {value!r}")


def flat(section: Any) -> dict[str, Any]:
    """Every option of ``section`` and its nested sections as ``{key: value}`` (paths as strings)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if _spec(field) is None and dataclasses.is_dataclass(value):
            out.update(flat(value))
        elif _spec(field) is not None:
            out[key_of(field)] = str(value) if isinstance(value, Path) else value
    return out


def numerics_items(section: Any) -> dict[str, Any]:
    """The options that change numbers, as ``{key: value}``; a section may narrow its own with a
    ``numerics_items(self)`` method (e.g. an option that only one method reads)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        spec = _spec(field)
        if spec is None and dataclasses.is_dataclass(value):
            own = getattr(value, "numerics_items", None)
            out.update(own() if callable(own) else numerics_items(value))
        elif spec is not None and spec.numerics:
            out[key_of(field)] = str(value) if isinstance(value, Path) else value
    return out


def from_flat(section_type: type, values: Mapping[str, Any]) -> Any:
    """Build ``section_type`` (nested sections too) from ``{key: value}``; absent keys keep their defaults.
    Keys that no field of the section claims are ignored here (the caller refuses unknown keys)."""
    hints = typing.get_type_hints(section_type)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(section_type):
        if _spec(field) is None and dataclasses.is_dataclass(hints.get(field.name)):
            kwargs[field.name] = from_flat(hints[field.name], values)
        elif _spec(field) is not None and key_of(field) in values:
            kwargs[field.name] = values[key_of(field)]
    return section_type(**kwargs)


def all_keys(section_type: type) -> list[str]:
    """The flat keys of every option of ``section_type``, nested sections included, in declaration order."""
    return [key_of(field) for _, field, _ in option_fields(section_type)]


def load_yaml_config(path: Path) -> dict[str, Any]:
    """Read a YAML mapping of options (``--config FILE``, ``train_config.yaml``) with keys normalised to
    underscores; a malformed file is one :class:`~prunehess.errors.ConfigError` line naming it."""
    import yaml  # only when a file is read

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
