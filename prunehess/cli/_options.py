"""Click options built from declared dataclass fields, and the ``--config FILE.yaml`` option every command shares.

:func:`declared_options` turns each field declared with :func:`prunehess.options.option` into a click option: the
primary flag ``--<key with dashes>`` and the declared aliases, the field's default (shown in ``--help``) and help,
``--x/--no-x`` for switches with ``off`` spellings. Values are checked by the dataclasses themselves, which give one
:class:`~prunehess.errors.ConfigError` line naming the option, rather than by click.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import click

from prunehess.errors import ConfigError
from prunehess.options import key_of, load_yaml_config, option_fields, value_type

__all__ = ["declared_options", "config_file_option"]

_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _click_option(owner: type, field, spec) -> Callable:
    key = key_of(field)
    primary = "--" + key.replace("_", "-")
    kind = value_type(owner, field)
    common: dict[str, Any] = {"help": spec.help, "show_default": spec.show_default}
    default = field.default
    if kind is bool and spec.off:
        pairs = [f"{on}/{off}" for on, off in zip((primary, *spec.aliases), spec.off)]
        return click.option(*pairs, key, default=default, **common)
    if kind is bool:
        return click.option(primary, *spec.aliases, key, is_flag=True, default=default, **common)
    if spec.choices:
        click_type: Any = click.Choice(spec.choices)
    elif kind is Path:
        click_type = click.Path(file_okay=False)
        default = None if default is None else str(default)
    else:
        click_type = _TYPES[kind]
    if spec.metavar:
        common["metavar"] = spec.metavar
    return click.option(primary, *spec.aliases, key, type=click_type, default=default, **common)


def declared_options(section_type: type) -> Callable:
    """A decorator adding a click option for every declared option of ``section_type`` (nested sections too)."""
    options = [_click_option(owner, field, spec) for owner, field, spec in option_fields(section_type)]

    def decorate(command: Callable) -> Callable:
        for add in reversed(options):
            command = add(command)
        return command

    return decorate


def _load(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """Feed the YAML file's options to click's ``default_map``: the command line wins over the file, the file over
    the defaults. Unknown names and values of the wrong type are one line naming the file."""
    if not value:
        return value
    values = load_yaml_config(Path(value))
    params = {p.name: p for p in ctx.command.params if p.name and p.name != "config"}
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise ConfigError(f"{value}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(params))}")
    for key, item in values.items():
        try:
            params[key].type_cast_value(ctx, item)
        except click.BadParameter as err:
            raise ConfigError(f"{value}: {key}: {err.message}") from None
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


def config_file_option(example: str) -> Callable:
    """``--config FILE.yaml``: a YAML mapping of the command's own option names (``-`` or ``_``)."""
    return click.option("--config", type=click.Path(dir_okay=False), callback=_load, is_eager=True,
                        expose_value=False,
                        help=f"YAML file of options (same names as below); the command line wins. Example: {example}")
