"""One BLAS thread for the scikit-learn and numpy work of an analysis, scipy's own BLAS included.

On 2 cores, scikit-learn's small BLAS calls and torch's OpenMP pool fight over the cores (each pool's
threads spin while the other works), so an analysis runs its BLAS on one thread. ``threadpool_limits``
only limits the libraries loaded when it is entered, and scipy (L-BFGS-B under every logistic-regression
probe) ships an OpenBLAS of its own, loaded on its first import: scikit-learn is imported on the first
probe (inside the limit), so that library would run on 2 threads. Loading it first puts it under
the limit too (a probe's fit 4-8x faster on the 2-core VM under load: bench/probe_blas.py, docs/benchmarks.md).
"""
from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> threadpool_limits:
    """Every BLAS library in the process (numpy's, scipy's) on one thread while the returned context is entered;
    their earlier counts back on leaving it."""
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, so the limit sees it)
    return threadpool_limits(limits=1, user_api="blas")
