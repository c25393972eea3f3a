"""``notebooks/code.ipynb`` runs top to bottom in a real kernel (nbclient + ipykernel) on an output tree made here.

The tree comes from ``prunehess extract`` on a cut-down copy of the bundled sample (prune iterations 0 and 1:
epochs 0/10/20 and the best checkpoint of each; per-layer results on; small Hessian batch and few Lanczos
steps; the top two eigenvectors saved, for the landscape geometry), so the whole module takes well under a
minute on one CPU thread. The notebook is pointed at it with ``PRUNEHESS_OUTPUT`` and executed once; the tests
then read the executed cells and the files it saved.
"""
from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (pip install -e '.[test]')")
pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel for a python3 kernel "
                                        "(pip install -e '.[test]')")

import prunehess.plots as pp  # noqa: E402
from prunehess.pipeline import ExtractConfig, extract  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "code.ipynb"
SAMPLE_ZIP = REPO / "sample_checkpoints" / "digits.zip"
KEEP = ("0_model_", "1_model_", "train_config.yaml")  # two prune iterations; train_config names dataset and model
ITERATIONS = (0, 1)
PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"

# Every public function of prunehess.plots; the notebook shows each one.
FUNCTIONS = [name for name in pp.__all__
             if name not in ("DensityMap", "BestSummary", "DENSITY_STYLES", "render_report")]
RENDERERS = [name for name in FUNCTIONS if name.startswith("render_")]


def _small_sample(folder: Path) -> Path:
    """A copy of the sample zip holding prune iterations 0 and 1 only (8 of its 17 checkpoints)."""
    folder.mkdir()
    with zipfile.ZipFile(SAMPLE_ZIP) as src, zipfile.ZipFile(folder / "digits.zip", "w") as dst:
        for name in src.namelist():
            if name.startswith(KEEP):
                dst.writestr(name, src.read(name))
    return folder


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """``(notebook after execution, output tree)``: extract on the small sample, then run every cell."""
    if not SAMPLE_ZIP.is_file():
        pytest.skip(f"{SAMPLE_ZIP} is missing")
    tmp_path = tmp_path_factory.mktemp("notebook")
    output = tmp_path / "output"
    extract(ExtractConfig.of(resume=_small_sample(tmp_path / "run"), zipname="digits.zip", output=output,
                             compute_each_layer=True, hessian_batch_size=50, slq_steps=20, trace_probes=20,
                             max_iter=30, strategy="graph", device="cpu", save_eigenvectors=True, top_n=2),
            on_event=lambda event: None)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNEHESS_OUTPUT", str(output))  # the kernel inherits this process's environment
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": tmp_path}})
        client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    return nb, output


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _images(cell, mime="image/png"):
    return [base64.b64decode(out["data"][mime]) for out in cell.get("outputs", [])
            if out.get("output_type") in ("display_data", "execute_result") and mime in out.get("data", {})]


def test_notebook_is_stored_clean():
    """Saved without outputs, with the python3 kernelspec, and reading its results from PRUNEHESS_OUTPUT."""
    raw = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    nb = nbformat.reads(json.dumps(raw), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in _code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    first = _code_cells(nb)[0].source
    assert 'os.environ.get("PRUNEHESS_OUTPUT", "../demo_output")' in first
    assert "extract(" in first and "compute_each_layer=True" in first  # standalone: analyses the sample itself
    sources = "\n".join(cell.source for cell in _code_cells(nb))
    assert "import prunehess.plots" in sources
    missing = [name for name in FUNCTIONS if f"pp.{name}(" not in sources]
    assert not missing, f"the notebook never calls {missing}"
    assert sum(cell.cell_type == "markdown" for cell in nb.cells) >= len(_code_cells(nb)) // 2


def test_runs_without_errors(executed):
    nb, _ = executed
    for cell in _code_cells(nb):
        assert cell.execution_count is not None, cell.source[:80]
        errors = [out for out in cell.outputs if out.output_type == "error"]
        assert not errors, f"{cell.source[:80]!r}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        streams = "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream"
                          and out.get("name") == "stderr")
        assert "Traceback" not in streams, streams


def test_figures_are_shown_inline(executed):
    """Every renderer draws at least one figure that the kernel displays as a PNG (not a text repr)."""
    nb, _ = executed
    shown = [cell for cell in _code_cells(nb) if _images(cell)]
    assert len(shown) >= 8, f"only {len(shown)} cells displayed a PNG"
    for cell in shown:
        for image in _images(cell):
            assert image.startswith(PNG) and len(image) > 5_000
    for name in RENDERERS:
        assert any(f"pp.{name}(" in cell.source for cell in shown), f"no inline figure from {name}"
    texts = [out["data"]["text/plain"] for cell in _code_cells(nb) for out in cell.outputs
             if "data" in out and "text/plain" in out["data"] and "image/png" not in out["data"]]
    assert not [t for t in texts if t.startswith("<Figure")], "a figure was shown as text, not as an image"
    saved = [img for cell in _code_cells(nb) for img in _images(cell, "image/jpeg")]
    assert saved and saved[0].startswith(JPEG)  # one of the saved JPEGs, shown back


def test_saving_functions_wrote_their_files(executed):
    """The seed's five, plot_layer_match, plot_all and write_report wrote where the notebook says."""
    _, output = executed
    figures = output / "notebook_figures"
    expected = [f"{kind}/{part}/model{i}.jpg" for kind in ("top_eigenvalues", "trace", "SLQ")
                for part in ("whole_model", "layer0") for i in ITERATIONS]
    expected += [f"{kind}/{part}/best_model.jpg" for kind in ("top_eigenvalues_best", "trace_best")
                 for part in ("whole_model", "layer0")]
    expected += [f"layer_match/model{i}.jpg" for i in ITERATIONS] + ["layer_match/best_model.jpg"]
    expected += [f"all/{kind}/whole_model/model{i}.jpg" for kind in ("top_eigenvalues", "trace", "SLQ")
                 for i in ITERATIONS]
    expected += ["all/top_eigenvalues_best/whole_model/best_model.jpg", "all/trace_best/whole_model/best_model.jpg"]
    missing = [name for name in expected if not (figures / name).is_file()]
    assert not missing, f"not written: {missing}"
    for name in expected:
        assert (figures / name).read_bytes()[:3] == JPEG, name
    assert not (figures / "top_eigenvalues" / "layer1").exists()  # layers=1: the first per-layer folder only
    report = (figures / "report.html").read_text(encoding="utf-8")
    assert report.lstrip().lower().startswith("<!doctype html") and "data:image/png;base64," in report


def test_geometry_ran_and_was_saved(executed):
    """The landscape geometry section ran landscape, barrier and pruning-step on the tree (they were missing) and
    saved their figures with the saving functions."""
    _, output = executed
    tags = [f"{i + 1:03d}_best" for i in ITERATIONS]
    results = [f"landscape/{d}{tag}.txt" for d in ("top1", "top2", "gradient", "random", "top1-top2") for tag in tags]
    results += ["barrier/barrier.csv", "barrier/consecutive_001_best_002_best.txt", "pruning_step/pruning_step.csv"]
    results += [f"barrier/rewind_{i + 1:03d}_00_{tag}.txt" for i, tag in zip(ITERATIONS, tags)]
    missing = [name for name in results if not (output / name).is_file()]
    assert not missing, f"not computed: {missing}"
    figures = output / "notebook_figures"
    expected = ["accuracy_best/best_model.jpg", "landscape/best_model.jpg", "barrier/consecutive.jpg",
                "barrier/rewind.jpg", "overlap/whole_model/best_model.jpg", "overlap/whole_model/layer_share.jpg",
                "overlap/layer0/best_model.jpg", "pruning_step/loss_change.jpg", "pruning_step/saliency_agreement.jpg",
                "all/landscape/best_model.jpg", "all/barrier/rewind.jpg"]
    expected += [f"landscape/surface{tag}.jpg" for tag in tags]
    expected += [f"overlap/whole_model/model{i}.jpg" for i in ITERATIONS]
    missing = [name for name in expected if not (figures / name).is_file()]
    assert not missing, f"not written: {missing}"
    for name in expected:
        assert (figures / name).read_bytes()[:3] == JPEG, name


def test_printed_listings_match_the_tree(executed):
    """The cells that list the tree and the saved files print what is there."""
    nb, output = executed
    text = "\n".join(out.get("text", "") for cell in _code_cells(nb) for out in cell.outputs
                     if out.output_type == "stream")
    assert str(output.resolve()) in text
    assert "fc1 on digits" in text
    for i in ITERATIONS:
        assert f"top_eigenvalues/whole_model/model{i}.jpg" in text
    assert "trace_best/whole_model/best_model.jpg" in text
    assert "each column integrates to [1. 1. 1.]" in text
