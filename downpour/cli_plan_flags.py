"""``downpour plan``'s flags: each of its three modes (the plan, --check-simulated, --check-run) reads its own and
refuses the others', naming them (apart from cli_flags.py, which checks what `downpour train` reads)."""
from __future__ import annotations

import argparse

from downpour.config import ConfigError

# ``downpour plan``'s three modes and the flags each reads (beyond --json): a flag another mode reads is refused
PLAN_READS_FLAGS = {
    "plan": ("model", "config", "set", "machines", "cores", "memory", "bandwidth", "replicas", "partitions", "shards",
             "calibrate"),
    "--check-simulated": ("config", "set", "replicas", "shards", "steps", "out"),
    "--check-run": (),
}


def check_plan_flags(args: argparse.Namespace) -> str:
    """The mode of ``downpour plan`` (a key of :data:`PLAN_READS_FLAGS`); ConfigError naming a flag it never reads."""
    if args.check_simulated and args.check_run:
        raise ConfigError("--check-simulated and --check-run: one at a time (a new simulated run, or a finished one)")
    mode = "--check-simulated" if args.check_simulated else "--check-run" if args.check_run else "plan"
    if mode == "plan" and args.model and args.config:
        raise ConfigError("--model and --config: one names the network to plan (a registered model at its defaults, or "
                          "what a preset or file trains); give one")
    every = {flag for flags in PLAN_READS_FLAGS.values() for flag in flags}
    given = sorted(flag for flag in every - set(PLAN_READS_FLAGS[mode])     # (--steps 0 is given: 0 == False)
                   if (value := getattr(args, flag)) is not None and value is not False and value != [])
    if given:
        named = ", ".join("--" + flag for flag in given)
        what = "the plan itself" if mode == "plan" else f"plan {mode}"
        one = len(given) == 1
        # the simulated run splits its replicas by the key, so --partitions 2 is told that, not "drop it" alone
        split = (f"; to split the simulated run's replicas: --set cluster.partitions={args.partitions}"
                 if mode == "--check-simulated" and "partitions" in given else "")
        belongs = f" ({'it belongs' if one else 'they belong'} to --check-simulated)" if mode == "plan" else ""
        # the plan reads the steps from its --config, or a --set of them (--steps is --check-simulated's own run's)
        steps = (f"; the plan's steps: --set train.steps={args.steps} with --config"
                 if mode == "plan" and "steps" in given else "")
        raise ConfigError(f"{named}: not read by {what}; drop {'it' if one else 'them'}{belongs}{split}{steps}")
    return mode
