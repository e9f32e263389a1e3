"""What a super-resolved volume carries from its scan, and block progress."""

from __future__ import annotations

import numpy as np
import pytest

from boneframe.errors import InputError
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


@pytest.fixture(scope="module")
def pair():
    from boneframe.phantom import simulate_pair

    return simulate_pair(48, 0, noise=0.01, offset=0.1)


def test_in_memory_a_mask_solves_its_box_on_the_scans_grey_scale(pair) -> None:
    from boneframe.kernel import Kernel
    from boneframe.superres import super_resolve
    from boneframe.superres.upsample import upsample_spline

    k = Kernel(pair.kernel, offset=pair.offset, p=pair.p)
    mask = np.zeros(pair.lr.shape, bool)
    mask[8:14, 6:12, 10:16] = True
    whole = super_resolve(pair.lr, k)
    part = super_resolve(pair.lr, k, mask=mask, halo=6)
    assert part.scale == pytest.approx(whole.scale, rel=1e-12)  # the whole scan's
    assert (part.solved, part.blocks) == (1, 1)
    a, b = whole.array, part.array
    inside = np.kron(mask, np.ones((2, 2, 2), bool))
    err = np.sqrt(np.mean((a[inside] - b[inside]) ** 2))
    assert err <= 0.01 * (a.max() - a.min())  # 40 dB: the box's faces are 6 LR voxels away
    start = upsample_spline(pair.lr, 2, float(np.sum(k.array)), k.offset)
    far = np.ones(a.shape, bool)
    far[2 * 2 : 2 * 20, 0 : 2 * 18, 2 * 4 : 2 * 22] = False  # box of the mask grown by 6
    np.testing.assert_allclose(b[far], start[far], atol=1e-5 * np.abs(start).max())
    # per-iteration metrics see the whole volume
    seen = []
    super_resolve(pair.lr, k, mask=mask, max_iter=2, callback=lambda i, x, r: seen.append(x.shape))
    assert seen == [pair.hr.shape] * 2
    with pytest.raises(InputError, match="empty"):
        super_resolve(pair.lr, k, mask=np.zeros(pair.lr.shape, bool))
    with pytest.raises(InputError, match="mask has shape"):
        super_resolve(pair.lr, k, mask=mask[1:])


def test_aim_to_sr_to_aim_keeps_voxel_size_position_and_calibration(pair, tmp_path) -> None:
    pytest.importorskip("py_aimio")
    from boneframe.io import read_volume, write_volume
    from boneframe.kernel import Kernel
    from boneframe.superres import super_resolve

    meta = {"calibration_slope": 0.195742, "calibration_intercept": -391.209,
            "calibration_unit": "mg HA/ccm", "mu_scaling": 8192.0}  # fmt: skip
    native = np.rint(pair.lr * 4000).astype(np.int16)
    lr = Volume(native, voxel_size=(82.0,) * 3, origin=(820.0, 1640.0, 2460.0), metadata=meta)
    scan = read_volume(write_volume(lr, tmp_path / "scan.aim"))
    assert scan.origin == lr.origin
    assert scan.metadata["calibration_slope"] == pytest.approx(0.195742)
    gain, c = 0.9, 5.0
    k = Kernel(pair.kernel * gain / pair.kernel.sum(), offset=c, voxel_size=(41.0,) * 3)
    mask = Volume((native > np.median(native)).astype(np.uint8), voxel_size=(82.0,) * 3,
                  origin=lr.origin)  # fmt: skip
    sr = super_resolve(scan, k, mask=mask, max_iter=5)
    back = read_volume(write_volume(sr.volume, tmp_path / "sr.aim"))
    assert back.voxel_size == (41.0,) * 3 and back.origin == lr.origin
    assert back.shape == tuple(2 * n for n in lr.shape)
    np.testing.assert_allclose(back.numpy(), sr.array, rtol=1e-6)
    # the estimate's calibration: a flat f is scanned as gain (f + c)
    s, t = back.metadata["calibration_slope"], back.metadata["calibration_intercept"]
    f = np.array([0.0, 1000.0, 3000.0])
    np.testing.assert_allclose(s * f + t, 0.195742 * gain * (f + c) - 391.209, rtol=1e-6)
