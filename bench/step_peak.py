"""How far a training step's memory peak rises above what ``downpour plan`` counts for it.

    .venv/bin/python bench/step_peak.py                 # every shipped preset's step, and cat-3stage at batch 8

The plan's memory per partition counts what a step holds for its backward (the tensors its graph saved,
``step_held_bytes``) and a gradient of the parameters' size. The step's peak is another figure: the forward's
temporaries not saved, and the gradients backward makes on its way, are alive at the same time as part of the saved
tensors. This measures it with torch.profiler's CPU memory events (no CUDA here): the bytes the step's ops
allocate less those they free, summed op by op in time order, so a buffer an op allocates and frees inside itself is
not seen (the peak is a lower bound at the ops' granularity). One JSON line per step: ``saved`` (step_held_bytes),
``grads`` (the parameters' .grad the step leaves), ``planned`` (the plan's activations + copies + gradient),
``peak`` (the most bytes alive above the parameters during the step; the forward's own peak ``peak_forward``),
``gap`` = peak - planned.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from downpour.models.registry import build  # noqa: E402
from downpour.plan import network_of, plan_config  # noqa: E402
from downpour.plan.counted import random_batch, step_held_bytes  # noqa: E402

STEPS = [("config", "cat-demo", [], 1), ("config", "cat-demo", [], 2), ("config", "cat-untied", [], 1),
         ("model", "cat-3stage", ["train.batch_size=8"], None), ("config", "cnn-digits", [], None),
         ("config", "rbm-digits", [], None), ("config", "rnn-rows", [], None), ("config", "tica-8x8", [], None),
         ("config", "ufldl-sae", [], None)]


def peak(cfg, shape, batch: int, stage: int | None) -> tuple[int, int, int]:
    """(peak, forward's peak, the parameters' gradient bytes) of one step from its batch on, live bytes above the
    parameters."""
    model, objective = build(cfg, shape)
    model.set_stage(stage)
    model.train()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        data = random_batch(shape, batch)        # (the batch is held too: the first layer saves it)
        total, _ = objective(model.forward_train(data))
        with record_function("backward"):
            total.backward()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    backward = next(e.time_range.start for e in events if e.name == "backward")
    live = top = top_forward = 0
    for e in events:
        live += e.self_cpu_memory_usage
        top = max(top, live)
        if e.time_range.start < backward:
            top_forward = top
    grads = sum(4 * p.numel() for p in model.parameters() if p.grad is not None)
    return top, top_forward, grads


def main(argv: list[str] | None = None) -> None:
    # no flags: the steps are STEPS (a parser all the same, so --help answers instead of measuring)
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args(argv)
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    for kind, name, sets, stage in STEPS:
        cfg, shape = plan_config(**{kind: name}, sets=sets)
        batch = cfg.train.batch_size
        saved = step_held_bytes(cfg, shape, batch)[(stage or 1) - 1]
        stages = network_of(cfg, shape).stages
        mine = stages[stage - 1:stage] if stage else stages
        planned = sum(4 * batch * s.act_floats + 4 * s.copy_floats + 4 * s.params for s in mine)
        top, top_forward, grads = peak(cfg, shape, batch, stage)
        print(json.dumps({"step": f"{kind} {name} {' '.join(sets)}".strip() + (f" stage {stage}" if stage else ""),
                          "batch": batch, "saved": saved, "grads": grads, "planned": round(planned), "peak": top,
                          "peak_forward": top_forward, "gap": round(top - planned),
                          "gap_of_planned": round((top - planned) / planned, 3)}))


if __name__ == "__main__":
    main()
