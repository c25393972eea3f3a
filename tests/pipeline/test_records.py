"""Records are types: a checkpoint's record round-trips through its JSON, reads the records prunehess 0.1 wrote
(so their output folders resume), and gives the summary's rows in the summary's columns."""
from __future__ import annotations

import json

from prunehess.pipeline.records import SUMMARY_COLUMNS, BlockRow, CheckpointRecord, FailedRecord, record_from_json

OLD_RECORD = {  # a record as prunehess 0.1 wrote it (its pipeline built it as a dict)
    "checkpoint": "0f3c", "epoch": 10, "iteration": 0, "key": "b65bc596db3091fc", "kind": "snapshot",
    "loss": 0.25, "path": "/r/mnist/0_model_lt_epoch10.pth", "remaining_percent": 80.123456,
    "rows": [{"epoch": 10, "hvps": 117, "iteration": 0, "layer": None, "remaining_percent": 80.1235,
              "seconds": 1.5, "test_accuracy": 0.9, "top_eigenvalues": [3.5, 2.0], "trace": 24.7, "trace_stderr": 0.3},
             {"epoch": 10, "hvps": 8, "iteration": 0, "layer": 1, "remaining_percent": 80.1235, "seconds": 0.1,
              "test_accuracy": 0.9, "top_eigenvalues": [0.5], "trace": 0.9, "trace_stderr": 0.0}],
    "seconds": 1.7, "status": "done", "tag": "001_10", "test_accuracy": 0.9,
}


def test_a_record_of_prunehess_0_1_reads_back_and_writes_the_same_json():
    record = record_from_json(json.dumps(OLD_RECORD))
    assert isinstance(record, CheckpointRecord)
    assert record.rows[0] == BlockRow(layer=None, values={"top_eigenvalues": [3.5, 2.0], "trace": 24.7,
                                                          "trace_stderr": 0.3}, hvps=117, seconds=1.5)
    assert json.loads(record.to_json()) == OLD_RECORD
    assert record.summary_rows() == OLD_RECORD["rows"]


def test_summary_rows_hold_only_summary_columns():
    """A record's rows fill the summary's columns (a record of an earlier version leaves the newer ones empty)."""
    record = record_from_json(json.dumps(OLD_RECORD))
    names = [c.name for c in SUMMARY_COLUMNS]
    for row in record.summary_rows():
        assert set(row) <= set(names) and {"iteration", "epoch", "layer", "trace", "hvps", "seconds"} <= set(row)


def test_a_failed_record_and_unreadable_files():
    failed = FailedRecord(tag="002_best", error="x.pth: not a checkpoint", checkpoint="ab", key="k")
    assert record_from_json(failed.to_json()) == failed
    for text in ("", "{", "[]", '{"status": "done"}', '{"status": "other"}'):
        assert record_from_json(text) is None
