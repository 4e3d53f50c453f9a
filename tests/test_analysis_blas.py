"""An analysis's one BLAS thread reaches scipy's own OpenBLAS, loaded after the limit is asked for."""
import json
import os
import subprocess
import sys

import pytest

# A fresh process: in this one scipy may be loaded already. *_NUM_THREADS=2 is each BLAS's count on loading
# (OpenBLAS caps it at the cores), so a library the limit misses shows 2.
_CHILD = """
import json
import numpy  # noqa: F401
from threadpoolctl import threadpool_info
from downpour.analysis.blas import one_blas_thread
def blas():
    return [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
numpys = blas()
with one_blas_thread():
    import sklearn.linear_model  # noqa: F401  (as the first probe imports it: scipy and its BLAS with it)
    inside = blas()
print(json.dumps({"numpys": numpys, "inside": inside, "after": blas()}))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every OpenBLAS starts with one thread")
def test_every_blas_library_runs_one_thread_inside_one_blas_thread_scipys_included():
    env = {**os.environ, **{f"{k}_NUM_THREADS": "2" for k in ("OPENBLAS", "MKL", "BLIS")}}
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    if {path for path, _ in seen["inside"]} <= {path for path, _ in seen["numpys"]}:
        pytest.skip(f"scipy uses numpy's BLAS here (no library of its own to load late): {seen['inside']}")
    assert all(n == 1 for _, n in seen["inside"]), seen["inside"]
    assert all(n == 2 for _, n in seen["after"]), seen["after"]     # and their own counts back after it
