"""``downpour plan``: what a network costs on a cluster, before renting one (docs/plan.md).

    plan = plan_for("paper", cluster=Cluster(machines=1000, cores=16))   # the paper's network
    print(format_plan(plan))
    print(format_check(check_simulated(workers=1000, shards=100)))     # staleness: predicted vs measured

The run config a plan reads (:mod:`~downpour.plan.run_config`), the network it is made for
(:mod:`~downpour.plan.network`: its stages, :mod:`~downpour.plan.stage`; the cat
family on paper, :mod:`~downpour.plan.cat_formulas` and :mod:`~downpour.plan.held`; any other model's training step
as torch counts it, :mod:`~downpour.plan.counted`), the staleness of asynchronous replicas
(:mod:`~downpour.plan.staleness`), a partition's share (:mod:`~downpour.plan.partition`), the cluster
(:mod:`~downpour.plan.cluster`), a layout's step time (:mod:`~downpour.plan.timing`; a split replica's own process, as
the Ray runner runs it, :mod:`~downpour.plan.hub`), the layout chosen (:mod:`~downpour.plan.predict`),
this machine's speeds (:mod:`~downpour.plan.calibrate`: :func:`~downpour.plan.calibrate.measure_rates`) and the
simulated check (:mod:`~downpour.plan.check`) are one file each; no name here is one of theirs, so that
``downpour.plan.calibrate`` is the module (tests/test_imports.py).
"""
from downpour.plan.assemble import make_plan, plan_for
from downpour.plan.calibrate import DEFAULT_RATES, Rates, measure_rates
from downpour.plan.check import check_simulated, compare_run, passed
from downpour.plan.network import Network, Stage, cat_footprint, network_of
from downpour.plan.cluster import Cluster
from downpour.plan.report import format_check, format_plan
from downpour.plan.run_config import PAPER, PAPER_INPUT, plan_config
from downpour.plan.staleness import StalenessPrediction, predict_staleness, steady_staleness

__all__ = ["DEFAULT_RATES", "Rates", "measure_rates", "check_simulated", "compare_run", "passed", "PAPER",
           "PAPER_INPUT", "Network", "Stage", "cat_footprint", "network_of", "plan_config", "Cluster", "format_check",
           "format_plan", "make_plan", "plan_for", "StalenessPrediction", "predict_staleness", "steady_staleness"]
