"""``downpour plan``: what a network costs on a cluster (:mod:`downpour.plan`), or a simulated run's staleness
checked against the plan's prediction (``--check-simulated``, ``--check-run``; its flags are defined with the other
commands' in ``cli.build_parser``, which of them each mode reads in :mod:`downpour.cli_plan_flags`)."""
from __future__ import annotations

import argparse
import json

from downpour.cli_flags import check_sets
from downpour.cli_plan_flags import check_plan_flags
from downpour.config import RunConfig


def cmd_plan(args: argparse.Namespace) -> int:
    from downpour.errors import NotARunError
    from downpour.plan import Cluster, check_simulated, compare_run, format_check, format_plan, passed, plan_for

    mode = check_plan_flags(args)
    given = {"machines": args.machines, "cores": args.cores, "memory_gb": args.memory, "bandwidth_gbit": args.bandwidth}
    cluster = Cluster(**{k: v for k, v in given.items() if v is not None},
                      replicas=args.replicas, partitions=args.partitions, shards=args.shards)   # checks the flags
    if mode != "plan":
        from downpour.preflight import check_run_config

        def check(cfg: RunConfig) -> RunConfig:       # what `downpour train` checks of the same --set keys
            check_sets(args.set, cfg)
            return check_run_config(cfg)

        given = {"config": args.config, "workers": args.replicas, "shards": args.shards, "steps": args.steps}
        try:
            result = (compare_run(args.check_run) if args.check_run else
                      check_simulated(**{k: v for k, v in given.items() if v is not None}, sets=args.set, out=args.out,
                                      check=check))
        except NotARunError as e:   # said as --check-run's, not the folder alone ("'/tmp/x' does not exist")
            if not args.check_run:
                raise
            raise NotARunError(f"--check-run {args.check_run}: {e}") from None
        print(json.dumps(result) if args.json else format_check(result))
        return 0 if passed(result) else 1
    plan = plan_for(args.model, args.set, cluster, args.calibrate, args.config)
    print(json.dumps(plan) if args.json else format_plan(plan))
    # 1 where the plan cannot run as laid out (a process past a machine's memory, more machines than given), as
    # --check-simulated's 1 for a failed check; refusals are 2 (docs/plan.md, "Exit status")
    return 0 if all(plan["fits"].values()) else 1
