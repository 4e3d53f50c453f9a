"""What ``downpour plan`` prints: the per-stage table, the cluster's prediction, the assumptions, of the plan
:mod:`downpour.plan.assemble` makes (``--json`` prints that dict as it is); and the simulated check's lines."""
from __future__ import annotations

import math
from typing import Any

from downpour._names import plural
from downpour.plan.assemble import BOUND_PAST, PAPER_DAYS, PAPER_IMAGES, split_bound
from downpour.plan.calibrate import SHARE_QUIET
from downpour.plan.check import MAX_ERROR, MAX_REJECTED
from downpour.plan.idle import REPLICAS_TOLERANCE, SHARDS_TOLERANCE
from downpour.plan.one_machine import PROCESS_BYTES, one_machine_words
from downpour.plan.partition import RULE_STATE
from downpour.plan.units import SIZES, human as _human, seconds as _seconds, span as _span

__all__ = ["format_plan", "format_check"]

# where the measured peaks are, not the figures themselves (they change as the bench is rerun); not "measured from
# 23% under to 38% over acts + gradient", as the bench compares acts + copies + gradient with a lower bound of the
# peak
PEAK_DOC = ("docs/plan.md, 'What this excludes', has bench/step_peak.py's lower bound of it against acts + copies + "
            "gradient, per preset")


def _chosen_line(chosen: list[str], paper: bool, one: bool = False) -> str:
    """Which of the layout's counts the plan chose, so that a default layout does not read as if given (the paper's
    network's 33 x 16 + 472 as if the paper's)."""
    how = [] if chosen == ["shards"] else [f"the layout within {REPLICAS_TOLERANCE:.0%} of the most samples/s with the "
                                           "fewest replicas"]
    how += [("the fewest shards the runner takes (on one machine more add processes, not cores)" if one
             else f"the fewest shards within {SHARDS_TOLERANCE:.0%} of the machines left's samples/s")
            ] if "shards" in chosen else []
    how += ["not a layout from the paper"] if paper else []
    return (f"  {', '.join(chosen)} chosen by the plan, not given: {'; '.join(how)} (docs/plan.md, 'The formulas'; "
            f"set {'it' if len(chosen) == 1 else 'them'} with {', '.join('--' + name for name in chosen)})")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
            for r in (header, tuple("-" * w for w in widths), *rows)]


def _apply_rule(plan: dict[str, Any]) -> str:
    """The rule the apply rate was measured with, and where it is not the run's, that it is not (the line said
    "Adagrad" for an Adam run's plan with no word that the rate was not Adam's)."""
    measured = plan["rates"].get("apply_rule", "adagrad")
    if measured == plan["rule"]:
        return measured
    return f"{measured}'s rate, not the run's {plan['rule']}: --calibrate measures {plan['rule']}'s"


def _load_words(rates: dict[str, Any]) -> str:
    """How loaded the machine was while --calibrate measured, and so how far its rates are the hardware's: its one
    thread's share of a core (CPU over wall time) and the load average; "" for the defaults. At load 12 on 2 cores the
    share read 0.33-0.44 and the layer 3.2-5.4 GFLOP/s, 10.4-10.9 at load 0.3 (2026-12-07): the rates move with the
    load, and the share says by how much."""
    share = rates.get("core_share")
    if share is None:
        return ""
    cores = f" on {plural(rates['cores'], 'core')}" if rates["cores"] else ""
    load = "" if rates["load_1min"] is None else f"load {rates['load_1min']:.1f}{cores}, "
    said = f"; while it measured: {load}its one thread got {share:.2f} of a core (CPU over wall time)"
    if rates.get("layer_rounds"):
        rounds = rates["layer_rounds"]
        said += (f", the layer's {plural(len(rounds), 'round')} {_human(min(rounds), 'FLOP/s')} to "
                 f"{_human(max(rounds), 'FLOP/s')} (the best taken)")
    if share >= SHARE_QUIET:
        return said + ": the rates are the hardware's"
    return (said + ": the rates are the load's share of this machine, not its hardware's, and move with the load "
            "(docs/plan.md, 'Calibration')")


def _apply_fixed_from(plan: dict[str, Any]) -> str:
    """Where the apply's own cost in the step comes from: measured with the run's rule, or the rule's constant
    (``Rates.as_dict`` of the run's rule says which)."""
    return "measured" if plan["rates"]["apply_fixed_from"] == "measured" else "APPLY_S"


def format_plan(plan: dict[str, Any]) -> str:
    n, c, b = plan["network"], plan["cluster"], plan["batch"]
    hub = ("replica process", "replica processes") if c["one_machine"] else ("replica machine",)   # (one box: no machine)
    lines = [f"{n['name']}: input {'x'.join(map(str, n['input_shape']))}, {_human(n['connections'])} connections, "
             f"{_human(n['params'])} trainable parameters, "
             f"{_human(n['flops_train'], 'FLOP' if n.get('on_paper', True) else '')}"
             + (" per training example" if n.get("on_paper", True) else " training step FLOPs/ex")
             + (" (greedy: one stage trained per step, the mean over the stages' steps)"
                if n["schedule"] == "greedy" and len(plan["stages"]) > 1 else "")]
    # what the figure counts: torch's counter (a built model's) counts products only, the cat formulas element-wise
    # work too (cat-demo: 2.60 M of which 2.43 M products, where torch counts 2.45 M of a built step; docs/plan.md)
    lines.append(f"  FLOPs counted on paper: {_human(n['products_train'])} of the filters' matrix products (all that "
                 f"torch's counter counts, for the other models) + {_human(n['flops_train'] - n['products_train'])} of "
                 "element-wise work (pooling, LCN, normalising the filters)" if n.get("on_paper", True) else
                 "  FLOPs as torch's counter counts a training step: matrix products and convolutions only, no "
                 "element-wise work")
    if "paper_connections" in n:
        lines.append(f"  the paper: {n['paper_connections'] / 1e9:g} billion connections (its abstract) and "
                     f"{n['paper_params'] / 1e9:g} billion parameters (Le's 2012 talk abstracts); here the encoder W1 "
                     "(the connections) is "
                     f"{n['vs_paper']:+.1%} of {n['paper_params'] / 1e9:g} billion, the trainable parameters "
                     f"{n['params_vs_paper'] + 1:.2f}x it (docs/plan.md: why the plan reads the paper's figure as "
                     "the encoder's)")
    lines.append("")
    # a built model's rows are its inference path's layers (tica-8x8: 16.38k a row), the first line its training step's
    # (57.34k: the decoder and the cost too), so the column says which it is (not "FLOPs/ex" for both)
    flops = "FLOPs/ex" if n.get("on_paper", True) else "inference FLOPs/ex"
    # split the runner's way the partitions exchange no halo: the column gives a trained call's bytes through the
    # replica instead (not "halo/ex", DistBelief's, where the summary says there is none)
    calls = plan["partition"]["window_bytes_replica"] > 0
    header = ("stage", "output", "positions", "connections", "params", flops, "push/replica",
              "part: weights", "opt state", f"acts (B={b})", "calls/ex" if calls else "halo/ex", "push/part")
    rows = [(s["stage"], "x".join(map(str, s["out_shape"])), _human(s["positions"]), _human(s["connections"]),
             _human(s["params"]), _human(s["flops_fwd_bwd"]), _human(s["push_bytes_replica"], "B"),
             _human(s["partition"]["weight_bytes"], "B"), _human(s["partition"]["opt_bytes"], "B"),
             _human(s["partition"]["act_bytes_batch"], "B"),
             _human(s["partition"]["calls_bytes" if calls else "halo_bytes"], "B"),
             _human(s["partition"]["push_bytes"], "B")) for s in plan["stages"]]
    lines += _table(header, rows)
    part, t, bounds = plan["partition"], plan["times_s"], plan["cycle_bounds_s"]
    bound = split_bound(c["partitions"]) if c["partitions"] > BOUND_PAST else None
    lines += [
        ("(FLOPs/ex: forward + backward of one training example" if n.get("on_paper", True) else "(inference FLOPs/ex: "
         "forward + backward of one example through the layer on the inference path, not the training step's count")
        + "; push/replica = fetch/replica: float32 gradient / "
        "parameters; part: the largest of the K partitions; opt state lives on the shards that hold those weights; "
        "acts: what a step's graph saves for its backward; "
        + ("calls/ex: a trained call's input window, codes, reconstruction and their gradients, to and from the "
           "partition per example; " if calls else "")
        + "the step's transient peak is another figure, not counted: "
        f"{PEAK_DOC}; {SIZES})",
        "",
        f"cluster: {plural(c['machines'], 'machine')} x {plural(c['cores'], 'core')}, {c['memory_gb']:g} GB"
        + ("; " if c["one_machine"] else f", {c['bandwidth_gbit']:g} Gbit/s; ")
        + f"{plural(c['replicas'], 'replica')} x {plural(c['partitions'], 'partition')} "
        f"({c['grid'][0]}x{c['grid'][1]} blocks) + "
        # each replica's own process, a machine of its own where K >= 2 (the Ray runner's worker actor: hub.py)
        + (f"{plural(c['replica_machines'], *hub)} (each replica's own process: pooling, LCN, cost, "
           "shared banks) + " if c["replica_machines"] else "")
        + f"{plural(c['shards'], 'shard')} = " + (one_machine_words(plan) if c["one_machine"] else
                                                  plural(c["machines_used"], "machine"))
        + ("" if plan["fits"]["machines"] else "  ** more than the cluster has **"),
        *([_chosen_line(plan["chosen"], "paper_params" in n, c["one_machine"])] if plan["chosen"] else []),
        *([f"  {c['idle_why']}"] if c.get("idle_why") else []),      # the machines left idle (idle.py)
        *([f"note: {bound}"] if bound else []),
        f"rates: {_human(plan['rates']['flops_per_core'], 'FLOP/s')} per core (locally connected layer: the filters), "
        f"{_human(plan['rates']['pool_lcn_flops_per_core'], 'FLOP/s')} per core (L2 pooling + LCN), "
        f"{_human(plan['rates']['apply_bytes_per_core'], 'B/s')} per core (shard apply, {_apply_rule(plan)}; "
        f"{plan['rule']}'s own {_seconds(plan['times_s']['apply_fixed'])} an apply, {_apply_fixed_from(plan)}): "
        f"{plan['rates']['source']}" + _load_words(plan["rates"]),
        *_memory(plan),
        f"bytes per push (= per fetch): {_human(plan['push_bytes_replica'], 'B')} per replica, "
        f"{_human(plan['push_bytes_partition'], 'B')} per partition"
        + (f" and {_human(plan['push_bytes_shared'], 'B')} of shared banks by the replica itself; lent to its "
           f"partitions and their gradients back, per step: {_human(plan['lend_bytes_replica'], 'B')} "
           f"({_human(plan['lend_bytes_partition'], 'B')} the largest partition's)" if plan["push_bytes_shared"]
           or plan["lend_bytes_replica"] else "")
        # the runner's partitions exchange no halo: each call's windows and code blocks go through the replica (hub.py)
        + (f"; through the replica's process, per example: input windows, code blocks and their gradients "
           f"{_human(part['window_bytes_replica'], 'B')} ({_human(part['window_bytes'], 'B')} the largest partition's), "
           "no halo between partitions" if part["window_bytes_replica"] else
           f"; halo {_human(part['halo_bytes'], 'B')} per example" if part["halo_bytes"] else ""),   # (one partition)
        f"step (batch {b}): compute {_seconds(t['compute'])} + "
        # the replica's process's own work, pooling, LCN and the tiled banks' norm (hub.py)
        + (f"replica's process {_seconds(t['replica_compute'])} + " if t["replica_compute"] else "")
        # one partition exchanges no halo (no "halo 0.0 µs")
        + (f"windows {_seconds(t['windows'])} + " if t["windows"] else f"halo {_seconds(t['halo'])} + " if t["halo"]
           else "")
        + (f"lent banks {_seconds(t['lend'])} + " if t["lend"] else "") + "fetch "
        f"{_seconds(t['fetch'])}/{plan['n_fetch']} = {_seconds(t['step'])}; push {_seconds(t['push'])}, "
        # the apply's own cost and the call's, each beside its bytes (calls.py: a push of 4,224 values was timed as
        # 11.3 µs of bytes, where the shard took 480-507 µs; a fetch as 270.3 µs, where it took 7.5-7.9 ms)
        f"one shard's apply {_seconds(t['apply_one'])} ({plan['rule']}'s own {_seconds(t['apply_fixed'])} an apply "
        f"beside the bytes; a fetch and a push each a remote call, its own {_seconds(t['call'])} beside the bytes: "
        "docs/plan.md, 'A call's own cost', 'A shard's own apply cost')"
        + ("; by greedy stage: " + ", ".join(_seconds(x) for x in t["step_by_stage"]) if "step_by_stage" in t else ""),
        f"cycle of {plural(plan['n_push'], 'step')}: {_seconds(plan['cycle_s'])}, bound by {plan['bottleneck']} ("
        + ", ".join(f"{k} {_seconds(v)}" for k, v in bounds.items()) + ")",
        f"predicted: {_human(plan['samples_per_s'])} samples/s; push delay {plan['delay_steps']:.2f} steps; "
        # its letters said, not the formula bare (what p, d and ā are, not only in docs/plan.md)
        f"mean staleness {plan['staleness']:.1f} (R·(p + d + ā)/p − 1, steady state: R replicas, p = n_push = "
        f"{plan['n_push']}, d the push delay, ā the mean steps from a cycle's fetch to its start)",
    ]
    if "train_command" in plan and c["one_machine"]:
        lines.append(f"to train this layout on this machine (a local Ray): {plan['train_command']}")
    elif "train_command" in plan:
        lines.append(f"to train this layout on a Ray cluster of {plural(plan['cluster']['machines_used'], 'node')}, an "
                     f"actor a node: {plan['train_command']}")
    if "paper_pass_s" in n:
        lines.append(f"the paper's {PAPER_IMAGES / 1e6:g} million images: one pass in {_span(n['paper_pass_s'])} "
                     "at the predicted rate; "
                     f"{PAPER_DAYS} days of it (the paper's training time, on 1,000 machines x 16 cores) are "
                     f"{n['paper_passes']:.3g} passes (the paper gives no pass count; its 2012 machines' speeds are "
                     "not this plan's rates)")
    # (a split past BOUND_PAST: its note stands under the layout line, not again here)
    lines += ["", "assumptions:"] + [f"  - {a}" for a in n["assumptions"] if a != bound]
    return "\n".join(lines)


def _memory(plan: dict[str, Any]) -> list[str]:
    """The memory lines: the largest partition's and the shards', a split replica's own process's, and where no
    partition count fits, which the plan took (``memory_fallback``)."""
    part, c = plan["partition"], plan["cluster"]
    # a step's per-step part: on paper, the copies of the filters; measured, part of what it holds (a PCD RBM's
    # chains' visible sample, the cost's weights' scalars), so said with the activations, not as a part of its own
    # (not as tica-8x8's "held whatever the batch 16.40kB", 16.38 kB of it its pooling matrix, a buffer)
    held = (f"activations {_human(part['act_bytes'], 'B')}"
            + (f", the step's copies of the filters {_human(part['copy_bytes'], 'B')}" if part["copy_bytes"] else "")
            if plan["network"].get("on_paper", True) else
            f"activations {_human(part['act_bytes'] + part['copy_bytes'], 'B')}"
            + (f" ({_human(part['copy_bytes'], 'B')} of them whatever the batch)" if part["copy_bytes"] else ""))
    return [
        f"memory per partition: {_human(part['memory_bytes'], 'B')} (weights {_human(part['weight_bytes'], 'B')}, "
        + (f"frozen weights {_human(part['frozen_bytes'], 'B')}, " if part["frozen_bytes"] else "")
        + (f"model state (buffers) {_human(part['state_bytes'], 'B')}, " if part["state_bytes"] else "")
        + f"gradient {_human(part['grad_bytes'], 'B')}, "
        + (f"fetch vector and push {_human(part['fetch_push_bytes'], 'B')}, " if part["fetch_push_bytes"] else "")
        + held
        + (f", the frozen stages' cache at most {_human(part['frozen_cache_bytes'], 'B')}"
           if part["frozen_cache_bytes"] else "")
        + ")"
        + ("" if plan["fits"]["partition"] else "  ** does not fit **")
        # (sgd keeps none: no "parameters + sgd state")
        + f"; per shard {_human(plan['shard_bytes'], 'B')} "
        + (f"(parameters + {plan['rule']} state)" if RULE_STATE[plan["rule"]]
           else f"(parameters; {plan['rule']} keeps no state)")
        + ("" if plan["fits"]["shard"] else "  ** does not fit **")
        # (one machine: its layout line counts them together)
        + ("" if c["one_machine"] else f"; each process's own ~{_human(PROCESS_BYTES, 'B')} (Python, torch, Ray's "
           "worker) beside these, on its machine"),
        *_replica_memory(plan),
        *([f"no partition count that can be laid out fits a machine's {c['memory_gb']:g} GB: planned "
           f"{plural(c['partitions'], 'partition')}, "
           + ("whose largest process (a partition, or each replica's own) needs the least: each replica's process "
              f"{_human(part['replica_memory_bytes'], 'B')}, a partition {_human(part['memory_bytes'], 'B')}"
              if c["replica_machines"] else
              f"the count whose partitions need the least: {_human(part['memory_bytes'], 'B')} a partition")
           # what it needs against what a machine has, both named
           + f", each process with its own ~{_human(PROCESS_BYTES, 'B')}, against {c['memory_gb']:g} GB a "
           "machine (--memory)"] if plan["memory_fallback"] else [])]


def _replica_memory(plan: dict[str, Any]) -> list[str]:
    """The memory line of a split replica's own process (plan/hub.py ``replica_memory``; none where it runs none)."""
    part = plan["partition"]
    if not part["replica_memory_bytes"]:
        return []
    return [f"memory of each replica's process: {_human(part['replica_memory_bytes'], 'B')} ("
            + (f"shared banks {_human(part['replica_weight_bytes'], 'B')}, gradient "
               f"{_human(part['replica_grad_bytes'], 'B')}, " if part["replica_weight_bytes"] else "")
            + (f"fetch vector and push {_human(part['replica_fetch_push_bytes'], 'B')}, "
               if part["replica_fetch_push_bytes"] else "")
            + (f"model state (buffers) {_human(part['replica_state_bytes'], 'B')}, "
               if part["replica_state_bytes"] else "")
            + f"activations of the whole replica's maps {_human(part['replica_act_bytes'], 'B')}, a step's windows, "
            f"codes and their gradients to and from its partitions {_human(part['replica_calls_bytes'], 'B')})"
            + ("" if plan["fits"]["replica"] else "  ** does not fit **")]


def format_check(result: dict[str, Any]) -> str:
    """One block: predicted vs measured mean staleness of a simulated run."""
    p, m = result["predicted"], result["measured"]
    done, steps = result.get("steps_done", result["steps"]), result["steps"]
    ran = f"{steps} steps" if done == steps else f"stopped at step {done} of {steps} (predicted for the steps it did)"
    lines = [f"simulated run: {result['workers']} workers, {result['shards']} shards, {ran}, "
             f"n_push {result['n_push']}, n_fetch {result['n_fetch']}, delay {result['delay']}, {result['consistency']}",
             f"  predicted mean staleness {p['mean']:.2f} (steady state {p['steady']:.2f}, {p['rounds']:g} pushes per worker)",
             f"  measured  mean staleness {m['mean']:.2f} (max {m['max']}, {m['pushes']} shard pushes)",
             f"  relative error {result['relative_error']:+.2%}"]
    if result.get("stage_switches"):       # a greedy run: every push lands before the next stage starts
        lines.insert(2, f"  (greedy: the next stage waits for every push at step(s) "
                        f"{', '.join(map(str, result['stage_switches']))}; each stage predicted as a fresh start)")
    if "seconds" in result:
        lines.append(f"  run time {result['seconds']:.1f} s (set-up {result['setup_seconds']:.1f} s: data, "
                     f"{result['workers']} model replicas; event loop {result['event_loop_seconds']:.1f} s)")
    if result.get("run"):
        lines.append(f"  run directory: {result['run']}")
    if math.isfinite(result["relative_error"]) and abs(result["relative_error"]) > MAX_ERROR:
        lines.append(f"  ** more than {MAX_ERROR:.0%} off **")
    if result.get("rejected_share", 0) > MAX_REJECTED:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(m["rejected"].items()))
        lines.append(f"  ** the shards refused {result['rejected_share']:.0%} of the pushes ({why}): the prediction "
                     "assumes every push is applied and the measured staleness is the applied pushes' only; this run "
                     "does not test it (did it diverge? see its metrics.jsonl) **")
    return "\n".join(lines)
