"""The staleness study's design: its conditions and seeds (the study itself, and what its conditions are:
:mod:`downpour.studies.staleness`)."""
from __future__ import annotations

from typing import Any

from downpour.studies import QUESTIONS
from downpour.studies.designs import Condition, Design

HORIZON = 300.0         # lr × updates, the same for every learning rate and condition
LRS = (0.125, 0.25, 0.5)
EDGE_KINDS = ("sync", "delay2", "async4")   # at the largest rate, past most delays' stability limit
WORKERS = 4
SAE_LR = 0.02           # Adam on the server, for the sparse autoencoder


class StalenessDesign(Design):
    name = "staleness"
    question = QUESTIONS["staleness"]
    seeds_full = 160
    seeds_quick = 4
    quick_what = "a short run per cell"

    def _lrs(self) -> tuple[float, ...]:
        return (0.125,) if self.quick else LRS

    def _middle(self) -> float:
        """The rate of the controls and of the width and data axes: the smallest, where every delay is stable."""
        return self._lrs()[0]

    def _steps(self, lr: float) -> int:
        return round((HORIZON / 2 if self.quick else HORIZON) / lr)

    def _delays(self) -> tuple[int, ...]:
        return (4,) if self.quick else (2, 4, 8)

    def _kinds(self, lr: float) -> list[str]:
        """The staleness conditions run at rate ``lr`` (the phase diagram's columns that are filled)."""
        kinds = ["sync", *(f"delay{t}" for t in self._delays()), *([] if self.quick else ["random4"]), "async4"]
        return list(EDGE_KINDS) if (not self.quick and lr == max(self._lrs())) else kinds

    @staticmethod
    def averaged(group: str, staleness: str) -> int:
        """How many gradients a round of a condition averages into one update, at that many times the rate (the
        linear scaling rule): the worker-data arms' sync4 (the sparse autoencoder's keeps Adam's rate); else 1."""
        return WORKERS if group == "data" and staleness.endswith(", sync") else 1

    def conditions(self) -> list[Condition]:
        out: list[Condition] = []

        def add(name: str, lr: float, staleness: str, vs: str, sets: list[tuple[str, Any]], *, width: int = 8,
                data: str = "iid", control: str = "", group: str = "phase") -> None:
            # a synchronous round averages ``averaged`` gradients into one update: it runs at averaged × the
            # rate (the linear scaling rule), so every condition has the same examples and the same lr × updates
            averaged = self.averaged(group, staleness)
            params = {"lr": lr * averaged, "staleness": staleness, "width": width, "data": data, "control": control,
                      "vs": vs}
            base = [("train.lr", lr * averaged), ("train.steps", self._steps(lr)), ("model.width", width),
                    ("data.split", data)]
            out.append(Condition(name, params, tuple(base + sets), group))

        one = [("cluster.workers", 1)]
        four = [("cluster.workers", WORKERS), ("cluster.delay", "constant:0")]
        for lr in self._lrs():
            p = f"lr{lr:g}/"
            kinds = self._kinds(lr)
            add(p + "sync", lr, "none", "", one + [("cluster.delay", "constant:0")])
            for t in self._delays():
                if f"delay{t}" in kinds:
                    add(p + f"delay{t}", lr, f"constant:{t}", p + "sync", one + [("cluster.delay", f"constant:{t}")])
            if "random4" in kinds:
                add(p + "random4", lr, "exponential:4", p + "sync", one + [("cluster.delay", "exponential:4")])
            add(p + "async4", lr, f"{WORKERS} workers", p + "sync", four)
        lr = self._middle()
        p = f"lr{lr:g}/"
        add(p + "noise", lr, "none", p + "async4", one + [("cluster.delay", "constant:0")],
            control="noise", group="control")
        add(p + "momentum", lr, "none", p + "async4", one + [("cluster.delay", "constant:0")],
            control="momentum", group="control")
        add("wide/" + p + "sync", lr, "none", "", one + [("cluster.delay", "constant:0")], width=16, group="width")
        add("wide/" + p + "async4", lr, f"{WORKERS} workers", "wide/" + p + "sync", four, width=16, group="width")
        add("het/" + p + "sync4", lr, f"{WORKERS} workers, sync", "", four + [("cluster.consistency", "sync")],
            data="by-label", group="data")
        add("het/" + p + "async4", lr, f"{WORKERS} workers", "het/" + p + "sync4", four, data="by-label", group="data")
        add("iid/" + p + "sync4", lr, f"{WORKERS} workers, sync", "", four + [("cluster.consistency", "sync")],
            group="data")
        add("iid/" + p + "async4", lr, f"{WORKERS} workers", "iid/" + p + "sync4", four, group="data")
        # the real objective: serial Adam (one worker, no delay) makes as many server updates as async4 does,
        # without staleness; sync4 averages four gradients into each update (a quarter of the updates)
        for kind, vs, workers, consistency, delay in (("serial", "", 1, "async", "constant:0"),
                                                      ("async4", "sae/serial", WORKERS, "async", "constant:1"),
                                                      ("sync4", "sae/serial", WORKERS, "sync", "constant:1")):
            staleness = "none" if workers == 1 else f"{workers} workers" + (", sync" if consistency == "sync" else "")
            out.append(Condition("sae/" + kind, {"lr": SAE_LR, "staleness": staleness, "control": "", "vs": vs},
                                 self._sae_sets(workers, consistency, delay), "sae"))
        return out

    def _sae_sets(self, workers: int, consistency: str, delay: str) -> tuple[tuple[str, Any], ...]:
        return (("model.name", "ufldl-sae"), ("data.source", "natural"), ("data.size", 8), ("data.mode", "patches"),
                ("data.samples", 10000), ("data.whiten", "zca"), ("data.zca_eps", 0.1), ("data.normalize", "ufldl"),
                ("data.split", "iid"), ("train.batch_size", 100), ("train.lr", SAE_LR),
                ("train.steps", 200 if self.quick else 800), ("cluster.rule", "adam"), ("cluster.workers", workers),
                ("cluster.shards", 2), ("cluster.delay", delay), ("cluster.consistency", consistency))
