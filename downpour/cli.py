"""The ``downpour`` command: train, crossfit, analyze, report, models, presets, study, plan (train and crossfit in
:mod:`~downpour.cli_train`, analyze and report in :mod:`~downpour.cli_analyze`, models and presets in
:mod:`~downpour.cli_models`, study in :mod:`~downpour.cli_study`, plan in :mod:`~downpour.cli_plan`)."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from typing import Any

from downpour._names import whole
from downpour.config import CROSSFIT_CONTROLS, ClusterConfig
from downpour.cli_flags import check_as_typed
from downpour.cli_analyze import cmd_analyze, cmd_report
from downpour.cli_log import configure_logging
from downpour.cli_models import cmd_models, cmd_presets
from downpour.cli_plan import cmd_plan
from downpour.cli_refused import flags_of, nearest_flag, split_set
from downpour.cli_study import StudyHelp, cmd_study
from downpour.cli_train import SHORTHANDS, cmd_crossfit, cmd_train
from downpour.settings import choices_of
from downpour.errors import DownpourError
from downpour.train.signals import quit_at_next_stop, sigterm_as_interrupt


def _run_flags(parser: argparse.ArgumentParser, seed: str = "the run's seed") -> None:
    """The shorthand flags (:data:`SHORTHANDS`) that train and crossfit share, each help naming the key it sets
    (so that --workers, --steps and the others each have one); ``seed``: what --seed is to the command."""
    helps = {"workers": "workers (model replicas: Downpour's, or Sandblaster's that compute its work units)",
             "partitions": "model parallelism: partitions per replica (the cat network's locally connected stages "
                           "split into blocks; `downpour plan --partitions`)",
             "shards": "parameter-server shards",
             "consistency": "async | bounded:K | sync",
             "n_fetch": "a worker fetches the parameters every N steps",
             "n_push": "a worker pushes its summed gradient every N steps",
             "compensation": " | ".join(choices_of(ClusterConfig, "compensation")),
             "address": "join an existing Ray cluster (HOST:PORT; auto: the one RAY_ADDRESS names, else this machine's)",
             "delay": "simulated delays: constant:T | uniform:A:B | exponential:MEAN | straggler:T:FACTOR (the last "
                      "worker's delay T*FACTOR; Sandblaster's also computes FACTOR times slower, and on Ray takes "
                      "straggler:0:FACTOR)",
             "steps": "training steps (L-BFGS iterations with cluster.algorithm = sandblaster)",
             "seed": seed}
    types = {flag: whole for flag in ("workers", "partitions", "shards", "n_fetch", "n_push", "steps", "seed")}
    choices = {"runner": choices_of(ClusterConfig, "runner")}      # (--runner's usage lists them: no words)
    for flag, key in SHORTHANDS.items():
        words = f"{helps[flag]}; " if flag in helps else ""
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=types.get(flag, str),
                            metavar="N" if flag in ("n_fetch", "n_push") else None, choices=choices.get(flag),
                            help=f"{words}sets {key} (default: the config's)")


def _command(sub: Any, name: str, words: str, more: str = "") -> argparse.ArgumentParser:
    """The subcommand ``name``: ``words`` in the top help's list and at the head of its own ``--help`` (argparse
    shows ``help`` only in the list: `downpour crossfit --help` said nothing of what the command does), ``more``
    after them there."""
    return sub.add_parser(name, help=words, description=f"{words[0].upper()}{words[1:]}. {more}".strip())


def _version() -> str:
    """The installed package's version ("not installed" where the code runs from a checkout on PYTHONPATH)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("downpour")
    except PackageNotFoundError:
        return "(not installed: run from a source tree)"


class _Version(argparse.Action):
    """``--version``, the version looked up only when asked: argparse's own action takes it as a string when the parser
    is built, and importlib.metadata (about 45 ms) would be imported by every command's start, `--help` too."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show program's version number and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"downpour {_version()}")
        parser.exit()


class _OnOrOff(argparse.BooleanOptionalAction):
    """``--report`` / ``--no-report``, refused when both are given: argparse's own action let the last one win
    without a word, where every other pair of flags that disagree is refused."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest)
        super().__call__(parser, namespace, values, option_string)
        if before is not None and before != getattr(namespace, self.dest):
            on, off = self.option_strings
            parser.error(f"{on} and {off}: give one")


def build_parser() -> argparse.ArgumentParser:
    # (not the module docstring: its rST marks and the modules it names are the code's, not a user's)
    parser = argparse.ArgumentParser(prog="downpour", description="The downpour command: train, crossfit, analyze, "
                                     "report, models, presets, study, plan (`downpour COMMAND --help` for one)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging; a user error's traceback above its one line")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)

    train = _command(sub, "train", "train a model (no arguments: the main job)")
    train.add_argument("--config", help="a preset name (`downpour presets`) or a TOML file (default: main; "
                                        "not with --resume, which keeps the run's own)")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config value")
    train.add_argument("--out", help="run directory (default: runs/<config>-<time>)")
    train.add_argument("--resume", metavar="RUN", help="continue the run in this directory")
    train.add_argument("--report", action=_OnOrOff, default=None,
                       help="analyse and write report.html at the end (default: the preset's analysis.report)")
    train.add_argument("--dry-run", action="store_true",
                       help="check the config (building the model once, reading a file source's data as the run "
                            "would) and print it resolved; train nothing, write nothing")
    _run_flags(train)
    train.set_defaults(func=cmd_train)

    crossfit = _command(sub, "crossfit", "the face test on all 100 lfw faces: one run per fold, each trained without "
                                         "the faces it is tested on",
                        more="Writes OUT/fold-I (fold I's run), OUT/crossfit.json (the pooled test, with the config "
                             "and overrides that repeat it) and OUT/crossfit.html. Stopped, the same command with the "
                             "same --out goes on: finished folds are kept, a stopped one resumes from its checkpoint.")
    crossfit.add_argument("--config", default="main", help="a preset name or a TOML file (as for train) that trains on "
                          "lfw (data.source = faces or natural+faces); one that does not (ufldl-sae, tica-8x8) is refused")
    crossfit.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config value")
    crossfit.add_argument("--folds", type=whole, default=5,
                          help="folds of lfw_subset, 2 to 100 (default 5: 20 faces each, 100 // K or one more)")
    crossfit.add_argument("--out", help="folder for the fold runs, crossfit.json and .html (default: runs/crossfit-<config>-<time>); "
                                        "run again with the same --out to resume")
    crossfit.add_argument("--jobs", type=whole, default=1,
                          help="folds trained at once, each in its own process with an equal share of the cores "
                               "(default 1; not with the Ray runner); each writes OUT/fold-I.log")
    crossfit.add_argument("--control", default=None, choices=CROSSFIT_CONTROLS,
                          help="no-faces: also train each fold's twin without lfw's training faces (data.train_faces "
                               "= 0) into OUT/fold-I/no-faces and score that network's unit beside the learned one: "
                               "is the face unit learned from the faces? (twice the training); none: no twin. "
                               "Default: the config's analysis.no_faces_twin (the main job: no-faces)")
    _run_flags(crossfit, seed="every fold's seed (the folds differ only in the faces they hold out)")
    crossfit.set_defaults(func=cmd_crossfit, report=None)

    analyze = _command(sub, "analyze", "what did a run learn: writes analysis.json and figures/")
    run_help = "a run directory: the --out of `downpour train` (RUN/no-faces for its no-faces twin)"
    analyze.add_argument("run", help=run_help)
    analyze.add_argument("--set", action="append", default=[], metavar="analysis.KEY=VALUE",
                         help="override one [analysis] value for this analysis (e.g. analysis.splits=10)")
    analyze.add_argument("--report", action="store_true",
                         help="also write report.html (rewritten anyway where the run has one: it showed the old analysis)")
    analyze.set_defaults(func=cmd_analyze)

    report = _command(sub, "report", "write report.html for a run (analysing it first if needed)")
    report.add_argument("run", help=run_help)
    report.set_defaults(func=cmd_report)

    models = sub.add_parser("models", help="list the registered models")
    models.add_argument("--footprint", "--costs", dest="footprint", metavar="NAME", nargs="?", const="",
                        help="per-layer parameters, memory and FLOPs of model NAME, or with --config of what a preset "
                             "trains (also accepted as --costs)")
    models.add_argument("--config", help="with --footprint: a preset or TOML file, its model as it trains (its "
                                         "options and sample shape; `--footprint --config main`: the main job's)")
    models.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE",
                        help="with --footprint: a model option (e.g. model.maps=[16,16])")
    models.set_defaults(func=cmd_models)

    presets = sub.add_parser("presets", help="list the shipped TOML presets")
    presets.set_defaults(func=cmd_presets)

    study = sub.add_parser("study", help="answer one of the mission's questions with a study (`downpour study list`)",
                           add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    study.add_argument("-h", "--help", action=StudyHelp, help="show this help and the studies; after NAME: that study's "
                                                              "question, conditions, seeds and time")
    study.add_argument("name", help="a study name; 'list' (the studies); 'index' (index.html and index.md of the study "
                                    "folders in --out, default studies: each study writes it again when it finishes)")
    study.add_argument("--quick", action="store_true",
                       help="the small setting (a smoke test: a few minutes on 2 cores; `downpour study NAME --help` "
                            "says how many)")
    study.add_argument("--seeds", type=whole, help="paired seeds per condition (default: the study's)")
    study.add_argument("--out", help="study folder (default: studies/NAME, studies/NAME-quick with --quick); run "
                                     "again to resume. With index: the folder of study folders (default: studies)")
    study.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one config value in every cell")
    study.add_argument("--jobs", type=whole, help="worker processes (default: the cores available, at most 8)")
    study.set_defaults(func=cmd_study)

    plan = sub.add_parser("plan", help="what a network costs on a cluster: parameters, memory, FLOPs, step time, "
                                       "staleness (default: the paper's network on 1,000 machines)",
                          epilog="exit status: 0 the plan fits; 1 it is printed but does not fit (a process past a "
                                 "machine's memory, or more machines than given); 2 refused")
    plan.add_argument("--model", help="'paper' (Le et al. 2012, the default) or a registered model")
    plan.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="model.KEY, objective.TERM (a cat network: pooled_l2 only, or a stage's own, stage2/pooled_l2), "
                           "train.batch_size, train.schedule, "
                           "train.steps (with --config: the frozen cache's count), cluster.n_push, cluster.n_fetch, "
                           "cluster.rule; with --check-simulated: any override of the simulated run (e.g. "
                           "cluster.delay=exponential:2)")
    plan.add_argument("--machines", type=whole, help="machines in the cluster (default 1000; 1: every process on one "
                      "machine, as a local Ray runs them)")
    plan.add_argument("--cores", type=whole, help="cores per machine (default 16)")
    plan.add_argument("--memory", type=float, help="GB per machine (default 64)")
    plan.add_argument("--bandwidth", type=float, help="Gbit/s per machine (default 1)")
    plan.add_argument("--replicas", type=whole,
                      help="model replicas (default: chosen; --check-simulated: workers, 1000)")
    plan.add_argument("--partitions", type=whole, help="partitions per replica (default: chosen)")
    plan.add_argument("--shards", type=whole, help="parameter-server shards (default: chosen; --check-simulated: 100)")
    plan.add_argument("--calibrate", action="store_true",
                      help="measure this machine's layer FLOP/s, pooling + LCN FLOP/s and shard apply bytes/s first "
                           "(a few seconds)")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.add_argument("--check-simulated", action="store_true",
                      help="train --config on the simulated cluster and compare its mean staleness with the prediction")
    plan.add_argument("--check-run", metavar="RUN", help="compare a simulated run's staleness with the prediction (a "
                      "finished run, or one stopped: over the steps it did)")
    plan.add_argument("--config", help="a preset or TOML file: plan what it trains; with --check-simulated: the one to "
                      "run (default ufldl-sae, at batch 10)")
    plan.add_argument("--steps", type=whole, help="with --check-simulated: train.steps (default 10000; "
                      "the plan itself: --set train.steps=N with --config)")
    plan.add_argument("--out", help="with --check-simulated: keep the run in this directory")
    plan.set_defaults(func=cmd_plan)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments; a flag the command does not take is refused by that command, with its usage and the nearest flag
    it does take (`downpour study costs --quik` does not print the top level's usage and
    "unrecognized arguments: --quik" alone)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    command = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    words = sys.argv[1:] if argv is None else argv
    after = command.parse_known_args(words[words.index(args.command) + 1:])[1]
    # the top level's (its flags take no value: the command is the first word)
    before = extra[:len(extra) - len(after)]
    if before:   # `downpour --quick study costs`: study's, said so, not "--quick (did you mean '--quick'?)"
        flag = before[0].split("=")[0]
        hint = (f" ({flag} is {args.command}'s: give it after `downpour {args.command}`)" if flag in flags_of(command)
                else nearest_flag(flag, flags_of(parser)))
        parser.error(f"unrecognized arguments: {' '.join(before)}{hint}")
    hint = (nearest_flag(after[0].split("=")[0], flags_of(command)) if after[0].startswith("--")
            else split_set(words, after))
    command.error(f"unrecognized arguments: {' '.join(after)}{hint}")


def main(argv: list[str] | None = None) -> int:
    """The ``downpour`` command with ``argv`` (None: ``sys.argv[1:]``) called from Python (a notebook, a script, a
    test): its exit status returned and the process's signal handlers left as they were, so a Ctrl-C after an
    interrupted command interrupts the caller, as it would have. ``main()`` with no argv does not take itself for
    the process's own command: that one, after an interrupt, sets Ctrl-C to end the process, which would kill a
    notebook's kernel at its next Ctrl-C."""
    return _main(argv, own=False)


def command() -> int:
    """The process's own ``downpour`` command (the installed script, ``python -m downpour``): :func:`main` of
    ``sys.argv[1:]``, after which the process exits, so a stop after an interrupted command ends it at once
    (:func:`quit_at_next_stop`)."""
    return _main(None, own=True)


def _main(argv: list[str] | None, own: bool) -> int:
    args = _parse(argv)
    configure_logging(args.verbose)
    # own: the process's own command, after a stop only its exit is left (the handler _run sets then outlives the
    # block: sigterm_as_interrupt leaves it in place)
    with sigterm_as_interrupt() as terms:
        code = _run(args, terms, own)
    # torch logs its FakeTensor cache stats at exit (an atexit hook) at INFO, ours: a stop that cut torch's imports
    # short, before they set its loggers' levels, would print them after "downpour: interrupted"
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.WARNING)
    return code


def _run(args: argparse.Namespace, terms: list[int], own: bool) -> int:
    """``args.func(args)``, its errors and interrupts turned into one line and an exit status; ``own``: the process's
    own command, whose exit a further stop after an interrupt cuts short (:func:`quit_at_next_stop`)."""
    try:
        check_as_typed(args)
        return args.func(args)
    except DownpourError as err:   # the user's to fix, said in one line; anything else is a bug: a traceback
        if args.verbose:   # its traceback too, then the same line and status (raised, a script saw Python's 1)
            traceback.print_exc()
        print(f"downpour: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C or SIGTERM: the runner has saved what it could and said how to resume
        terminated = bool(terms)   # (Ray re-raises a bare KeyboardInterrupt): the status a process killed by SIGTERM has
        code = 128 + signal.SIGTERM if terminated else 130
        if own:     # before the line: a Ctrl-C that follows it lands in the exit, not in a traceback
            quit_at_next_stop(code)
        print(f"downpour: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return code
    except BrokenPipeError:     # the reader left (`downpour models | head`): say nothing more, anywhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        # a listing cut short is fine; work cut short (a run stopped at its first progress line) is not
        # success: the status a process killed by SIGPIPE has, so a script sees it
        return 0 if args.func in (cmd_models, cmd_presets) or vars(args).get("name") == "list" else 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(command())
