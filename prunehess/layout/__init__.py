"""The output tree of ``prunehess extract``: one object owns every path, every writer, every reader.

The tree is the seed tool's (a pruning fork of PyHessian), kept readable by its users' notebooks::

    <root>/
      top_eigenvalues/top_eigenvalues<III>_<EE>.txt    one eigenvalue per line, largest first
      trace/trace<III>_<EE>.txt                        one number: the Hutchinson estimate
      density_eigen/density_eigen<III>_<EE>.txt        SLQ nodes, one column per run
      density_weight/density_weight<III>_<EE>.txt      matching weights (each column sums to 1)
      esd_plot/esd_plot<III>_<EE>.pdf                  Gaussian-broadened density, log y axis
      <metric>/<metric><III>_<EE>.<ext>                any other analysis's results (e.g. bottom_eigenvalues)
      <metric>_layer<k>/<metric><III>_<EE>.<ext>       the same for parameter tensor k alone
      layers.txt  remain_params.txt  summary.csv  config.yaml  report.html
      figures/                                         plots, unless told otherwise
      .prunehess/                                      hidden run state: lock, records/<tag>.json,
                                                       strategy.json, superseded/<UTC time>/

``III`` is the pruning iteration + 1, zero-padded to at least three digits (``000`` = the initial weights),
``EE`` the epoch padded to at least two digits, or ``best``. Names are built by :func:`iteration_tag` and
:func:`epoch_tag` and parsed by pattern (never by character position), so epochs >= 100 and iterations
>= 999 round-trip. Metric folders are generic: any metric name (:mod:`prunehess.layout.names`) has its folders
and files, so a new analysis adds its folder without editing this package.

"Layout" means this tree only. Every writer is atomic (:mod:`prunehess.storage`): a run killed at any moment
leaves either the old file or the new one, never half of one. Every reader raises
:class:`prunehess.errors.DataError` whose message names the file and the problem. Nothing here renders
figures or imports torch.

Example:
    >>> import tempfile
    >>> out = OutputLayout(tempfile.mkdtemp())
    >>> out.result_path("trace", 0, 10).relative_to(out.root).as_posix()
    'trace/trace001_10.txt'
    >>> out.write_trace(0, 10, 12.5)
    >>> out.read_metric("trace")
    {(0, 10): array([12.5])}
    >>> out.parse_result_name("top_eigenvalues000_best.txt")
    ('top_eigenvalues', -1, None)
    >>> out.write_values("bottom_eigenvalues", 0, 10, [-0.5, -0.25])
    >>> out.list_results("bottom_eigenvalues")[(0, 10)].name
    'bottom_eigenvalues001_10.txt'
"""
from prunehess.layout.names import METRICS, RESULT_EXTENSIONS, TEXT_METRICS, epoch_tag, iteration_tag
from prunehess.layout.output import OutputLayout
from prunehess.layout.paths import ResultKey
from prunehess.layout.summary import Column, ColumnKind

__all__ = [
    # the tree
    "OutputLayout", "ResultKey",
    # names
    "iteration_tag", "epoch_tag", "METRICS", "TEXT_METRICS", "RESULT_EXTENSIONS",
    # summary.csv
    "Column", "ColumnKind",
]
