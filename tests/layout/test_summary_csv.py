"""summary.csv: written from the caller's columns, read back by inference from the file alone."""
from __future__ import annotations

import numpy as np
import pytest

from prunehess.errors import DataError
from prunehess.layout import Column

COLUMNS = [
    Column("iteration", "int"), Column("epoch", "epoch"), Column("layer", "int"),
    Column("remaining_percent", "float"), Column("test_accuracy", "float"), Column("top_eigenvalues", "floats"),
    Column("trace", "float"), Column("trace_stderr", "float"), Column("hvps", "int"), Column("seconds", "float"),
]


def test_summary_round_trip(out):
    rows = [
        dict(iteration=0, epoch=10, layer=None, remaining_percent=100.0, test_accuracy=0.9812,
             top_eigenvalues=[1807.968017578125, 3.5], trace=13903.346422697368, trace_stderr=12.5, hvps=600,
             seconds=1.25),
        dict(iteration=0, epoch=None, layer=3, remaining_percent=100.0, test_accuracy=None,
             top_eigenvalues=[0.001460271654650569], trace=0.0035, trace_stderr=None, hvps=10, seconds=0.1,
             note="extra column"),
    ]
    out.write_summary(rows, COLUMNS)
    header = out.summary_file.read_text().splitlines()[0].split(",")
    assert header == [c.name for c in COLUMNS] + ["note"]
    back = out.read_summary()
    assert back[0] == {**rows[0], "note": None}
    assert back[1] == rows[1]


def test_summary_bytes(out):
    rows = [dict(iteration=0, epoch=10, layer=None, remaining_percent=100, test_accuracy=0.98,
                 top_eigenvalues=np.array([1.5, 2e-9]), trace=13.3, trace_stderr=None, hvps=600, seconds=1.25),
            dict(iteration=0, epoch=None, layer=3, remaining_percent=99.5, test_accuracy=None, top_eigenvalues=[0.1],
                 trace=0.0035, trace_stderr=0.2, hvps=10, seconds=0.1, note="x, y", extra=2.5)]
    out.write_summary(rows, COLUMNS)
    assert out.summary_file.read_text() == (
        "iteration,epoch,layer,remaining_percent,test_accuracy,top_eigenvalues,trace,trace_stderr,hvps,seconds,"
        "note,extra\n"
        "0,10,,100.0,0.98,1.5 2e-09,13.3,,600,1.25,,\n"
        '0,best,3,99.5,,0.1,0.0035,0.2,10,0.1,"x, y",2.5\n')


def test_columns_come_from_the_caller(out):
    columns = [Column("iteration", "int"), Column("epoch", "epoch"), Column("bottom_eigenvalues", "floats"),
               Column("method", "text"), Column("probes", "int")]
    rows = [dict(iteration=1, epoch=2, bottom_eigenvalues=[-0.5], method="lanczos", probes=30, gap=[1.0, 2.0]),
            dict(iteration=1, epoch=None, bottom_eigenvalues=[-0.5, -0.25], method="power", probes=None)]
    out.write_summary(rows, columns)
    assert out.summary_file.read_text().splitlines() == [
        "iteration,epoch,bottom_eigenvalues,method,probes,gap", "1,02,-0.5,lanczos,30,1.0 2.0",
        "1,best,-0.5 -0.25,power,,"]
    assert out.read_summary() == [
        dict(iteration=1, epoch=2, bottom_eigenvalues=[-0.5], method="lanczos", probes=30.0, gap=[1.0, 2.0]),
        dict(iteration=1, epoch=None, bottom_eigenvalues=[-0.5, -0.25], method="power", probes=None, gap=None)]


def test_read_summary_infers_types(out):
    out.root.mkdir()
    out.summary_file.write_text(
        "iteration,epoch,layer,hvps,top_eigenvalues,moments,trace,label,tag\n"
        "2,best,,7,1.5,3.0,nan,fc1,001_10\n"
        "2,120,4,8,,1 2.5,-1e-07,,x y\n")
    first, second = out.read_summary()
    assert first["iteration"] == 2 and first["epoch"] is None and first["layer"] is None and first["hvps"] == 7
    assert first["top_eigenvalues"] == [1.5]  # a name ending in eigenvalues: always a list
    assert first["moments"] == [3.0]  # another cell of the column holds several numbers: lists
    assert np.isnan(first["trace"]) and first["label"] == "fc1" and first["tag"] == "001_10"
    assert second == dict(iteration=2, epoch=120, layer=4, hvps=8, top_eigenvalues=None, moments=[1.0, 2.5],
                          trace=-1e-07, label=None, tag="x y")
    assert all(type(v) is int for v in (first["iteration"], second["epoch"], second["layer"], second["hvps"]))


@pytest.mark.parametrize("text, problem", [
    ("iteration,epoch,top_eigenvalues\n0,0,1.0 x\n", "line 2 column top_eigenvalues: 'x' is not a number"),
    ("iteration,epoch\nx,0\n", "line 2: column iteration: 'x' is not an integer"),
    ("iteration,epoch,hvps\n0,0,1.5\n", "line 2: column hvps: '1.5' is not an integer"),
    ("iteration,epoch\n0,last\n", "line 2: column epoch: 'last' is neither an epoch nor 'best'"),
    ("iteration,epoch\n0,0,1\n", "line 2: more cells than the header has columns"),
    ("iteration,layer\n0,1\n", "header lacks the column(s) epoch"),
    ("", "empty (expected a header line)"),
    ("iteration,epoch,moments\n0,0,1 2\n0,1,x\n", "line 3 column moments: 'x' is not a number"),
])
def test_summary_malformed(out, text, problem):
    out.root.mkdir()
    out.summary_file.write_text(text)
    with pytest.raises(DataError) as err:
        out.read_summary()
    assert str(err.value) == f"{out.summary_file}: {problem}"


def test_summary_missing(out):
    with pytest.raises(DataError, match="summary.csv: not found"):
        out.read_summary()


def test_columns_are_checked():
    with pytest.raises(ValueError, match="unknown kind 'number'; expected one of: int, float, floats, epoch, text"):
        Column("trace", "number")
    with pytest.raises(ValueError, match="non-empty"):
        Column("", "int")


def test_write_summary_needs_distinct_columns(out):
    with pytest.raises(ValueError, match="more than once: trace"):
        out.write_summary([], [Column("trace", "float"), Column("trace", "float")])
    with pytest.raises(TypeError, match="Column"):
        out.write_summary([], ["trace"])
    with pytest.raises(TypeError, match="hvps must be an int"):
        out.write_summary([dict(hvps=1.5)], [Column("hvps", "int")])
    assert not out.summary_file.exists()
