"""The ``prunehess`` command group and its error handling.

User errors (:class:`prunehess.errors.PrunehessError`) print one line, ``Error: <message>``, and exit with the
error's code; any other exception (a bug) prints one line too and exits 70; ``--debug`` shows the traceback
instead. Subcommands live in sibling modules and attach to
:data:`main` with ``@main.command()``.
"""
from __future__ import annotations

import warnings

import click

from prunehess.errors import PrunehessError

INTERNAL_ERROR = 70  # EX_SOFTWARE: an unexpected exception, not a problem with the input


class _FriendlyGroup(click.Group):
    """A click group that turns :class:`PrunehessError` into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PrunehessError as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {err}", err=True)
            ctx.exit(err.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as err:  # a bug in prunehess (or a library under it): one line too, the details on demand
            if ctx.obj and ctx.obj.get("debug"):
                raise
            detail = (str(err).strip().splitlines() or [""])[0]
            click.echo(f"Error: internal error ({type(err).__name__}: {detail}); rerun with --debug for the "
                       "traceback, and please report it", err=True)
            ctx.exit(INTERNAL_ERROR)


@click.group(cls=_FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="prunehess")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """prunehess: Hessian curvature of iteratively pruned networks.

    \b
    Typical use, in the folder holding the zip:
      prunehess extract --zipname mnist.zip --compute-each-layer   # writes output/
      prunehess plot trace-best                                    # writes output/figures/trace_best/
      prunehess report                                             # writes output/report.html
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    # torch.func imports torch.jit.script, which some torch releases flag as deprecated: not the user's concern
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
