"""Ray workers ask Ray for GPUs (train.device = cuda, or auto on a cluster that has them). Ray lets a
node declare GPUs it does not have, so the request, the placement and the report are tested here on
CPU: each worker gets its own GPU id, and torch inside it (seeing no real GPU) runs 'auto' on CPU."""
import pytest

from downpour.cli import main
from downpour.train.rundir import RunDir

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def two_declared_gpus():
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _train(out, *extra, workers=2):   # (one shard: the workers' GPUs are the point, and an actor fewer to start)
    return main(["train", "--config", "ufldl-sae", "--runner", "ray", "--workers", str(workers), "--shards", "1",
                 "--steps", "16", "--out", str(out), "--no-report", "--set", "data.samples=256",
                 "--set", "train.batch_size=16", "--set", "train.tensorboard=false", *extra])


def test_auto_gives_each_worker_its_own_gpu(tmp_path, two_declared_gpus):
    assert _train(tmp_path / "run", "--set", "train.device=auto") == 0
    devices = RunDir.open(tmp_path / "run").read_json("cluster.json")["worker_devices"]
    assert sorted(g for d in devices for g in d["gpus"]) == ["0", "1"]       # one each, none shared
    assert [d["device"] for d in devices] == ["cpu", "cpu"]                  # torch here sees no real GPU


def test_cpu_workers_ask_for_no_gpu(tmp_path, two_declared_gpus):
    """One worker (two would be an actor more to start): a CPU worker that asked for a GPU would be given
    one of the two free here, and name it."""
    assert _train(tmp_path / "run", workers=1) == 0
    devices = RunDir.open(tmp_path / "run").read_json("cluster.json")["worker_devices"]
    assert devices == [{"device": "cpu", "gpus": []}]


def test_cuda_with_more_workers_than_gpus_fails_naming_the_keys(tmp_path, two_declared_gpus, capsys):
    code = main(["train", "--config", "ufldl-sae", "--runner", "ray", "--workers", "3", "--shards", "1",
                 "--steps", "8", "--out", str(tmp_path / "run"), "--no-report", "--set", "data.samples=256",
                 "--set", "train.device=cuda", "--set", "train.tensorboard=false"])
    assert code != 0
    assert "the Ray cluster has 2 GPUs and the run's 3 workers ask for 3 (cluster.worker_gpus = 1" in capsys.readouterr().err
