"""``downpour train`` and ``downpour crossfit``: their shorthand flags (:data:`SHORTHANDS`) turned into typed
overrides, a run checked, its folder taken (or resumed) and trained, then analysed. Apart from cli.py, which is at
its 400 lines."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from downpour._names import pasted, plural
from downpour.config import (ConfigError, FlagValue, Override, RunConfig, as_typed, config_to_toml, load_config,
                             parse_override, with_origin)
from downpour.cli_flags import check_cluster_flags, check_flags, checkpoint_keys, set_keys, update_rule_words
from downpour.cli_analyze import analyze_and_report
from downpour.errors import DownpourError, NotARunError, RunError

if TYPE_CHECKING:
    from downpour.train.rundir import RunDir

# Flags that are shorthands for `--set cluster.<key>=...` / `--set train.<key>=...`, passed on typed.
SHORTHANDS = {
    "runner": "cluster.runner", "workers": "cluster.workers", "partitions": "cluster.partitions",
    "shards": "cluster.shards",
    "consistency": "cluster.consistency", "n_fetch": "cluster.n_fetch", "n_push": "cluster.n_push",
    "compensation": "cluster.compensation", "address": "cluster.address", "delay": "cluster.delay",
    "steps": "train.steps", "seed": "seed",
}


def _head_dry(cfg: RunConfig) -> str:
    """For ``--dry-run`` of a run that joins a Ray cluster: RunError where nobody answers at ``cluster.address`` or
    what answers is no Ray head, as the run's join refuses it (:func:`downpour.ps.reach.reachable`: a connection, its
    answer, whether it wants a token this driver will not present, 10 s in all); -> what the dry run says
    of it ("" with no address, or a form Ray resolves itself: auto, ray://HOST). Only reached: a wrong token or another
    Ray version shows when the run joins."""
    from downpour.ps.address import host_port
    from downpour.ps.reach import CONNECT_TIMEOUT_S, reachable

    address = cfg.cluster.address
    if cfg.cluster.runner != "ray" or not address or host_port(address) is None:
        return ""
    reachable(address, CONNECT_TIMEOUT_S)
    return (f"a Ray head answers at cluster.address={address!r} (reached, not joined: whether it takes this "
            "driver's token, and its Ray version, show when the run joins)")


def _overrides(args: argparse.Namespace) -> list[Override]:
    """The typed flags as (key, value) pairs, then ``--set`` strings (later ones win; one that disagrees with a flag: refused)."""
    values = {flag: getattr(args, flag) for flag in SHORTHANDS}
    if values["address"] == "" and not getattr(args, "resume", None):   # (a resume's: go on on a local Ray)
        raise ConfigError("--address is empty (an unset variable?): give HOST:PORT, or leave it out for a local Ray")
    if values["address"] and values["runner"] is None:
        values["runner"] = "ray"  # joining a Ray cluster only means something to the Ray runner
    out: list[Override] = [(key, values[flag]) for flag, key in SHORTHANDS.items() if values[flag] is not None]
    if args.report is not None:
        out.append(("analysis.report", args.report))
    flags = dict(out)
    out = [FlagValue(key, value, _flag_of(key, args)) for key, value in out]    # an error names the flag
    for item in args.set:            # (flags go first, so a --set of the same key won whatever the order)
        path, value = parse_override(item)
        key = ".".join(path)
        if key in flags and flags[key] != value:
            raise ConfigError(f"{_flag_of(key, args)} and --set {item} both set {key}: give one")
    return out + list(args.set)


def _flag_of(key: str, args: argparse.Namespace) -> str:
    """The flag (and its value) that set ``key`` on the command line."""
    if key == "analysis.report":
        return "--report" if args.report else "--no-report"
    if key == "cluster.runner" and args.runner is None:
        return f"--address {args.address}"           # (it means the Ray runner)
    flag = next(f for f, k in SHORTHANDS.items() if k == key)
    return f"--{flag.replace('_', '-')} {getattr(args, flag)}"


def cmd_train(args: argparse.Namespace) -> int:
    from downpour.crossfit_folds import busy_words
    from downpour.train.lock import FolderBusy

    try:
        return _train(args)
    except FolderBusy as err:   # a folder another process trains: a cross-fit's is said as one (not `--resume` it)
        raise busy_words(err) from None


def _train(args: argparse.Namespace) -> int:
    from downpour.crossfit_folds import check_busy, check_not_crossfits
    from downpour.data.resumed import files_listed_at_start
    from downpour.preflight import check_data_read, check_run_config, new_run_config, read_checked
    from downpour.resume_checks import check_folder, check_resumable, resume_config, start_again
    from downpour.train.folders import fresh_folder, missing
    from downpour.train.lock import training_in
    from downpour.train.rundir import RunDir
    from downpour.twins import failed, finished_with_twin, search_failures, train_with_twin, twin_config

    resume = bool(args.resume)
    if args.resume:
        try:    # (not a run: said so first, before its config.toml is offered to start a new run from)
            RunDir.open(args.resume)
        except NotARunError as e:   # said as --resume's, not the folder alone ("'runs/x' does not exist")
            raise NotARunError(f"--resume {args.resume}: {e}") from None
        if args.out or args.config:
            flag = "--out" if args.out else "--config"
            raise ConfigError(f"{flag} with --resume: the run goes on in {args.resume!r} with its own config; drop "
                              f"{flag} (or start a new run: downpour train --config {pasted(Path(args.resume) / 'config.toml')} "
                              f"{as_typed(_overrides(args)) or '--set ...'} --out {pasted(args.out or 'NEW')})")
        run, cfg = resume_config(args.resume, _overrides(args), lambda cfg: check_flags(args, cfg))
        source = str(run.path / "config.toml")
        resume = not run.stopped_unsaved()    # (trained, but killed before its first checkpoint: again from step 0)
    else:
        source = args.config or "main"
        cfg = new_run_config(source, _overrides(args))
        check_cluster_flags(args, cfg.cluster.runner)   # before the config's checks: they name the key, not the flag
    pipeline = cfg.data.pipeline      # ('auto' resolves to its choice: the refusals say both)
    listed_at_start = files_listed_at_start(run.path) if args.resume else None   # (a refusal of too few files says it)
    chosen: dict[str, Any] = {}       # why 'auto' chose it (its estimate), for the run's data.json
    try:
        # resolved; before the run directory exists: a typo leaves nothing behind (a resume's refusals say what it
        # keeps)
        cfg = check_run_config(cfg, bool(args.resume), chosen, listed_at_start)
    except ConfigError as err:        # the model's and the cost terms' own checks: name what set the value
        raise with_origin(err, source, _overrides(args)) from None
    check_flags(args, cfg, pipeline)  # resolved: what data.pipeline = 'auto' chose is known
    # checked too; the preset's twin is off for data without lfw faces, one asked for is refused then
    cfg, twin = twin_config(cfg, asked="analysis.no_faces_twin" in set_keys(args))
    if args.dry_run or not args.resume:   # (a new run's said first: before the wait for its data, nothing made)
        check_busy(run.path if args.resume else args.out, twin is not None)   # what the lock would refuse, not taken
        check_folder(args.out, run if resume else None, cfg, twin is not None)   # refused as the run would be
    if args.dry_run:
        # the run's own refusal of its files, its folder not made
        read = check_data_read(cfg, bool(args.resume), listed_at_start)
        head = _head_dry(cfg)     # a head nobody answers for: refused as the run's join refuses it
        print(config_to_toml(cfg), end="")
        for said in (read, head, _warned_at_start(cfg)):
            if said:
                print(f"downpour: {said}", file=sys.stderr)
        print("downpour: config checked (data, model and cost on a dry batch, train, cluster, analysis); "
              "nothing was written", file=sys.stderr)
        return 0
    old = run if args.resume else None
    # a new run's data read (and refused) before its folder is made, which a refusal then never makes; its runner takes
    # them, not reading them twice (read only there, the folder would be made and then removed). A resume of a
    # run stopped before its first checkpoint trains as a new one: its data are read (refused in a resume's words)
    # before its rows are discarded, which a refusal then keeps (discarded first, a second `--resume` would refuse
    # the folder, "never started training")
    opened = None if resume else read_checked(cfg, bool(args.resume), chosen)
    # the folders this command makes (the run's and those on the way to it, fresh_folder's runs/NAME-TIME or an --out
    # not there, a symbolic link counting as there), deepest first: a new run refused before it trains removes them
    # (_drop_refused), one that was there it empties of its config.toml alone
    if old:
        folder, made = old.path, []
    elif args.out:
        folder = Path(args.out)
        made = missing(folder)
    else:
        name = Path(f"runs/{Path(args.config or 'main').stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        made = missing(name.parent)
        folder = fresh_folder(str(name))
        made.insert(0, folder)
    check_not_crossfits(folder)   # a live cross-fit's fold, one it trains now or not
    # locked before a folder there is taken over (a run of this config started by another terminal, no row yet, had
    # its metrics.jsonl removed), while it trains (a --resume from another terminal is refused), and while it is
    # analyzed (let go before, the same command again could take a finished run over as its analysis.json is
    # being written)
    with training_in(folder, lambda: old if resume else _new_run(folder, cfg, old)) as run:
        if resume:      # refused before the lines below say it resumes (as its --dry-run refuses it)
            check_resumable(run, cfg, twin is not None)
        then = f", then its no-faces twin -> {run.no_faces_twin}" if twin else ""
        if all(finished_with_twin(cfg, run, twin, resume)):
            # (kept, as a resume of a finished run without a twin is refused: not said to be "resuming")
            print(f"downpour: {run.path} and its no-faces twin are already finished: nothing to train, both kept",
                  file=sys.stderr)
        else:
            print(f"downpour: {_what_trains(args, source, resume)} (model {cfg.model.name!r}) with the "
                  f"{cfg.cluster.runner} runner{update_rule_words(cfg)} -> {run.path}{then}", file=sys.stderr)
        try:
            summary = train_with_twin(cfg, run, twin, resume=resume, opened=opened)
        except KeyboardInterrupt:   # (and SIGTERM) in the start (data, Ray): no runner has said what to do, and
            if run.never_started():   # `--resume` refuses a run without a step: so not "interrupted" alone
                print("downpour: stopped before the run kept anything (a step's row or checkpoint): "
                      f"`{start_again(run.path)}` starts it again in that folder", file=sys.stderr)
            raise
        except DownpourError:
            if not old:
                _drop_refused(run.path, made)
            elif run.never_started():    # trained again from step 0, refused: its rows are gone, `--resume` refuses it
                print(f"downpour: {run.path} kept nothing (its rows were discarded to train it again): once the "
                      f"refusal below is fixed, `{start_again(run.path)}` starts it again in that folder",
                      file=sys.stderr)
            raise
        print(json.dumps(summary))
        if cfg.analysis.report:            # nothing trained (a finished run and its twin): its analysis stays
            analyze_and_report(run.path, kept=bool(summary.get("kept")) and (run.path / "analysis.json").is_file())
    return failed(search_failures(summary))   # 1: an L-BFGS line search failed for real (its model saved all the same)


def _warned_at_start(cfg: RunConfig) -> str:
    """What the run's runner WARNs of as it starts, for its ``--dry-run`` to say: Sandblaster on Ray's straggler:T:FACTOR
    from a config file or a resumed run, whose T or FACTOR < 1 it does not read (the flags are refused before)."""
    from downpour.sandblaster.checks import ray_straggler_warning   # (torch: imported by the checks before it)
    said = ray_straggler_warning(cfg)
    return f"the run would warn as it starts: {said}" if said else ""


def _what_trains(args: argparse.Namespace, source: str, resume: bool) -> str:
    """What the user asked to train, for the start line: "training the main preset", "training my.toml", "resuming
    runs/x". It named the model alone ("training 'cat-demo'" for the main preset), which read like the wrong preset."""
    from downpour.config_files import read_toml

    if args.resume:
        return f"resuming {args.resume}" if resume else f"training {source} again from step 0"
    is_preset = read_toml(source)[2] is None       # (its words print ./main as "main", the preset's name)
    return f"training the {source} preset" if is_preset else f"training {source}"


def _new_run(folder: Path, cfg: RunConfig, old: RunDir | None) -> RunDir:
    """The run ``cfg`` made in ``folder``, the training of ``old`` (one stopped before its first checkpoint) discarded."""
    from downpour.train.rundir import RunDir

    if old is not None:
        print(f"downpour: {old.path} stopped before its first checkpoint ({checkpoint_keys(cfg.cluster.runner)} how "
              "often one is saved): training it again from step 0", file=sys.stderr)
        old.discard_training()
    return RunDir.create(folder, cfg, again=old is not None)


def _drop_refused(folder: Path, made: list[Path]) -> None:
    """Undo what a new run wrote where its runner refused it before it wrote anything but its config.toml (an
    --address no Ray answers at; its data, where not read before the folder was made): its config.toml, and the
    folders this command ``made`` for it (the run's and its parents, deepest first), each while it is empty, so the
    refusal leaves nothing behind, as its --dry-run's does (the lock still held: no command beside it takes the
    folder meanwhile); a folder that was there stays. A folder left holding only config.toml would be taken over by
    the same command once the data were fixed, its --resume refused ("never started training"), and one without
    --out would leave a new runs/NAME-TIME folder at each try; an --out a/b/c that made a and b removes all three.
    A refusal that wrote more (a stream's data.json naming its skipped files) keeps it all: the error points there."""
    if not folder.is_dir() or [p.name for p in folder.iterdir()] != ["config.toml"]:
        return
    (folder / "config.toml").unlink()
    removed = []
    for path in made:
        try:
            path.rmdir()       # (only an empty one: something put beside it meanwhile keeps it and those above)
        except OSError:
            break
        removed.append(path)
    above = [str(p) for p in removed[1:]]
    also = f" and {plural(len(above), 'folder')} made for it ({', '.join(above)})" if above else ""
    print(f"downpour: removed {removed[0] if removed else folder / 'config.toml'}{also}: the run was refused before it "
          "trained", file=sys.stderr)


def cmd_crossfit(args: argparse.Namespace) -> int:
    from downpour.analysis.report_crossfit import write_crossfit_report
    from downpour.crossfit import line_search_failures, run_crossfit
    from downpour.crossfit_folds import refuse_own_keys
    from downpour.twins import failed

    refuse_own_keys(_overrides(args), args.folds)
    cfg = load_config(args.config, _overrides(args))
    check_flags(args, cfg)
    out = args.out or f"runs/crossfit-{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    # without --out, "the same command" names a new folder (another time) and trains every fold again
    again = "the same command" + ("" if args.out else f" with --out {pasted(out)}")
    unless = "" if args.out else " (without --out it starts a new cross-fit in a new folder, every fold trained again)"
    try:    # a failed or stopped fold's words (crossfit.raise_failed) name the --out to go on with where none was given
        result = run_crossfit(args.config, _overrides(args), out, folds=args.folds, jobs=args.jobs,
                              control=args.control, again=f"run {again} again", note=unless)
    except KeyboardInterrupt:    # (and SIGTERM) a fold's own stop warning names this command too (train.go_on)
        print(f"downpour: cross-fit stopped; each fold keeps what it trained in {pasted(out)}: {again} goes on{unless}",
              file=sys.stderr)
        raise
    print("\n".join(result["verdict"]["sentences"]))
    print(f"downpour: cross-fitted face test ({tested(result)}) written to {Path(out) / 'crossfit.json'} and "
          f"{write_crossfit_report(out)}")
    return failed(line_search_failures(result), kept=line_search_failures(result, kept=True))   # 1 as train: a line search failed for real (everything is written)


def tested(record: dict[str, Any]) -> str:
    """What a cross-fit's pooled test was, for its last line: its folds, the faces each tests, the folds' seed and the
    intervals ("5 folds of 20 faces, seed 0, percentile 95% intervals over 2000 bootstrap replicates"): the verdict's
    sentences give the intervals alone, and the console said neither the folds nor the seed."""
    faces = sorted({fold["test_faces"] for fold in record["per_fold"]})    # (100 // K, or one more for some folds)
    each = plural(faces[0], "face") if len(faces) == 1 else f"{faces[0]}-{faces[-1]} faces"   # (--folds 100: 1 face)
    return (f"{record['folds']} folds of {each}, seed {record['resolved']['seed']}, "
            f"{record['bootstrap']['interval']} intervals over {record['bootstrap']['replicates']} bootstrap replicates")
