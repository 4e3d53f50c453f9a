"""scikit-learn's ``fit`` / ``transform`` for downpour's feature learners, so they drop into a Pipeline:

    from sklearn.pipeline import Pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from downpour.learner import FeatureLearner
    pipe = Pipeline([("features", FeatureLearner("ufldl-sae", steps=300)), ("clf", LogisticRegression())])
    cross_val_score(pipe, X, y, cv=5)            # X: (N, 64) digits, or (N, C, H, W)

``model`` is a registered model name (``fit`` builds it and trains it, without labels, with the
shared training step) or an already trained :class:`FeatureModel` (``fit`` keeps it frozen when
``steps=0``, or fine-tunes a copy). ``FeatureLearner.from_run(path)`` wraps a finished run's model. ``learner.save(folder)`` /
``FeatureLearner.load(folder)`` keep a fitted learner as safetensors + JSON (:mod:`downpour.learner_save`), never a pickle.
As in scikit-learn, the constructor only stores its arguments; ``fit`` validates them and sets the
learned state (names ending in ``_``).

A top-level module, beside ``cli.py``: it trains (train/), so it does not belong in analysis/, which
reads finished run directories; it reads a layer name and a run's input processing the way analysis
does, so it sits above analysis/ too.
"""
from __future__ import annotations

import copy
import math
import numbers
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from downpour.analysis.units import check_layer
from downpour.batch import Batch
from downpour.config import TrainConfig
from downpour.data.dataset import Dataset
from downpour.errors import ConfigError
from downpour.models.base import FeatureModel
from downpour.models.cost_fit import check_cost_fits
from downpour.models.registry import create_model, model_entry, resolve_objective
from downpour.objectives import Objective
from downpour.train.setup import make_optimizer
from downpour.train.step import NonFiniteLoss, train_step

__all__ = ["FeatureLearner"]


class FeatureLearner(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Unsupervised features as a scikit-learn transformer.

    Parameters
    ----------
    model : str or FeatureModel
        A registered model name, or a model instance (trained or not).
    layer : str or None
        Feature layer ``transform`` returns (default: the model's ``analysis_layer()``, its top layer but the CNN's ``fc``).
    input_shape : tuple (C, H, W) or None
        How to read flat rows of X; default: X's own shape if 4-D, else the model's (or the
        registered variant's) input shape, else a square one-channel image, else one row of D pixels (1, 1, D).
    options : dict or None
        Config overrides for a registered model (``{"hidden": 49}``).
    objective : dict or None
        Cost terms (``{"reconstruction": 1.0, ...}``); merged over a registered model's default.
        Required to train a model instance.
    steps, batch_size, optimizer, lr, seed
        Unsupervised training in ``fit`` (``steps=0``: no training, the model is used as given).
    preprocess : callable or None
        Applied to the images (N, C, H, W) before the model, in ``fit`` and ``transform``;
        ``from_run`` sets it to the run's fitted normalisation and whitening.
    """

    def __init__(self, model: str | FeatureModel = "ufldl-sae", *, layer: str | None = None,
                 input_shape: tuple[int, ...] | None = None, options: dict[str, Any] | None = None,
                 objective: dict[str, Any] | None = None, steps: int = 200, batch_size: int = 64,
                 optimizer: str = "adagrad", lr: float = 0.05, seed: int = 0, preprocess: Any = None):
        self.model = model
        self.layer = layer
        self.input_shape = input_shape
        self.options = options
        self.objective = objective
        self.steps = steps
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.seed = seed
        self.preprocess = preprocess

    @classmethod
    def from_run(cls, path: str, layer: str | None = None) -> "FeatureLearner":
        """A frozen learner (``steps=0``) around the trained model of a run directory; raw images are
        normalised and whitened like the run's training data."""
        from downpour.analysis.options import open_run, run_preprocess   # on use: it reads the run

        run, model = open_run(path)      # (as the analysis opens it: a model with non-finite weights refused)
        return cls(model, layer=layer, steps=0, preprocess=run_preprocess(run))

    def save(self, path: str | Path, *, preprocess: bool = True) -> Path:
        """Write the fitted learner into the folder ``path`` as safetensors + JSON (no pickle): the model as a run
        directory holds it, a ``from_run`` learner's normalisation/whitening, the parameters and fitted attributes.
        A preprocess that is an arbitrary callable cannot be saved: an error, unless ``preprocess=False`` leaves it out."""
        check_is_fitted(self, "model_")
        from downpour.learner_save import save_learner   # (it imports this module)

        return save_learner(self, path, preprocess)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureLearner":
        """The fitted learner :meth:`save` wrote into ``path``, every file checked; its ``transform`` gives the saved
        learner's output bit for bit. Nothing is unpickled."""
        from downpour.learner_save import load_learner

        return load_learner(cls, path)

    # --- scikit-learn API ---------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "FeatureLearner":
        """Build (and, with ``steps > 0``, train without labels) the model on X: (N, D) or (N, C, H, W). ``y`` is ignored."""
        if not isinstance(self.steps, numbers.Integral) or isinstance(self.steps, bool) or self.steps < 0:   # numpy ints: a grid
            raise ValueError(f"FeatureLearner: steps must be an int >= 0, got {self.steps!r}")
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool):   # (numpy ints: a grid)
            raise ValueError(f"FeatureLearner: seed must be an int, got {self.seed!r}")
        if (not isinstance(self.batch_size, numbers.Integral) or isinstance(self.batch_size, bool) or self.batch_size < 1
                or not isinstance(self.lr, numbers.Real) or not self.lr > 0):    # (8.5 trained at 8; "0.1": a TypeError)
            raise ValueError(f"FeatureLearner: batch_size must be an int >= 1 and lr a number > 0, got "
                             f"{self.batch_size!r} and {self.lr!r}")
        if not isinstance(self.model, (str, FeatureModel)):   # (a dict or None: "unhashable type" or "not iterable")
            raise TypeError(f"FeatureLearner: model must be a registered name or a FeatureModel, got {self.model!r}")
        if self.objective is not None and not isinstance(self.objective, dict):   # ("l1": 'str' object has no attribute 'items')
            raise TypeError(f"FeatureLearner: objective must be a dict of cost terms ({{'reconstruction': 1.0, 'l1': 0.1}}) "
                            f"or None, got {self.objective!r}")
        if self.preprocess is not None and not callable(self.preprocess):   # (3: "'int' object is not callable")
            raise TypeError(f"FeatureLearner: preprocess must be a callable on (N, C, H, W) images or None, got {self.preprocess!r}")
        arr = _checked(X)                             # checked and converted once
        shape = self._shape_for(arr)
        x = self._prepared(arr, shape)
        with torch.random.fork_rng(devices=[]):       # seeded, without touching the caller's RNG: the init, and the
            torch.manual_seed(int(self.seed))         # training's own draws (denoising noise, contractive probes)
            model, objective = self._build(shape)
            self.layer_ = check_layer(model, self.layer)
            self.loss_curve_: list[float] = []
            if self.steps:
                if objective is None:
                    raise ValueError("FeatureLearner: training a model instance needs objective={...} (or steps=0 to use it frozen)")
                if model.supervised:              # (by name or an instance: its own error named data.source)
                    name = self.model if isinstance(self.model, str) else type(self.model).__name__
                    raise ValueError(f"FeatureLearner: {name!r} is a supervised model and fit trains without labels "
                                     "(y is ignored); use an unsupervised model, or a trained one with steps=0 "
                                     "(FeatureLearner.from_run)")
                _check_parts(model, objective, shape)
                check_cost_fits(self.model if isinstance(self.model, str) else type(self.model).__name__, model,
                                objective, shape)
                self.loss_curve_ = _train(model, objective, x, self)
        model.zero_grad(set_to_none=True)            # (the last step's gradients: kept, they doubled a pickle)
        self.model_ = model.eval()
        self.input_shape_ = shape
        self.n_features_in_ = int(np.prod(shape))
        with torch.no_grad():                         # get_feature_names_out's count (set_output in a pipeline)
            self._n_features_out = int(self.model_.features(x[:1], self.layer_).numel())
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Codes of ``layer`` for every row: (N, D) or (N, C, H, W) -> (N, units) float64."""
        check_is_fitted(self, "model_")
        arr = _checked(X)
        if arr.ndim == 2 and arr.shape[1] != self.n_features_in_:   # (images of another shape: _as_images names both)
            raise ValueError(f"X has {arr.shape[1]} features, but FeatureLearner is expecting {self.n_features_in_} "
                             "features as input")
        x = self._prepared(arr, self.input_shape_)
        with torch.no_grad():
            out = [self.model_.features(x[i:i + 512], self.layer_) for i in range(0, len(x), 512)]
        return torch.cat(out).reshape(len(x), -1).double().numpy()

    # --- helpers ------------------------------------------------------------------------------
    def _prepared(self, X: Any, shape: tuple[int, ...]) -> torch.Tensor:
        x = _as_images(X, shape)
        return self.preprocess(x).float() if self.preprocess is not None else x

    def _shape_for(self, arr: np.ndarray) -> tuple[int, ...]:
        shape = self._shape_of(arr)
        built = getattr(self.model, "input_shape", None)       # a model instance is built for one shape
        if isinstance(self.model, FeatureModel) and built is not None and tuple(built) != shape:   # (a matmul error)
            what = "X has images" if arr.ndim == 4 else "input_shape reads X's rows as images"   # (N, D): as given
            raise ValueError(f"FeatureLearner: {what} of shape {shape}, but the model takes {tuple(built)}")
        return shape

    def _shape_of(self, arr: np.ndarray) -> tuple[int, ...]:
        if self.input_shape is not None:
            given = _plain(self.input_shape)             # (an array's numbers as Python's)
            given = tuple(given) if isinstance(given, (tuple, list)) else ()
            if len(given) != 3 or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in given):
                raise ValueError(f"FeatureLearner: input_shape must be three ints > 0, (C, H, W), got {self.input_shape!r}")
        if arr.ndim == 4:
            shape = tuple(int(s) for s in arr.shape[1:])
            if self.input_shape is not None and tuple(int(s) for s in self.input_shape) != shape:
                raise ValueError(f"FeatureLearner: X has images of shape {shape}, but input_shape is {tuple(self.input_shape)}")
            if shape[0] not in (1, 3) and shape[2] in (1, 3):
                raise ValueError(f"FeatureLearner: X of shape {tuple(arr.shape)} reads as {shape[0]} channels of "
                                 f"{shape[1]}x{shape[2]}; images are (N, C, H, W): channels-last? use X.transpose(0, 3, 1, 2)")
            return shape
        if arr.ndim != 2:
            raise ValueError(f"FeatureLearner: X must be (N, D) or (N, C, H, W), got shape {tuple(arr.shape)}")
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)
        elif isinstance(self.model, FeatureModel):
            shape = tuple(getattr(self.model, "input_shape", None) or _rows(arr.shape[1]))
        else:
            shape = model_entry(self.model).input_shape
            if int(np.prod(shape)) != arr.shape[1]:
                shape = _rows(arr.shape[1])
        if int(np.prod(shape)) != arr.shape[1]:
            raise ValueError(f"FeatureLearner: X has {arr.shape[1]} columns but input_shape {shape} needs {int(np.prod(shape))}")
        return shape

    def _build(self, shape: tuple[int, ...]) -> tuple[FeatureModel, Objective | None]:
        if isinstance(self.model, str):
            try:
                model = create_model(self.model, shape, **_plain(self.options or {}))
            except ValueError as err:
                if self.input_shape is None and shape[:2] == (1, 1) and shape[2] > 1:   # _rows' one row of pixels
                    raise ConfigError(f"FeatureLearner: X's rows of {shape[2]} values, not a square, read as one row of "
                                      f"pixels {shape}, which {self.model!r} cannot take ({err}); pass "
                                      "input_shape=(C, H, W)") from None
                raise
            return model, _objective(lambda: resolve_objective(self.model, _plain(self.objective or {})))
        if self.options:                              # (a FeatureModel: fit checked the type)
            raise ValueError("FeatureLearner: options only apply to a registered model name, not a model instance")
        model = copy.deepcopy(self.model)
        return model, _objective(lambda: _plain(self.objective)) if self.objective else None


def _objective(spec: Callable[[], dict[str, Any]]) -> Objective:
    """The Objective of ``spec()``, or one ConfigError line naming the parameter and the bad term (a misspelt term
    was a KeyError, shown in quotes; a range or type a TypeError or ValueError without the word objective)."""
    try:
        return Objective.from_config(spec())
    except (TypeError, ValueError) as err:           # (a ConfigError is a ValueError)
        raise ConfigError(f"FeatureLearner: objective: {err}", key=getattr(err, "key", None)) from None


def _check_parts(model: FeatureModel, objective: Objective, shape: tuple[int, ...]) -> None:
    """Preflight's refusal of a part's own term on a part the model lacks (``"stage9/l1"``, never read), as one
    ConfigError line naming the key (:meth:`~downpour.objectives.Objective.check_model_parts`: the model and the RNG
    left as they were, so training starts as it would without the check)."""
    try:
        objective.check_model_parts(model, Batch(torch.zeros(2, *shape)))
    except ConfigError as err:
        raise ConfigError(f"FeatureLearner: {err}", key=err.key) from None


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python's (a parameter grid's ``np.int64(16)``, ``np.str_``),
    in dicts and lists too: the config checks take Python types only."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def _checked(X: Any) -> np.ndarray:
    """X as a numeric array, or scikit-learn's ValueError / TypeError: empty, NaN or infinite values,
    complex or sparse input (a NaN row was skipped batch by batch, and all-NaN data blamed the learning rate)."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    return check_array(X, allow_nd=True, dtype="numeric")


def _rows(d: int) -> tuple[int, int, int]:
    """How (N, d) rows read without input_shape: a square grey image when d is a square (64: 8x8), else one row of
    d pixels, (1, 1, d), which a model with dense first layer (an autoencoder, an RBM) takes as any vector; a model
    that needs 2-D images (a convolution) refuses it with the input_shape advice (see FeatureLearner._build)."""
    side = math.isqrt(d)
    return (1, side, side) if side * side == d else (1, 1, d)


def _as_images(X: Any, shape: tuple[int, ...]) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(X, dtype=np.float32) if not isinstance(X, torch.Tensor) else X, dtype=torch.float32)
    if x.ndim == 2:
        x = x.reshape(len(x), *shape)
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"FeatureLearner: X has images of shape {tuple(x.shape[1:])}, fitted for {tuple(shape)}")
    return x


def _train(model: FeatureModel, objective: Objective, x: torch.Tensor, p: FeatureLearner) -> list[float]:
    """Unsupervised minibatch training with the shared step and the runners' batch order; returns the
    loss of every step (a non-finite batch is skipped, as the runners do, and logged as NaN)."""
    opt = make_optimizer(TrainConfig(optimizer=_plain(p.optimizer), lr=float(p.lr)), model.parameters())
    batches = Dataset(x, None, {}).batches(int(p.batch_size), torch.Generator().manual_seed(int(p.seed)))
    losses = []
    for _ in range(p.steps):
        try:
            losses.append(train_step(model, objective, next(batches)).loss)
        except NonFiniteLoss:
            losses.append(math.nan)
            continue
        opt.step()
    if losses and all(math.isnan(v) for v in losses):
        raise ValueError(f"FeatureLearner: every one of the {p.steps} training steps had a non-finite cost or gradient; lower lr, or scale X")
    return losses
