"""The closed-loop study's statistics: training seeds as a random effect, and multiplicity.

Outcomes are matrices (environment episodes x training seeds). A two-level bootstrap resamples
both levels independently (rows: environment episodes (task, seed); columns: training seeds)
and takes the mean of the resampled matrix, so the interval carries the spread between
training runs as well as between environment episodes (Field & Welsh 2007, "Bootstrapping
clustered data"; crossed random effects: resample each factor independently). Paired contrasts
resample the difference matrix of two variants evaluated on the same episodes and seeds.

One contrast is primary, named before the run (`StudyConfig.primary`); every other contrast is
exploratory and its p-value is adjusted with Holm's step-down method over the exploratory set.
The bootstrap p-value is two-sided: twice the smaller tail of the resampled means around 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BOOT = 2000


def boot2(m: np.ndarray, seed: int = 0, n_boot: int = BOOT) -> np.ndarray:
    """`n_boot` means of `m` (episodes x seeds) with rows and columns resampled independently.
    Missing cells (NaN) are left out of each mean."""
    m = np.asarray(m, np.float64)
    rows, cols = m.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        r = rng.integers(0, rows, rows)
        c = rng.integers(0, cols, cols)
        out[b] = np.nanmean(m[np.ix_(r, c)])
    return out


def interval(m: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Mean, two-level 95% percentile interval and two-sided bootstrap p-value (against 0)."""
    means = boot2(m, seed)
    p = 2.0 * min(float((means <= 0).mean()), float((means >= 0).mean()))
    return {"mean": float(np.nanmean(m)), "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "p": min(1.0, p)}


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error over the given contrasts)."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    k, running, out = len(order), 0.0, {}
    for i, name in enumerate(order):
        running = max(running, min(1.0, (k - i) * pvalues[name]))
        out[name] = running
    return out
