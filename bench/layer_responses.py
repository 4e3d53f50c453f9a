"""The face test's reading of units: every layer from one pass of the network against a pass per layer.

    .venv/bin/python bench/layer_responses.py                   # 5 interleaved repetitions, 1 thread
    .venv/bin/python bench/layer_responses.py --reps 9 --threads 2
    .venv/bin/python bench/layer_responses.py --run runs/main-...   # and the whole analysis of a finished run
    .venv/bin/python bench/layer_responses.py --reps 1 --draws 1 --replicates 10   # a quick check that it runs

``downpour analyze`` scores the analysed layer and, as a map of where the face information is, every
other feature layer of the run's network and of its random-weights twin: on the main job's cat-demo
six layers (stage1/codes, stage1/pooled, stage1, then stage2's), on the face test's images (lfw's 200
25x25 grey images and the controls built from its 30 held-out faces: 5 draws each of three random
controls and one upside-down: 680, at 32x32).
The first read takes them all from one pass (``layer_responses``, ``CatNet.features_at``); the old way
(before 2026-12-04) read each layer with its own pass (``unit_responses``), so stage 1 ran six times
and stage 2 three per network. Two rows, each timed against the old way in the same
run, interleaved (bench/_protocol.py):

- ``read``: the twelve reads alone (six layers, network and twin): ``one_pass`` against ``per_layer``.
- ``face_controls``: the whole face test as ``analyze`` runs it on the main job's settings (2,000
  bootstrap replicates, 500 per other layer, 2,000 random filters, no no-faces twin), with the old way put back
  for the baseline by replacing ``face_controls.layer_responses`` with a loop of ``unit_responses``.
  Its output is checked equal to the baseline's (JSON, bit for bit) before anything is timed.
- ``analyze`` (with ``--run RUN``, a finished run of the main job): ``downpour analyze`` in this process
  (``analyze_run``, its own thread settings), on a fresh copy of the run each time, the baseline as above;
  the two analysis.json are checked equal but for their ``seconds``.

The network is the main job's, freshly initialised (the time does not depend on what it learned). Both
ways are first checked to give the same numbers bit for bit. ``ratio`` < 1: the one pass is faster.
Prints one JSON line per row.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _main_job import flags, main_model  # noqa: E402
from _reads import per_layer, reading  # noqa: E402
from _protocol import at_least_1, emit, interleave, ratio, summary, thread_settings  # noqa: E402
from downpour.analysis import face_controls as fc  # noqa: E402
from downpour.analysis.labelled import prepare_images  # noqa: E402
from downpour.analysis.negatives import build_controls  # noqa: E402
from downpour.analysis.run import analyze_run  # noqa: E402
from downpour.analysis.units import layer_responses, randomized_copy  # noqa: E402
from downpour.data import lfw_split  # noqa: E402


def face_images(draws: int) -> np.ndarray:
    """(650, 1, 25, 25) at draws = 5: lfw's training and held-out images, then the held-out faces' controls."""
    parts = lfw_split(size=25, grey=True)
    held = parts["heldout"]
    faces = held.x.numpy()[held.y.numpy() == 1]
    controls = build_controls(faces, np.random.default_rng(0), draws=draws)
    return np.concatenate([parts["train"].x.numpy(), held.x.numpy()] + [c.x for c in controls])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = flags(__doc__.split("\n")[0])
    parser.add_argument("--draws", type=at_least_1, help="images per held-out face for each random control (default: "
                                                         "the main job's analysis.control_draws, 5)")
    parser.add_argument("--replicates", type=at_least_1, help="the face test's bootstrap replicates and random filters "
                                                              "(default: the main job's, 2,000 each)")
    args = parser.parse_args(argv)
    cfg, model = main_model(args.threads)
    twin = randomized_copy(model, 1)[0]
    layers = model.feature_layers()
    a = dataclasses.replace(cfg.analysis, control_draws=args.draws or cfg.analysis.control_draws,
                            bootstrap=args.replicates or cfg.analysis.bootstrap,
                            random_filters=args.replicates or cfg.analysis.random_filters)
    x = prepare_images(torch.from_numpy(face_images(a.control_draws)), model.input_shape, None)

    fast, slow = layer_responses(model, x, layers), per_layer(model, x, layers)
    for layer in layers:
        if not np.array_equal(fast[layer], slow[layer]):
            raise SystemExit(f"layer_responses: {layer} differs from unit_responses")

    def read(way: Any) -> dict[str, Any]:
        return {"values": sum(r.size for net in (model, twin) for r in way(net, x, layers).values())}

    def test(way: Any) -> dict[str, Any]:
        with reading(fc, way):
            return fc.face_controls(model, twin, layer=a.layer, input_shape=model.input_shape, prepare=None, seeds=[0],
                                    n_random_filters=a.random_filters, replicates=a.bootstrap,
                                    other_layers=tuple(n for n in layers if n != a.layer),
                                    other_replicates=min(a.bootstrap, 500), control_draws=a.control_draws,
                                    choice=a.face_choice)

    def analyze(way: Any) -> dict[str, Any]:
        with reading(fc, way), tempfile.TemporaryDirectory() as tmp:
            result = analyze_run(shutil.copytree(args.run, Path(tmp) / "run"))
            return {"result": {k: v for k, v in result.items() if k not in ("seconds", "run")}}

    if json.dumps(test(layer_responses), sort_keys=True) != json.dumps(test(per_layer), sort_keys=True):
        raise SystemExit("face_controls: the one-pass read changed the face test's output")
    rows = ((("read", read), ("face_controls", lambda way: {"rows": len(test(way)["rows"])}))
            + ((("analyze", lambda way: {"keys": len(analyze(way)["result"])}),) if args.run else ()))
    if args.run and json.dumps(analyze(layer_responses)) != json.dumps(analyze(per_layer)):
        raise SystemExit(f"analyze: the one-pass read changed {args.run}'s analysis.json")
    out = []
    for name, run in rows:
        reps = interleave({"one_pass": lambda r: run(layer_responses), "per_layer": lambda r: run(per_layer)},
                          reps=args.reps)
        row = {"bench": "layer_responses", "row": name, "images": int(x.shape[0]), "layers": layers,
               **summary(reps, "wall_s"), "ratio": ratio(reps, "wall_s", "one_pass", "per_layer"),
               "threads": thread_settings()}
        emit(row, out)
    return out


if __name__ == "__main__":
    main()
