"""What a super-resolved volume carries from its scan, and block progress."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.progress import Reporter, tick
from boneframe.superres.output import fine_geometry
from boneframe.volume import Volume


def test_the_estimate_keeps_the_scans_calibration_through_the_model() -> None:
    # density = s g + t; a flat region f is scanned as gain (f + c)
    s, t, gain, c = 0.2, -390.0, 1.7, 0.3
    meta = {
        "calibration_slope": s,
        "calibration_intercept": t,
        "hu_slope": 0.5,
        "hu_intercept": -1000.0,
        "processing_log": "Density: slope ...",
        "site": "radius",
    }
    lr = Volume(np.zeros((4, 4, 4)), voxel_size=(82.0,) * 3, origin=(1, 2, 3), metadata=meta)
    geo = fine_geometry(lr, (2, 2, 2), gain=gain, offset=c)
    assert geo["voxel_size"] == (41.0, 41.0, 41.0) and geo["origin"] == (1.0, 2.0, 3.0)
    out = geo["metadata"]
    f = np.array([-1.0, 0.0, 2.5, 100.0])
    g = gain * (f + c)
    np.testing.assert_allclose(
        out["calibration_slope"] * f + out["calibration_intercept"], s * g + t, rtol=1e-12
    )
    np.testing.assert_allclose(out["hu_slope"] * f + out["hu_intercept"], 0.5 * g - 1000.0)
    assert "processing_log" not in out and out["site"] == "radius"
    assert lr.metadata["calibration_slope"] == s  # the scan's own is untouched
    assert fine_geometry(np.zeros((2, 2, 2)), (2, 2, 2)) == {"voxel_size": None}


def test_block_progress_counts_ticks_and_says_time_left(capsys: pytest.CaptureFixture) -> None:
    reporter = Reporter(rich=False)
    with reporter.tasks("sr", 3, "test-tag", every_s=0.0):
        tick("test-tag")
        tick("another-tag")
        tick("test-tag")
    tick("test-tag")  # nobody listens any more
    err = capsys.readouterr().err
    assert "sr: 3 blocks" in err
    assert "sr: 1/3 blocks" in err and "sr: 2/3 blocks" in err and "left" in err
    assert "3/3" not in err and "done in" in err
    with Reporter(quiet=True).tasks("sr", 3, "test-tag"):
        tick("test-tag")
    assert capsys.readouterr().err == ""
