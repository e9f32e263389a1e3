"""Pipeline spec: validation messages with field paths, formats, schema drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from boneframe.cli import main
from boneframe.spec import SpecError, load_spec, spec_json_schema, validate_spec

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "version": 1,
    "inputs": {"phantom": {"size": 32}},
    "kernels": [{"name": "l2", "similarity": "l2", "support": 7}],
    "superresolution": [
        {"name": "l2", "kernel": "l2", "solver": {"name": "admm", "params": {"mu": 5}}}
    ],
}


def test_good_spec_and_defaults():
    spec = validate_spec(GOOD)
    assert spec.kernels[0].similarity.name == "l2"
    assert spec.kernels[0].regularizer.name == "gradient-l2"
    assert spec.superresolution[0].regularizer.name == "tv"
    assert spec.superresolution[0].solver.params.mu == 5
    assert spec.superresolution[0].solver.params.beta == 7  # the paper's
    assert spec.outputs.format == "npy" and spec.compute.scheduler is None


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ({"kernels": [{"name": "k", "similarity": "nope"}]}, "kernels.0.similarity", "'l2'"),
        ({"kernels": [{"name": "k", "support": 8}]}, "kernels.0.support", "odd"),
        ({"inputs": {"phantom": {"size": "big"}}}, "inputs.phantom.size", "integer"),
        (
            {"inputs": {"files": {"hr": "nothere.npy", "lr": "nothere2.npy"}}},
            "inputs.files.hr",
            "file not found",
        ),
        (
            {"kernels": [{"name": "k", "solver": {"name": "exact", "params": {"bogus": 1}}}]},
            "kernels.0.solver",
            "bogus",
        ),
        ({"superresolution": [{"name": "s", "kernel": "missing"}]}, "superresolution", "missing"),
        ({"version": 2}, "version", "1"),
        ({"inputs": {"phantom": {}, "files": {"hr": "a", "lr": "b"}}}, "inputs", "exactly one"),
    ],
)
def test_invalid_specs_name_the_field(change, where, message):
    with pytest.raises(SpecError) as err:
        validate_spec({**GOOD, **change}, "t.yaml")
    text = str(err.value)
    assert where in text and message in text, text


def test_unknown_strategy_lists_the_available_names():
    bad = {**GOOD, "superresolution": [{"name": "s", "kernel": "l2", "regularizer": "tvv"}]}
    with pytest.raises(SpecError) as err:
        validate_spec(bad)
    assert "superresolution.0.regularizer" in str(err.value)
    assert "'gradient-l2'" in str(err.value) and "'tv'" in str(err.value)


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_spec_formats(tmp_path, suffix):
    import tomli_w  # noqa: F401 (only to skip when absent)
    import yaml

    path = tmp_path / f"s{suffix}"
    if suffix == ".yaml":
        path.write_text(yaml.safe_dump(GOOD))
    elif suffix == ".json":
        path.write_text(json.dumps(GOOD))
    else:
        import tomli_w

        path.write_text(tomli_w.dumps(GOOD))
    assert load_spec(path).kernels[0].support == 7


def test_relative_input_paths_resolve_against_the_spec(tmp_path):
    import numpy as np

    np.save(tmp_path / "hr.npy", np.zeros((8, 8, 8)))
    np.save(tmp_path / "lr.npy", np.zeros((4, 4, 4)))
    spec = {**GOOD, "inputs": {"files": {"hr": "hr.npy", "lr": "lr.npy"}}}
    (tmp_path / "s.json").write_text(json.dumps(spec))
    assert load_spec(tmp_path / "s.json").inputs.files.hr == tmp_path / "hr.npy"


def test_cli_run_invalid_spec_exits_2_and_writes_nothing(tmp_path, capsys):
    spec = {**GOOD, "kernels": [{"name": "k", "support": 4, "similarity": "xx"}]}
    (tmp_path / "s.json").write_text(json.dumps(spec))
    code = main(["run", str(tmp_path / "s.json"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "kernels.0.support" in err and "kernels.0.similarity" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "broken.yaml").write_text("version: [1\n")
    assert main(["run", str(tmp_path / "broken.yaml")]) == 2
    assert "cannot parse" in capsys.readouterr().err


def test_schema_is_committed_and_current(capsys):
    committed = json.loads((ROOT / "schemas" / "pipeline.schema.json").read_text())
    assert committed == spec_json_schema()
    assert main(["schema", "--check", "--out", str(ROOT / "schemas")]) == 0


def test_schema_check_fails_on_drift(tmp_path, capsys):
    assert main(["schema", "--out", str(tmp_path)]) == 0
    path = tmp_path / "pipeline.schema.json"
    path.write_text(path.read_text().replace('"version"', '"versio"', 1))
    assert main(["schema", "--check", "--out", str(tmp_path)]) == 1
