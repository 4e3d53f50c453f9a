"""What ``downpour study NAME --help`` says of one study: its question, conditions, default seeds, roughly how long
it takes and where its results are written up. Only that study's design is imported (studies/designs/: no torch;
the study's module imports torch, 3-4 s); the list of ``downpour study --help`` reads
:data:`~downpour.studies.QUESTIONS` and :data:`ABOUT` alone."""
from __future__ import annotations

import textwrap

from downpour.studies import QUESTIONS, STUDIES, design_class

# name -> (its heading's number in docs/studies.md, Q1-Q7: MISSION.md's six questions, Q2 and Q3 the second; the full
# setting's wall time on the project's 2-core VM at the default seeds, from the re-runs docs/studies.md records,
# 2026-12-02 to 2026-12-05, and in brackets what a longer re-run took (beside other jobs, or at mechanisms'
# --seeds 16): its section's **Time** line, which test_studies_command_line holds equal to this one)
ABOUT = {
    "staleness": (1, "about 40-50 min"),
    "templates": (2, "about 6 min (17 min beside other jobs)"),
    "flat-skipping": (3, "about 7 min"),
    "mechanisms": (4, "about 15 min (32-57 min at --seeds 16, the longer beside other jobs)"),
    "first-layer": (5, "about 10 min (32 min beside other jobs)"),
    "costs": (6, "7-20 min"),
    "architectures": (7, "13-28 min (35-48 min beside other jobs)"),
}

# name -> the quick setting's wall time on the project's 2 cores at its default seeds, measured on 2026-12-06
# (`time downpour study NAME --quick --out DIR`): the first figure beside fewer other jobs at --jobs 1 (staleness at
# --jobs 2; staleness, mechanisms and architectures at a load of 7-15), the second beside many at --jobs 2 (a load of
# 14-27). The table at the top of docs/studies.md says the same (test_studies_command_line).
QUICK = {
    "staleness": "3-7 min",
    "templates": "1-3 min",
    "flat-skipping": "35 s-3 min",
    "mechanisms": "2.5-4 min",
    "first-layer": "1.5-5 min",
    "costs": "17 s-1 min",
    "architectures": "1-4.5 min",
}


# the two studies of MISSION.md's second question (memory and compute): every other study is one question
SECOND = ("templates", "flat-skipping")


def list_heading() -> str:
    """What `downpour study list` prints above its lines, its Q numbers from ABOUT (the README and docs/studies.md
    number the studies so: test_studies_command_line holds the README's line to it)."""
    numbers = sorted(number for number, _ in ABOUT.values())
    first, second = (question_number(name) for name in SECOND)
    return (f"The mission's six questions as seven studies, Q{numbers[0]}-Q{numbers[-1]} of the README and "
            f"docs/studies.md ({first} and {second} split the second):")


def listing() -> str:
    """One line per study: its name, question number and topic (the question's words before its colon)."""
    lines = [f"  {name:<14} {_number(name)}{topic(name).lower()}" for name in STUDIES]
    return "studies (`downpour study NAME --help`: its question, conditions, seeds and time):\n" + "\n".join(lines)


def topic(name: str) -> str:
    """"Local optima": the words of the study's question before its colon ("" for a study without a line in
    QUESTIONS)."""
    return QUESTIONS.get(name, "").split(":")[0]


def question_number(name: str) -> str:
    """"Q1": the study's number in docs/studies.md and the README ("" for a study registered without a line in
    ABOUT)."""
    return f"Q{ABOUT[name][0]}" if name in ABOUT else ""


def _number(name: str) -> str:
    """"Q1 " (nothing for a study registered without a line in ABOUT)."""
    return f"{question_number(name)} " if name in ABOUT else ""


def describe(name: str) -> str:
    """The paragraph of one study (a ConfigError naming the nearest study for an unknown name)."""
    cls = design_class(name)
    wall = ABOUT[name][1] if name in ABOUT else "not measured"
    full, quick = cls().conditions(), cls(quick=True).conditions()
    names = textwrap.fill(", ".join(c.name for c in full), width=100, initial_indent="    ", subsequent_indent="    ")
    return "\n".join([
        f"downpour study {name}" + (f": Q{ABOUT[name][0]} of docs/studies.md" if name in ABOUT else ""),
        *textwrap.wrap(cls.question, width=104, initial_indent="  ", subsequent_indent="  "),
        f"conditions: {len(full)} ({len(quick)} with --quick), each run on the same paired seeds:",
        names,
        f"seeds: {cls.seeds_full} per condition by default, {cls.seeds_quick} with --quick (--seeds N to change it)",
        f"time: {wall} on 2 cores at the default seeds (--jobs 2); --quick: "
        + (f"{QUICK[name]} (the longer beside other jobs)" if name in QUICK else "not measured"),
        f"results: docs/studies/history.md, section \"{_number(name)}— {name}\"; "
        f"a run's own: studies/{name}/study.html (or --out)",
    ])
