"""``downpour crossfit``: train one run per lfw fold, then test the face unit on all 100 faces.

    result = run_crossfit("main", [("seed", 3)], "runs/crossfit-main", folds=5)
    result["verdict"]["sentences"]       # the pooled face test, in words

Run i is the config with ``data.lfw_heldout = "fold:i:K"`` (it trains without fold i's images, and
``downpour analyze`` on it tests on them), written to ``OUT/fold-i``. Run again after an
interruption, it keeps a finished fold, resumes a started one from its checkpoint, and trains
again one that stopped before its first checkpoint. The
pooled test (:func:`~downpour.analysis.crossfit.crossfit_controls`) goes to ``OUT/crossfit.json``.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from downpour.config import ConfigError, Override, RunConfig, config_to_dict, load_config
from downpour.train.rundir import RunDir, RunExistsError

log = logging.getLogger(__name__)


def fold_config(config: str, overrides: list[Override], fold: int, folds: int) -> RunConfig:
    """Fold ``fold``'s resolved config: ``config`` with ``overrides``, then its held-out fold (no report)."""
    from downpour.preflight import check_run_config

    cfg = load_config(config, [*overrides, ("data.lfw_heldout", f"fold:{fold}:{folds}"), ("analysis.report", False)])
    return check_run_config(cfg)


def train_fold(cfg: RunConfig, path: Path) -> dict[str, Any]:
    """Train ``cfg`` into ``path``: skipped when a run with the same config finished there, resumed
    from its checkpoint when one started there (started over when it stopped before its first
    checkpoint); a different run there is an error naming the key that differs."""
    from downpour.preflight import check_resume
    from downpour.runners import train

    if (path / "config.toml").is_file():
        run = RunDir.open(path)
        if not run.never_started():
            try:
                check_resume(run.config, cfg)
            except ConfigError as err:
                raise RunExistsError(f"{str(path)!r} holds another run ({err}); pick another --out") from None
            if (path / "model.json").is_file() and run.read_json("model.json").get("step") == cfg.train.steps:
                log.info("%s: finished, kept", path)
                return {"run": str(path), "kept": True}
            if run.has_checkpoint():
                log.info("%s: resuming", path)
                return train(cfg, run, resume=True)
            log.warning("%s: stopped before its first checkpoint; training it again", path)
            run.discard_training()
    return train(cfg, RunDir.create(path, cfg))


def run_crossfit(config: str, overrides: list[Override], out: str | Path, folds: int = 5) -> dict[str, Any]:
    """Train every fold of ``config`` into ``out``, pool the face test, write ``out/crossfit.json``."""
    from downpour.analysis.crossfit import crossfit_controls
    from downpour.analysis.face_controls import View
    from downpour.analysis.run import open_run, random_twin, run_preprocess
    from downpour.analysis.units import check_layer

    if not 2 <= folds <= 100:
        raise ConfigError(f"--folds must be in [2, 100] (lfw_subset has 100 faces), got {folds}")
    out = Path(out)
    configs = [fold_config(config, overrides, i, folds) for i in range(folds)]   # every config checked first
    started = time.time()
    trained = []
    for i, cfg in enumerate(configs):
        log.info("crossfit: fold %d of %d -> %s", i, folds, out / f"fold-{i}")
        summary = train_fold(cfg, out / f"fold-{i}")
        trained.append({k: summary.get(k) for k in ("run", "kept", "seconds", "final_loss")})
    training_seconds = time.time() - started
    views, layer = [], None
    for i, cfg in enumerate(configs):
        run, model = open_run(out / f"fold-{i}")
        layer = check_layer(model, cfg.analysis.layer)
        views.append(View(model, random_twin(run, cfg.seed + 1), tuple(run.read_json("model.json")["input_shape"]),
                          run_preprocess(run)))
    a = configs[0].analysis
    others = tuple(n for n in views[0].model.feature_layers() if n != layer)
    result = crossfit_controls(views, layer=layer, other_layers=others, n_random_filters=a.random_filters,
                               seed=configs[0].seed, replicates=a.bootstrap, other_replicates=min(a.bootstrap, 500),
                               control_draws=a.control_draws)
    config_record = config_to_dict(configs[0])
    config_record["data"].pop("lfw_heldout")
    record = {"config": config, "overrides": [list(o) if isinstance(o, tuple) else o for o in overrides],
              "resolved": config_record, "folds": folds, "runs": trained,
              "training_seconds": round(training_seconds, 1), "test_seconds": round(time.time() - started - training_seconds, 1),
              **result}
    (out / "crossfit.json").write_text(json.dumps(record, indent=1))
    return record
