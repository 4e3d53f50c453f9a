"""The small Sandblaster run the tests vary (tests/test_sandblaster_*.py): RICA with 16 codes on 300 whitened 8x8
patches on the simulator (``_cfg``), a planted convergence (:data:`PLANTED`), and an independent reference: Nocedal &
Wright's L-BFGS on one process, on the whole batch (``_full_batch``, ``_reference_lbfgs``)."""
from downpour.batch import Batch
from downpour.config import load_config
from downpour.models.registry import build
from downpour.ps.setup import set_up_cluster
from downpour.sandblaster.stop import Stop
from downpour.train.flat import ParamLayout
from downpour.train.step import train_step


# RICA (linear codes, tied decoder, pooled L2 sparsity: a non-convex cost that is a mean over
# examples) with 16 codes on 300 whitened 8x8 patches
SMALL = ["cluster.runner=simulated", "cluster.algorithm=sandblaster", "model.name=rica-8x8", "model.hidden=16",
         "data.samples=300", "train.tensorboard=false"]


PLANTED = Stop("gradient", "converged (planted by the test)")


def _cfg(*overrides):
    return load_config("tica-8x8", [*SMALL, *overrides])


# -- an independent reference: Nocedal & Wright's L-BFGS on one process, on the whole batch --------
def _full_batch(cfg):
    """f(w), grad f(w) on every example at once, float64, with the run's initial w."""
    setup = set_up_cluster(cfg)
    model, objective = build(cfg, setup.data.input_shape)
    model.double()
    layout = ParamLayout(model)
    x = setup.data.x.double()

    def fg(w, rows=slice(None)):
        layout.vector_to_params(w, model)
        step = train_step(model, objective, Batch(x[rows]))
        return step.loss, layout.grads_to_vector(model).clone()

    return fg, setup.layout.params_to_vector(setup.model).double(), setup


def _reference_lbfgs(fg, w, iterations, m, c1=1e-4, batch=None):
    """Two-loop recursion with H0 = (s.y / y.y) I; backtracking from t = 1 (first iteration:
    min(1, 1/|g|)) by the safeguarded quadratic step in [0.1 t, 0.5 t]; pairs kept when s.y > eps (-g.s), L-BFGS-B's test.
    ``batch(k)``: iteration k's examples (f and g re-evaluated at w on them first); None: all, always."""
    rows = slice(None)
    f, g = fg(w)
    S, Y, losses = [], [], []
    for k in range(iterations):
        if batch is not None:
            rows = batch(k)
            f, g = fg(w, rows)
        q, alphas = g.clone(), []
        for s, y in reversed(list(zip(S, Y))):
            a = s.dot(q) / y.dot(s)
            q -= a * y
            alphas.append(a)
        if S:
            q *= S[-1].dot(Y[-1]) / Y[-1].dot(Y[-1])
        for (s, y), a in zip(zip(S, Y), reversed(alphas)):
            b = y.dot(q) / y.dot(s)
            q += (a - b) * s
        d = -q
        gd = float(g.dot(d))
        assert gd < 0
        t = 1.0 if S else min(1.0, 1.0 / float(g.norm()))
        for _ in range(10):
            f_new, g_new = fg(w + t * d, rows)
            if f_new - f <= c1 * t * gd:      # (f + c1 t gd would round to f near the minimum)
                break
            t = min(max(-gd * t * t / (2 * (f_new - f - gd * t)), 0.1 * t), 0.5 * t)
        else:
            raise AssertionError("the reference's line search failed")
        s, y = t * d, g_new - g
        if s.dot(y) > 2.220446049250313e-16 * float(-g.dot(s)):
            S, Y = (S + [s])[-m:], (Y + [y])[-m:]
        w, f, g = w + t * d, f_new, g_new
        losses.append(f)
    return w, losses
