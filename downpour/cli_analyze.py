"""``downpour analyze RUN`` and ``downpour report RUN`` (their flags are defined with the other commands' in
``cli.build_parser``), and the analysis and report ``downpour train`` ends with."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path

from downpour._names import pasted
from downpour.cli_flags import named_by_set
from downpour.config import AnalysisConfig, ConfigError, as_typed, parse_override
from downpour.errors import DownpourError


def analyze_and_report(path: Path, kept: bool = False) -> int:
    """``downpour train``'s analysis and report of the run it trained in ``path`` (held by its training's lock), the
    no-faces networks its face test scores held shared meanwhile (:func:`_no_faces_held`, so that a
    ``downpour train --resume RUN/no-faces`` from another terminal cannot train the twin on as this analysis scores
    it). ``kept``: a finished run kept with its analysis, only reported (analysed again first where it is stale,
    :func:`~downpour.analysis.report.write_report`, with them held; one not stale holds nothing)."""
    from downpour.analysis.report_training import shows_no_image
    from downpour.analysis.run import analyze_run
    from downpour.train.rundir import RunDir

    again = f"downpour analyze {pasted(path)} --report"
    if shows_no_image(RunDir.open(path)):      # (teacher-student: nothing to analyse, its training reported)
        return report_only(path)
    with _no_faces_held(path, again) if not kept or _report_analyses(path) else nullcontext():
        if not kept:
            try:
                analyze_run(path)
            except KeyboardInterrupt:     # (and SIGTERM) the trained run is whole: only its analysis is left
                stopped_analysis(path, again)
                raise
            print(headline(path), end="")
        return report_only(path, analysed=not kept)


def headline(path: Path) -> str:
    """What a user looks for first in a finished analysis, for the terminal: a supervised run's held-out accuracy
    (:func:`~downpour.analysis.report_guide.classifier_words`), the first layer's edge-like share and the
    face test's summary sentence (so `downpour train` ends on them, not on a JSON line and a report's path), or a
    folder concept's, named as the report's section is ("controls for cat", not "face test")."""
    from downpour.analysis.report_controls import tested_concept
    from downpour.analysis.report_guide import classifier_words, edge_caveat, edge_ci, passed_words, trained_words

    file = Path(path) / "analysis.json"
    found = json.loads(file.read_text()) if file.is_file() else {}
    edges = (found.get("filters") or {}).get("edge_fraction")
    verdict = (found.get("face_neuron") or {}).get("controls_verdict") or {}
    sentences = verdict.get("sentences") or []
    concept = tested_concept(found) if sentences else None
    caveat = edge_ci(found["filters"]) + edge_caveat(found["filters"]) if edges is not None else ""
    test = f"controls for {concept}" if concept else "face test"
    keys = "filters.edge_fraction" + (" and edge_fraction_ci" if edge_ci(found.get("filters") or {}) else "")
    held = classifier_words(found.get("classifier"))
    said = ([f"classifier: {held} (analysis.json classifier)"] if held else [])
    said += ([f"first-layer filters edge-like: {edges:.0%}{caveat} (analysis.json {keys})"]
            if edges is not None else []) + ([f"{test}: {passed_words(verdict)}{sentences[0]}{trained_words(found)}"]
                                             if sentences else [])
    return "".join(f"downpour: {line}\n" for line in said)


def stopped_analysis(path: str | Path, command: str) -> None:
    """What an analysis stopped by Ctrl-C or SIGTERM kept (RUN/analysis.partial.json) and the command that finishes it."""
    from downpour.analysis.partial import NAME, kept_words

    kept = kept_words(path)
    print("downpour: stopped in the analysis" + (f"; kept {kept} in {Path(path) / NAME}: `{command}` finishes it from there"
                                                 if kept else f", before any part of it finished; `{command}` finishes it"),
          file=sys.stderr)


def analysis_overrides(run_path: str, sets: Sequence[str]) -> dict[str, object]:
    """``--set analysis.KEY=VALUE`` for ``downpour analyze``: typed and checked against the run's config."""
    from downpour.train.rundir import RunDir

    if not sets:
        return {}
    keys_of = {f.name for f in dataclasses.fields(AnalysisConfig)}
    for item in sets:
        if not item.startswith("analysis."):
            bare = item.split("=", 1)[0].strip()      # `--set layer=...`: the analysis key without its section
            hint = f" (did you mean --set analysis.{item.strip()}?)" if bare in keys_of else ""
            raise ConfigError(f"--set {item}: downpour analyze only takes analysis.KEY=VALUE overrides{hint}")
    cfg = RunDir.open(run_path).config_with(sets)
    keys = [parse_override(item)[0][1] for item in sets]
    return {key: getattr(cfg.analysis, key) for key in keys}


@contextmanager
def _analysis_held(path: str | Path, command: str, sets: Sequence[str] = (), analyses: bool = True) -> Iterator[None]:
    """Hold the run in ``path`` while ``command`` (``downpour analyze``, ``report``) writes into it: NotARunError
    where another process trains it now (its files are still being written: its analysis would read them
    half-written, or say a run without a model yet was to be resumed), or analyses it (both write figures.partial/).
    The no-faces networks its face test scores (with ``sets``, its ``--set``) are held shared too
    (:func:`_no_faces_held`), where it analyses the run: ``analyses`` False (a report), only where the report analyses
    it first (:func:`_report_analyses`: a report of an analysis made reads neither its twin nor
    analysis.no_faces_run, so it is not refused while they are trained)."""
    from downpour.crossfit_folds import analysis_words
    from downpour.train.lock import FolderBusy, analysing

    shown = _has_analysis(path)     # (teacher-student's has none: `downpour report` shows its training)
    again = f"{command if shown else 'downpour report'} {pasted(path)}"
    with ExitStack() as holding:
        try:
            holding.enter_context(analysing(
                path, then=f"its files are still being written; let it finish (`downpour train` "
                           f"{'analyzes' if shown else 'reports'} its run at its end when analysis.report is on), "
                           f"then `{again}`",
                then_analysed=f"its analysis.json and figures are being written; let it finish, then `{again}`"))
        except FolderBusy as err:   # (a live cross-fit's fold its pooled test reads is held as an analysis holds it)
            raise analysis_words(err, again) from None
        _check_saved(path, analyses)
        with _no_faces_held(path, again, sets) if analyses or _report_analyses(path) else nullcontext():
            yield


def _check_saved(path: str | Path, analyses: bool) -> None:
    """A run whose model.json, model.safetensors or preprocess.* fail their SHA-256 check refused first, once it is held
    (:meth:`~downpour.train.run_model.RunModel.check_saved`; a report in its words, ``analyses`` False): before the
    no-faces networks are held (a twin being trained would be the refusal met first) and the config read, not once
    the model is loaded. The hashes are cached for a big file: the loaders after it do not read it again. Not a run:
    the command says so."""
    from downpour.errors import NotARunError
    from downpour.train.rundir import RunDir

    try:
        run = RunDir.open(path)
    except NotARunError:
        return
    if analyses:
        run.check_saved()
    else:
        run.check_analysed_model()


@contextmanager
def _no_faces_held(path: str | Path, again: str, sets: Sequence[str] = ()) -> Iterator[None]:
    """The no-faces networks the run ``path``'s face test may score held shared while its analysis reads them: its
    twin (``RUN/no-faces``) and ``analysis.no_faces_run`` (another run's folder; the run's config with ``sets`` over
    it). FolderBusy naming the folder where another process trains it now (``downpour train --resume`` of it:
    unheld, it would be read half-trained, or said to hold no twin yet), ``again`` the
    command to run once it is done; a training of either meanwhile is refused (:func:`~downpour.train.lock.reading`)."""
    from downpour.train.lock import reading
    from downpour.train.rundir import RunDir

    scores = f"the analysis of {str(path)!r} scores it as its no-faces network"
    with ExitStack() as holding:
        holding.enter_context(reading(RunDir(path).no_faces_twin, then=f"{scores}; let it finish, then `{again}`"))
        for other in _no_faces_run(path, sets):
            then = f"{scores} (analysis.no_faces_run); let it finish, then `{again}`"
            holding.enter_context(reading(other, then=then))
        yield


def _no_faces_run(path: str | Path, sets: Sequence[str]) -> list[Path]:
    """[the folder ``analysis.no_faces_run`` of the run ``path`` names, with ``sets`` over its config], or []: none
    named, or no run to read it from (the analysis says what is wrong)."""
    from downpour.errors import NotARunError
    from downpour.train.rundir import RunDir

    try:
        named = RunDir.open(path).config.analysis.no_faces_run
        named = analysis_overrides(str(path), sets).get("no_faces_run", named)
    except (ConfigError, NotARunError):
        return []
    return [Path(named)] if named and not _same_folder(named, path) else []


def _same_folder(one: str | Path, other: str | Path) -> bool:
    """Whether ``one`` and ``other`` name the same folder (the run its analysis.no_faces_run names: held by this
    process already, whole by `downpour train`, so a second look at it is not refused as "being trained now by
    another downpour process"; its analysis says what is wrong with it)."""
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _has_analysis(path: str | Path) -> bool:
    """Whether the run in ``path`` can be analysed (:func:`~downpour.analysis.options.has_analysis`); True where its
    config cannot be read (the command says what is wrong with it). False for a teacher-student run, which has no
    analysis: `downpour analyze` of one being trained is told to wait and then run `downpour report`, not to analyse
    it."""
    from downpour.analysis.options import has_analysis
    from downpour.train.rundir import RunDir

    try:
        return has_analysis(RunDir.open(path).config)
    except DownpourError:
        return True


def _report_analyses(path: str | Path) -> bool:
    """Whether a report of the run ``path`` analyses it first (:func:`~downpour.analysis.report.write_report`): no
    analysis.json, or a stale one (True where it is no run: the report says so)."""
    from downpour.errors import NotARunError
    from downpour.train.rundir import RunDir

    try:
        run = RunDir.open(path)
    except NotARunError:
        return True
    return not (run.path / "analysis.json").is_file() or run.analysis_stale()


def cmd_analyze(args: argparse.Namespace) -> int:
    with _analysis_held(args.run, "downpour analyze", args.set):
        return _analyze(args)


def _analyze(args: argparse.Namespace) -> int:
    from downpour.analysis.run import analyze_run

    overrides = analysis_overrides(args.run, args.set)
    asked = overrides.pop("report", None)                           # --set analysis.report=true is --report
    if args.report and asked is False:
        raise ConfigError("--report and --set analysis.report=false: one asks for the report, the other not; give one")
    old = (Path(args.run) / "report.html").is_file()
    report = args.report or bool(asked) or (old and asked is None)   # a report of the old analysis: rewritten
    try:
        analyze_run(args.run, **overrides)                          # (and removed: it describes the old analysis)
    except ConfigError as err:
        raise named_by_set(err, args.set) from None
    except KeyboardInterrupt:     # (and SIGTERM) the parts it finished are kept: the same command goes on from them
        sets = f" {as_typed(args.set)}" if args.set else ""
        stopped_analysis(args.run, f"downpour analyze {pasted(args.run)}{sets}{' --report' if args.report else ''}")
        raise
    print(headline(Path(args.run)), end="")
    print(f"downpour: analysis written to {Path(args.run) / 'analysis.json'}"
          + ("; the old report.html was removed (analysis.report = false)" if old and not report else ""))
    return report_only(Path(args.run), analysed=True) if report else 0


def report_only(path: Path, said: bool = False, analysed: bool = False) -> int:
    """Write the report (analysing the run first where it has no analysis.json, or a stale one) and print its path;
    ``said``: print the analysis's :func:`headline` before it, as `downpour analyze --report` and `downpour train` do
    (before it, so that the last line `downpour report` prints is the file to open); ``analysed``: this process has
    just analysed the run, and said what it found damaged (:func:`~downpour.analysis.report.write_report`'s)."""
    from downpour.analysis.report import write_report

    written = write_report(path, analysed=analysed)
    if said:
        print(headline(path), end="")
    print(f"downpour: report written to {written}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    path = Path(args.run)
    with _analysis_held(path, "downpour report", analyses=False):
        try:   # no analysis.json, or a stale one (read once held): the report analyses it first, and says so
            return report_only(path, said=_report_analyses(path))     # ... as `downpour analyze` does
        except KeyboardInterrupt:        # (and SIGTERM) in that analysis: said, not "interrupted" alone
            if not (path / "analysis.json").is_file():
                stopped_analysis(path, f"downpour report {pasted(path)}")
            raise
