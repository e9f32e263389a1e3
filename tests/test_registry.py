"""Plugin registry: built-ins through the entry-point group, broken and duplicate plugins."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from boneframe.errors import PluginError
from boneframe.interfaces import Regularizer
from boneframe.registry import Registry, get_registry


def make_package(
    root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]
) -> None:
    """Install a fake distribution into ``root`` (a folder put on sys.path)."""
    info = root / f"{dist}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[boneframe]\n{lines}\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


DUP_MODULE = """
    from boneframe.hookspecs import hookimpl
    from boneframe.interfaces import Regularizer, Similarity

    class Shadow(Regularizer):
        name = "gradient-l2"
        def __call__(self, x):
            return 0.0

    class MySim(Similarity):
        '''A lab's similarity.'''
        name = "mysim"
        def __call__(self, u, g):
            return 0.0
        def grad(self, u, g):
            return 0 * u

    @hookimpl
    def boneframe_regularizers():
        return [Shadow]

    @hookimpl
    def boneframe_similarities():
        return [MySim]
"""


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    make_package(
        tmp_path,
        "brokenpkg",
        {"brokenmod": "raise ImportError('needs libfoo')\n"},
        {"broken": "brokenmod"},
    )
    make_package(tmp_path, "duppkg", {"dupmod": DUP_MODULE}, {"dup": "dupmod"})
    make_package(
        tmp_path,
        "badhookpkg",
        {
            "badhook": """
        from boneframe.hookspecs import hookimpl
        @hookimpl
        def boneframe_metrics():
            return [int]
    """
        },
        {"badhook": "badhook"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_come_from_the_entry_point_group():
    reg = get_registry()
    entry = reg.entry("regularizer", "gradient-l2")
    assert entry.package == "boneframe" and entry.plugin == "builtin"
    assert {"npy", "zarr", "tiff", "nifti"} <= set(reg.names("format"))
    assert isinstance(reg.create("regularizer", "gradient-l2", weight=2.0), Regularizer)


def test_unknown_name_lists_what_exists():
    with pytest.raises(PluginError, match=r"unknown regularizer 'nope'; available: .*gradient-l2"):
        get_registry().get("regularizer", "nope")
    with pytest.raises(PluginError, match="unknown strategy kind"):
        get_registry().get("colour", "red")


def test_broken_and_duplicate_plugins(plugin_dir):
    eps = md.entry_points(group="boneframe")
    reg = Registry(eps)
    failures = {f.plugin: f for f in reg.failures}
    assert set(failures) == {"broken", "badhook"}
    assert failures["broken"].package == "brokenpkg"
    assert "needs libfoo" in str(failures["broken"])
    assert "not a Metric" in failures["badhook"].error
    # the duplicate is refused, naming both packages; the rest keeps working
    with pytest.raises(PluginError) as err:
        reg.get("regularizer", "gradient-l2")
    assert "boneframe" in str(err.value) and "duppkg" in str(err.value)
    assert "gradient-l2" not in reg.names("regularizer")
    assert reg.entry("similarity", "mysim").package == "duppkg"
    assert reg.entry("similarity", "mysim").description == "A lab's similarity."
    assert "npy" in reg.names("format")


def run_cli(*args: str, env_path: Path | None = None, cwd: Path | None = None):
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = str(env_path) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "boneframe.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_cli_plugins_table_reports_broken_plugins(plugin_dir, tmp_path):
    res = run_cli("plugins", env_path=plugin_dir)
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "mysim" in out and "duppkg" in out and "1.2.3" in out
    assert (
        "failed: plugin 'broken' from package 'brokenpkg' failed to load: ImportError: needs libfoo"
        in out
    )
    assert "refused: regularizer 'gradient-l2' is registered twice" in out
    # a command that does not need the broken plugin still works
    res = run_cli("phantom", str(tmp_path / "ph"), "--size", "16", env_path=plugin_dir)
    assert res.returncode == 0, res.stderr
