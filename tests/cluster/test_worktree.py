"""Execution records travel with an item's result: git and DVC ignore them, a filter needs its
generator's MLflow run id from one."""

from __future__ import annotations

from lusaug.cluster.worktree import read_execution_records, write_outputs
from lusaug.core.utils import read_execution, write_execution


def test_execution_records_of_file_and_folder_outputs_round_trip(tmp_path):
    here, there = tmp_path / "worker", tmp_path / "downstream"
    write_execution(here / "models/fold-0/generators/g1", {"mlflow_run_id": "abc"})
    write_execution(here / "models/classifiers/fold-0/baseline-resnet-0", {"seconds": 3})
    (here / "models/classifiers/fold-0/baseline-resnet-0/model.pt").write_bytes(b"weights")
    write_execution(here / "metrics/fold-0/encoder.json", {"seconds": 1})
    (here / "metrics/fold-0/other.json").write_text("{}")
    outs = ["models/fold-0/generators/g1", "models/classifiers/fold-0", "metrics/fold-0/encoder.json",
            "reports/missing.json"]  # fmt: skip

    records = read_execution_records(here, outs)

    assert sorted(records) == [
        "metrics/fold-0/encoder.execution.json",
        "models/classifiers/fold-0/baseline-resnet-0/execution.json",
        "models/fold-0/generators/g1/execution.json",
    ]
    write_outputs(there, records)
    assert read_execution(there / "models/fold-0/generators/g1") == {"mlflow_run_id": "abc"}
    assert read_execution(there / "metrics/fold-0/encoder.json") == {"seconds": 1}
    assert not (there / "models/classifiers/fold-0/baseline-resnet-0/model.pt").exists()
