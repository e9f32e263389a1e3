"""The README's Python API example runs and prints what the README says."""

from __future__ import annotations

import doctest
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the example writes k.npy, hr.zarr, lr.zarr
    result = doctest.testfile(
        str(README),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
        report=True,
    )
    assert result.attempted >= 15, result  # the example is there, and ran
    assert result.failed == 0, result
    assert (tmp_path / "k.json").is_file() and (tmp_path / "hr.zarr").is_dir()
