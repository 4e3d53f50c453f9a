"""A cross-fit's folds and its folder: fold i's config (``data.lfw_heldout = "fold:i:K"``, no report of its own),
the keys the cross-fit sets or never reads (refused as overrides), and the folder ``OUT`` it writes: checked to hold
nothing a cross-fit of K folds did not write, and locked while it runs (:func:`crossfitting`), so that another
command that finds one of its folders being trained can say whose it is (:func:`busy_words`); its trained folds are
held shared while its pooled test reads them (:func:`testing`, :func:`analysis_words`). What trains the folds and
pools their test is :mod:`downpour.crossfit`."""
from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from downpour._names import pasted
from downpour.config import AnalysisConfig, ConfigError, Override, RunConfig, load_config, origin_of, parse_override, with_origin
from downpour.errors import NotARunError
from downpour.train.folders import RunExistsError
from downpour.train.lock import FolderBusy, analysing, check_free, is_analysed, is_training, training
from downpour.train.model_file import temp_of
from downpour.train.rundir import RunDir

CROSSFIT_OWNS = {"data.lfw_heldout", "analysis.report"}   # what fold_config sets in every fold
# the face test's keys the pooled test has no use for: it chooses on each fold's training part of lfw and tests
# the fold's held-out faces, its twins are the folds' own (a --set of one would be recorded, and ignored)
# (analysis.splits and test_fraction stay: each fold keeps them for `downpour analyze OUT/fold-I`'s accuracy tables)
CROSSFIT_IGNORES = {"analysis.dataset", "analysis.positive", "analysis.face_select", "analysis.no_faces_run"}
FOLD = re.compile(r"fold-\d+")   # a fold's folder in OUT (its log: fold-I.log)
IGNORED_WHY = ("every fold's methods are chosen on its training part of lfw and tested on its held-out faces; its "
               "twins are the folds' own")


def fold_config(config: str, overrides: list[Override], fold: int, folds: int) -> RunConfig:
    """Fold ``fold``'s resolved config: ``config`` with ``overrides``, then its held-out fold (no report).
    The cross-fit sets those two keys itself: an override of either is refused, not overwritten."""
    from downpour.preflight import check_run_config

    refuse_own_keys(overrides, folds)
    cfg = load_config(config, [*overrides, ("data.lfw_heldout", f"fold:{fold}:{folds}"), ("analysis.report", False)])
    for key in sorted(CROSSFIT_IGNORES):          # set in the config file (a --set of one: refused above)
        name = key.split(".")[1]
        if getattr(cfg.analysis, name) != getattr(AnalysisConfig(), name):
            raise ConfigError(f"{origin_of(key, config, overrides)}: {key} = {getattr(cfg.analysis, name)!r}: the cross-fit's "
                              f"face test does not read it ({IGNORED_WHY}); remove it from the file", key=key)
    try:
        return check_run_config(cfg)
    except ConfigError as err:      # the model's and the cost terms' own checks: name what set the value, as train does
        raise with_origin(err, config, overrides) from None


def refuse_own_keys(overrides: list[Override], folds: int) -> None:
    """ConfigError naming an override of a key the cross-fit sets for every fold, or one its face test
    never reads (checked before the command line's other keys: what the cross-fit does with them)."""
    keys = {".".join(parse_override(o)[0]) for o in overrides}
    owned = sorted(keys & CROSSFIT_OWNS)
    if owned:
        raise ConfigError(f"--set {', '.join(owned)}: the cross-fit sets it for every fold (data.lfw_heldout = "
                          f"fold:I:{folds}, no report per fold: the cross-fit writes its own); drop the override")
    ignored = sorted(keys & CROSSFIT_IGNORES)
    if ignored:
        raise ConfigError(f"--set {', '.join(ignored)}: the cross-fit's face test does not read "
                          f"{'it' if len(ignored) == 1 else 'them'} ({IGNORED_WHY}); drop the override")


def check_crossfit_folder(out: Path, folds: int) -> None:
    """RunExistsError naming ``out`` and what is in it when it holds anything a cross-fit of ``folds`` folds
    did not write (its fold runs, their logs, ``crossfit.json`` and ``.html``), as ``downpour train`` refuses
    a folder holding files it did not make: written among them, it would overwrite a ``crossfit.json`` there
    and mix any other file in with the folds. The same command run again on its own
    folder (to go on after a stop, or to test again) finds only its own names."""
    if not out.is_dir():
        return
    own = {f"fold-{i}{end}" for i in range(folds) for end in ("", ".log", f".{RunDir.TWIN}.log")}
    written = {"crossfit.json", "crossfit.html"}
    own |= written | {temp_of(Path(name)).name for name in written}    # (.tmp: a kill as it wrote one)
    others = sorted(p.name for p in out.iterdir() if p.name not in own)
    record, page = out / "crossfit.json", out / "crossfit.html"
    ours, unreadable = _crossfit_record(record) if record.is_file() else (True, None)
    if not ours:
        others.append(record.name)
    if page.is_file() and "<title>downpour crossfit: " not in page.read_text(encoding="utf-8", errors="replace"):
        others.append(page.name)
    more = sorted(name for name in others if re.fullmatch(r"fold-\d+(\.log|\..+\.log)?", name))
    if more:                    # (its own folder, run again with fewer --folds)
        raise RunExistsError(f"{str(out)!r} holds a cross-fit of more folds than {folds} ({', '.join(more[:3])}"
                             f"{', ...' if len(more) > 3 else ''}): run it again with its own --folds, or pick another --out")
    had = _folds_of(out / "fold-0" / "config.toml")
    if had is not None and had != folds:   # (fewer: told its fold-0 "differs in data.lfw_heldout", a key never typed)
        raise RunExistsError(f"{str(out)!r} holds a cross-fit of {had} folds, not {folds} (fold-0 holds out "
                             f"fold:0:{had}): run it again with --folds {had}, or pick another --out")
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise RunExistsError(f"{str(out)!r} holds files a cross-fit of {folds} folds did not write ({shown}): a "
                             "cross-fit is written only into a new or empty folder, or its own; pick another --out")
    if unreadable is not None:   # (its command stopped as it wrote it: "did not write ... pick another --out" left
        # every trained fold behind)
        raise RunExistsError(f"{str(record)!r} cannot be read (cut short or damaged: {unreadable}): the cross-fit "
                             "writes it from its trained folds once they are tested; remove it and run the same command "
                             "again")


@contextmanager
def crossfitting(out: Path) -> Iterator[None]:
    """Hold the cross-fit folder ``out``'s lock (:mod:`downpour.train.lock`, as ``downpour train`` holds its run's)
    while the block trains its folds and pools their test: the same command run again from another terminal (to go
    on) is refused, naming ``out``. Each fold's own folder is locked too, while it trains (:func:`train_kept`)."""
    held = ExitStack()
    try:
        held.enter_context(training(out, "the cross-fit's folder"))
    except FolderBusy as err:   # (its message names `downpour train --resume`: no command for a cross-fit)
        if err.doing != "trained":   # (a `downpour analyze OUT`, briefly: said as such, not "being cross-fitted")
            raise RunExistsError(f"{err}; or pick another --out") from None
        raise RunExistsError(f"{str(out)!r} is being cross-fitted now by another downpour process: let it finish, or "
                             "stop it (Ctrl-C or SIGTERM save every fold's checkpoint), then run the same command again "
                             "to go on; or pick another --out") from None
    with held:
        yield


@contextmanager
def testing(out: Path, paths: list[Path]) -> Iterator[None]:
    """Hold the cross-fit ``out``'s trained folds (and twins) in ``paths`` while its pooled test reads them, as an
    analysis holds its run (shared): a `downpour analyze` of a fold meanwhile is refused (it would write into a fold
    as the pooled test reads it), and one going on now refuses the test, naming the fold."""
    with ExitStack() as held:
        again = (f"let it finish, then run the same `downpour crossfit --out {pasted(out)}` command again: it keeps the "
                 "trained folds and tests them")
        for path in paths:
            held.enter_context(analysing(path, then=again, then_analysed=again, writes=False))
        yield


def _folds_of(config: Path) -> int | None:
    """K of the ``data.lfw_heldout = "fold:I:K"`` a fold's config.toml holds; None where it holds none."""
    try:
        held = tomllib.loads(config.read_text(encoding="utf-8")).get("data", {}).get("lfw_heldout")
    except (OSError, ValueError):
        return None
    found = re.fullmatch(r"fold:\d+:(\d+)", held) if isinstance(held, str) else None
    return int(found.group(1)) if found else None


def _crossfit_record(path: Path) -> tuple[bool, str | None]:
    """(whether the file ``path`` is a cross-fit's crossfit.json, why it does not parse): (True, None) one a cross-fit
    wrote, (True, why) one cut short or damaged (its command stopped as it wrote it), (False, None) another JSON file
    or one that cannot be opened (said as a foreign file)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:       # (and UnicodeDecodeError)
        return True, str(err)
    except OSError:
        return False, None
    return isinstance(record, dict) and {"config", "folds", "runs"} <= record.keys(), None


def live_crossfit(path: str | Path) -> Path | None:
    """The folder of the cross-fit another process runs now (:func:`crossfitting`) that ``path`` belongs to: that
    folder itself, a fold's, or a fold's no-faces twin's; None where it belongs to none."""
    path = Path(path)
    for out, inside in ((path, ()), (path.parent, (path.name,)), (path.parent.parent, (path.parent.name, path.name))):
        if (inside and not FOLD.fullmatch(inside[0])) or inside[1:] not in ((), (RunDir.TWIN,)):
            continue
        if _holds_folds(out) and is_training(out):
            return out
    return None


def _holds_folds(folder: Path) -> bool:
    """Whether ``folder`` holds a fold's folder or log; False where it cannot be listed (no cross-fit of ours)."""
    try:
        return folder.is_dir() and any(FOLD.match(p.name) for p in folder.iterdir())
    except OSError:
        return False


def busy_words(err: FolderBusy) -> NotARunError:
    """``err`` (a folder another process trains now) worded as a cross-fit's where that process is a cross-fit: it
    goes on by the same ``downpour crossfit`` command, not ``downpour train --resume`` of the folder (what ``err``
    says, and what a folder of a run of one's own needs)."""
    return _crossfit_words(err.path) or err


def analysis_words(err: FolderBusy, again: str) -> NotARunError:
    """``err`` (a folder another process holds, found by an analysis of it) worded as a live cross-fit's fold being read
    by its pooled face test, where it is one being analysed (the test holds its folds as an analysis does): ``err``
    said it was its analysis.json and figures being written. ``again``: the command to run once it is done. Another
    ``downpour analyze`` of the fold (it holds config.toml whole, :func:`~downpour.train.lock.is_analysed`) is ``err``,
    so neither is said as "the pooled test (or another `downpour analyze`)"."""
    out = live_crossfit(err.path) if err.doing == "analysed" and not is_analysed(err.path) else None
    if out is None:
        return err
    return NotARunError(f"{str(err.path)!r} is being read now by another downpour process: it is a fold of the cross-fit "
                        f"{str(out)!r}, whose pooled face test reads its folds once they are trained; let it finish, "
                        f"then `{again}`")


def check_not_crossfits(path: str | Path) -> None:
    """NotARunError, as :func:`busy_words` says it, where ``path`` belongs to a cross-fit another process runs now,
    trained at this moment or not: else ``downpour train --out OUT/fold-I`` (or ``--resume`` of a fold stopped
    before) of a fold the cross-fit has not reached yet would train a run there, and the cross-fit, reaching it,
    would fail that fold as "another run"."""
    refusal = _crossfit_words(Path(path))
    if refusal is not None:
        raise refusal


def check_busy(folder: str | Path | None, twin: bool) -> None:
    """What ``downpour train`` into ``folder`` (None: a new one) would be refused for by another process now, said
    without holding any lock (``--dry-run``: :func:`~downpour.train.lock.check_free` takes each and lets it go at
    once): a live cross-fit's folder or fold (:func:`check_not_crossfits`), a folder being trained or analysed, and
    with its no-faces ``twin``, that being trained or read (so a dry run does not say "config checked" where the
    command itself is refused)."""
    if folder is None:
        return
    check_not_crossfits(folder)
    check_free(folder)
    if twin:
        check_free(RunDir(folder).no_faces_twin)


def _crossfit_words(path: Path) -> NotARunError | None:
    out = live_crossfit(path)
    if out is None:
        return None
    what = "the folder of" if out == path else "a fold of"
    return NotARunError(f"{str(path)!r} is {what} the cross-fit {str(out)!r}, being run now by another downpour "
                        f"process (`downpour crossfit --out {pasted(out)}`): let it finish, or stop it (Ctrl-C or SIGTERM save "
                        "every fold's checkpoint), then run that same `downpour crossfit` command again to go on (it "
                        "resumes its folds; `downpour train --resume` of a fold does not go on with the cross-fit); a "
                        "run of your own goes in another --out")
