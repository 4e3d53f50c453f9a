"""The small run the tests on a local Ray vary (tests/test_ps_ray_runs.py, test_ps_ray_lost_workers.py,
test_ps_ray_failures.py): ufldl-sae on 2 workers and 2 shards, 256 samples; and the pushes its shards logged."""
from downpour.config import load_config
from downpour.ps.checkpoint import load_server

BASE = ["cluster.runner=ray", "data.samples=256", "train.batch_size=16", "train.log_every=4",
        "train.tensorboard=false", "cluster.workers=2", "cluster.shards=2"]


def run_cfg(*overrides):
    """ufldl-sae on Ray as :data:`BASE` sets it, then ``overrides``."""
    return load_config("ufldl-sae", [*BASE, *overrides])


def shard_logs(path):
    """Each shard's log of the pushes it applied, from the server checkpoint of the run in ``path``: rows of
    (worker, seq, base version, version applied at)."""
    states, _ = load_server(path / "checkpoints/server")
    return [t["log"].tolist() for t, _ in states]
