"""Mode 'auto' of the variance gate: gate only where it pays for its test, judged by what calls took.

The cost model (:mod:`~downpour.layers._gate_cost`) is measured once, on the first batch of a layer
shape, in a tight loop. What a call costs later can differ by several times: on our VM the same
512x512 convolution (a 32.6 MB output) took 17-19 ms in some benchmark processes and 66-78 ms in
others, and the row-band path's prediction for a face in a flat canvas was a third too fast. A
verdict taken from the model alone went wrong both ways (the plain layer where gating saved 37%,
row bands where they took 37% longer than the plain layer). So the policy keeps, per input shape,
the best ratio of observed to predicted time for each side, the plain layer and gating (the test
plus its path), tries each side once where a gating path is a candidate at all, and decides with
the predictions scaled by those ratios:

    gating pays  <=>  k_gate (t_test + t_path(mask)) < MARGIN k_plain t_dense

Where it does not, the plain layer runs and the next calls of that shape run it untested: 1, then 2,
4, ... ``STREAK`` calls between two tests while they agree; a call that gates ends the streak.
Times are observed on the CPU only (a GPU call returns before its kernels finish): on a GPU the
verdict is the model's. The best ratio never rises: the plain side, observed on every call of a
streak, then keeps a lower best than gating, observed only where it runs, and a close call goes
to the plain layer, which is what the mode promises. (A best allowed to rise 5% per observation
followed every noisy plain call up and chose row bands for `padded` at 0.92 of the layer.)
"""
from __future__ import annotations

from downpour.layers._gate_cost import MARGIN, CostModel

STREAK = 32   # most untested plain-layer calls between two tests of a shape where gating did not pay


class AutoPolicy:
    """One gate's memory of one input shape (a new shape starts afresh)."""

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, shape: tuple[int, ...] | None) -> None:
        self.shape = shape
        self.left = self.length = 0            # untested calls left in the streak, and its length
        self.open: float | None = None         # the open fraction the last test found
        self.ratio: dict[str, float] = {}      # 'plain' / 'gate': best observed / predicted time
        self.predicted: dict[str, float] = {}  # the model's time of each side, for the last verdict's mask
        self.timed = False                     # calls run on the CPU, so their wall time means something
        self.exploring = False                 # this call gates only to see what gating takes now

    def untested(self, shape: tuple[int, ...]) -> bool:
        """Whether this call is one of the streak's (the plain layer, no test); counts it."""
        if shape != self.shape or self.left <= 0:
            return False
        self.left -= 1
        return True

    def verdict(self, shape: tuple[int, ...], model: CostModel, path: str, path_cost: float, timed: bool) -> str:
        """'ungated' or ``path`` (the exact choice: 'gated', 'bands' or 'dense', whose predicted time
        without the test is ``path_cost``) for a tested call. ``timed``: calls are observed (CPU)."""
        if shape != self.shape:
            self._reset(shape)
        self.predicted = {"plain": model.t_dense, "gate": model.t_test + path_cost}
        self.timed, self.exploring = timed, False
        if path == "dense":
            return "ungated"                   # the plain layer, without zeroing after it
        pays = self.predicted["gate"] < MARGIN * model.t_dense
        if not timed:
            return path if pays else "ungated"
        if "gate" not in self.ratio or ("plain" in self.ratio and pays and not self._pays()):
            # never tried, or the model says it pays and what the calls took says not: try it (again;
            # once per test, so at most once per streak, and the best ratio is kept)
            self.exploring = "gate" in self.ratio
            return path
        if "plain" not in self.ratio:
            return "ungated"
        return path if self._pays() else "ungated"

    def _pays(self) -> bool:
        scaled = {side: self.ratio[side] * self.predicted[side] for side in ("gate", "plain")}
        return scaled["gate"] < MARGIN * scaled["plain"]

    def observe(self, side: str, seconds: float) -> None:
        """A call of ``side`` ('plain' or 'gate': the test and its path) took ``seconds``."""
        predicted = self.predicted.get(side, 0.0)
        if self.timed and predicted > 0:
            ratio = seconds / predicted
            self.ratio[side] = min(ratio, self.ratio.get(side, ratio))

    def tested(self, shape: tuple[int, ...], ungated: bool, open_fraction: float | None) -> None:
        """After a tested call: start or lengthen the streak where it ran the plain layer, else end it
        (a retry of gating keeps the streak's length: the next test comes as late as it would have)."""
        if shape != self.shape:
            self._reset(shape)
        self.open = open_fraction
        if self.exploring:
            self.left, self.exploring = self.length, False
        elif ungated:
            self.length = min(STREAK, max(1, 2 * self.length))
            self.left = self.length
        else:
            self.left = self.length = 0
