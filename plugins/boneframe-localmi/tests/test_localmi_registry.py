"""The installed package registers ``local-mi`` through the ``boneframe`` entry points."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from boneframe_localmi import LocalMutualInformation

from boneframe.registry import get_registry


def test_registry_lists_local_mi():
    registry = get_registry()
    entry = registry.entry("similarity", "local-mi")
    assert entry.cls is LocalMutualInformation
    assert entry.package == "boneframe-localmi" and entry.plugin == "localmi"
    assert "local-mi" in registry.names("similarity")
    assert not [f for f in registry.failures if f.package == "boneframe-localmi"]
    sim = registry.create("similarity", "local-mi", {"bins": 16, "window": 3.0})
    assert sim.params.bins == 16 and not sim.scale_sensitive


def test_cli_plugins_lists_local_mi():
    exe = Path(sys.executable).with_name("boneframe")
    cmd = [str(exe)] if exe.exists() else [shutil.which("boneframe") or "boneframe"]
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run([*cmd, "plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next((ln for ln in out.stdout.splitlines() if "local-mi" in ln), None)
    assert line is not None, out.stdout
    assert "similarity" in line and "boneframe-localmi" in line


def test_spec_accepts_local_mi_with_params():
    from boneframe.errors import BoneframeError
    from boneframe.spec import validate_spec

    spec = {
        "version": 1,
        "inputs": {"phantom": {"size": 32}},
        "kernels": [
            {"name": "l2", "similarity": "l2"},
            {
                "name": "lmi",
                "similarity": {"name": "local-mi", "params": {"window": 3.0, "bins": 24}},
                "solver": "gradient-descent",
                "init_from": "l2",
            },
        ],
    }
    validate_spec(spec)
    spec["kernels"][1]["similarity"]["params"]["windw"] = 3.0
    with pytest.raises(BoneframeError, match="windw"):
        validate_spec(spec)


def test_example_spec_validates():
    from boneframe.spec import load_spec

    example = Path(__file__).resolve().parents[3] / "examples" / "localmi.yaml"
    if not example.is_file():
        pytest.skip("not in a boneframe checkout")
    spec = load_spec(example)
    names = [k.similarity.name for k in spec.kernels]
    assert "local-mi" in names
