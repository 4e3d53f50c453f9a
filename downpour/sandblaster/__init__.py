"""Sandblaster L-BFGS (Dean et al. 2012): batch L-BFGS whose work is cut into small units handed to
free workers (with backup copies near the end of a batch) and whose vectors live on the parameter
shards. ``cluster.algorithm = "sandblaster"``; see docs/sandblaster.md.

Ray is imported only by :mod:`downpour.sandblaster.on_ray`, and only when the Ray runner asks for it.
"""
from downpour.sandblaster.history import HistoryShard
from downpour.sandblaster.lbfgs import Coordinator, Evaluation, LocalShards
from downpour.sandblaster.run import run_sandblaster
from downpour.sandblaster.stop import Stop
from downpour.sandblaster.units import Unit, UnitCounts, UnitScheduler, split_units
from downpour.sandblaster.worker import UnitResult, UnitWorker

__all__ = ["HistoryShard", "Coordinator", "Evaluation", "LocalShards", "Stop", "Unit", "UnitCounts", "UnitScheduler",
           "split_units", "UnitResult", "UnitWorker", "run_sandblaster"]

