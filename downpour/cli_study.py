"""``downpour study``: list the studies, or run one into its folder and print its verdict (its flags are
defined with the other commands' in ``cli.build_parser``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from downpour.config import ConfigError

WHAT = {"list": "only lists the studies", "index": "only writes the index of a folder of studies (--out DIR)"}


class StudyHelp(argparse.Action):
    """``-h``/``--help`` of ``downpour study``: after a study's name (``downpour study staleness --help``) that study's
    question, conditions, seeds and time above the flags, importing its design alone; else the flags and the list."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from downpour.studies.about import describe, listing

        name = getattr(namespace, "name", None)     # set where the name came before --help
        if name in (None, *WHAT):
            parser.epilog = listing()
        else:
            try:
                parser.description = describe(name)
            except ConfigError as err:
                parser.exit(2, f"downpour: error: {err}\n")
        parser.print_help()
        parser.exit()


def cmd_study(args: argparse.Namespace) -> int:
    from downpour.studies import QUESTIONS, STUDIES, design_class
    from downpour.studies.about import list_heading, question_number

    if args.name in WHAT:
        taken = ("--out",) if args.name == "index" else ()
        given = [flag for flag, value in (("--quick", args.quick), ("--seeds", args.seeds is not None),
                                          ("--jobs", args.jobs is not None), ("--out", args.out), ("--set", args.set))
                 if value and flag not in taken]
        if given:
            raise ConfigError(f"{', '.join(given)}: `downpour study {args.name}` {WHAT[args.name]}; give a study's "
                              "name to run it")
    if args.name == "index":
        from downpour.studies.index import write_index

        page, _ = write_index(Path(args.out or "studies"))
        print(f"downpour: the study index written to {page} (and index.md beside it)")
        return 0
    if args.name == "list":
        print(list_heading())
        for name in STUDIES:     # (one without a line in QUESTIONS says its design's own question: imported)
            print(f"{name:<14} {question_number(name):<3} {QUESTIONS.get(name) or design_class(name).question}")
        return 0
    from downpour.studies.data_note import data_sentence
    from downpour.studies.run import run_study

    out = args.out or f"studies/{args.name}{'-quick' if args.quick else ''}"
    folder = run_study(args.name, out, quick=args.quick, seeds=args.seeds, sets=args.set, jobs=args.jobs)
    result = json.loads((folder / "study.json").read_text())
    print(result["verdict"])
    if data := data_sentence(result.get("data")):
        print(f"\ndownpour: {data}")
    print(f"downpour: study written to {folder / 'study.html'} (and study.md beside it)")
    return 0
