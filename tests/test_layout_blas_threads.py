"""The map layout's PCA runs its SVD on one BLAS thread (clustering/summary.py, `LayoutProjector.fit`).

OpenBLAS's threaded SVD slowed ~4x with other work on the cores and, with two processes fitting at once in
the test suite, stalled for minutes; one thread gives the same components. The thread count is read inside
the SVD call itself, and the components are checked against numpy's own SVD of the centred data.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from carve.clustering import summary as cs


def test_layout_fit_runs_its_svd_on_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[int]] = []
    svd = np.linalg.svd

    def spy(a, *args, **kw):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return svd(a, *args, **kw)

    monkeypatch.setattr(np.linalg, "svd", spy)
    x = np.random.default_rng(3).standard_normal((400, 24)).astype(np.float32)
    proj = cs.LayoutProjector.fit(x)
    assert seen and seen[0] and all(n == 1 for n in seen[0]), seen  # numpy's BLAS is loaded, one thread
    _, _, vt = svd(x.astype(np.float64) - x.astype(np.float64).mean(axis=0), full_matrices=False)
    for i in range(2):  # the same plane, up to the sign the projector fixes
        assert abs(float(np.dot(proj.components[i], vt[i]))) == pytest.approx(1.0, abs=1e-5)
