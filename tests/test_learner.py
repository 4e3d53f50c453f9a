"""FeatureLearner: a downpour feature learner inside a scikit-learn Pipeline with cross_val_score."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from downpour.errors import ConfigError, NotARunError
from downpour.learner import FeatureLearner
from test_analysis_planted import TinyAutoencoder

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny nets between BLAS calls: a second torch thread only spins


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x[:450] / 16.0).astype(np.float32), y[:450]


def test_registered_model_trains_inside_a_pipeline(digits):
    x, y = digits
    pipe = Pipeline([("features", FeatureLearner("rica-8x8", steps=60, batch_size=64, seed=0)),
                     ("clf", LogisticRegression(max_iter=500))])
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.6            # 10 classes: chance is 0.1
    fitted = pipe.fit(x, y).named_steps["features"]
    assert fitted.input_shape_ == (1, 8, 8) and fitted.layer_ == "codes"
    assert len(fitted.loss_curve_) == 60 and fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    assert all(p.grad is None for p in fitted.model_.parameters())    # (kept, they doubled a pickle's size)


def test_model_instance_is_trained_on_a_copy_or_used_frozen(digits):
    x, _ = digits
    model = TinyAutoencoder((1, 8, 8), hidden=10)
    before = model.enc.weight.detach().clone()
    trained = FeatureLearner(model, objective={"reconstruction": 1.0}, steps=25, lr=0.1).fit(x)
    assert trained.transform(x[:7]).shape == (7, 10)
    assert trained.loss_curve_[-1] < trained.loss_curve_[0]
    assert np.array_equal(model.enc.weight.detach().numpy(), before.numpy())   # the caller's model is untouched
    frozen = FeatureLearner(model, steps=0).fit(x)
    with torch.no_grad():
        expected = model(torch.as_tensor(x[:3]).reshape(3, 1, 8, 8)).numpy()
    assert np.allclose(frozen.transform(x[:3]), expected, atol=1e-6)


def test_clone_and_errors(digits):
    x, _ = digits
    learner = FeatureLearner("rica-8x8", steps=5)
    assert clone(learner).get_params()["steps"] == 5
    with pytest.raises(NotFittedError):
        learner.transform(x)
    with pytest.raises(ValueError, match="columns"):
        FeatureLearner("rica-8x8", steps=1, input_shape=(1, 4, 4)).fit(x)
    with pytest.raises(ValueError, match="objective"):
        FeatureLearner(TinyAutoencoder((1, 8, 8)), steps=3).fit(x)
    with pytest.raises(ValueError, match="steps"):
        FeatureLearner("rica-8x8", steps=-1).fit(x)
    with pytest.raises(ValueError, match="steps"):
        FeatureLearner("rica-8x8", steps=True).fit(x)
    assert len(FeatureLearner("rica-8x8", steps=np.int64(2)).fit(x).loss_curve_) == 2   # a numpy grid's value
    fitted = FeatureLearner("rica-8x8", steps=1).fit(x)
    with pytest.raises(ValueError, match="fitted for"):
        fitted.transform(np.zeros((2, 1, 5, 5), np.float32))


def test_from_run_prepares_raw_images_like_the_run_did(tmp_path, digits):
    from downpour.config import load_config
    from downpour.train.loop import run_local
    from downpour.train.rundir import RunDir

    cfg = load_config("ufldl-sae", ["train.steps=5", "data.samples=500", "train.tensorboard=false"])  # ZCA + ufldl
    run = RunDir.create(tmp_path / "run", cfg)
    run_local(cfg, run)
    learner = FeatureLearner.from_run(run.path).fit(digits[0])
    x = torch.from_numpy(digits[0][:20]).reshape(20, 1, 8, 8)
    prepared = run.load_preprocess()(x)
    assert not torch.allclose(prepared, x)
    with torch.no_grad():
        expected = run.load_model().features(prepared).reshape(20, -1).double().numpy()
    np.testing.assert_allclose(learner.transform(digits[0][:20]), expected, rtol=1e-5, atol=1e-6)
    copy = clone(learner).fit(digits[0])                   # the processing survives scikit-learn's clone
    np.testing.assert_allclose(copy.transform(digits[0][:20]), expected, rtol=1e-5, atol=1e-6)
    broken = run.load_model()                              # a damaged model: refused as the analysis refuses it
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    run.save_model(broken, 5)
    with pytest.raises(NotARunError, match="holds non-finite values"):
        FeatureLearner.from_run(run.path)


def test_a_non_finite_batch_is_skipped_and_an_all_nan_fit_is_an_error(digits):
    # (poisoned with values whose cost overflows: NaN in X itself is refused up front, below)
    x = digits[0].copy()
    x[:5] = 1e20                                      # a few poisoned rows: their batches are skipped
    learner = FeatureLearner("rica-8x8", steps=20, batch_size=16, seed=0).fit(x)
    assert any(np.isnan(learner.loss_curve_)) and not all(np.isnan(learner.loss_curve_))
    assert np.isfinite(learner.transform(digits[0][:5])).all()
    with pytest.raises(ValueError, match="every one of the 5 training steps"):
        FeatureLearner("rica-8x8", steps=5, seed=0).fit(np.full_like(x, 1e20))


@pytest.mark.parametrize("bad, match", [("nan", "Input contains NaN"), ("inf", "infinity"), ("empty", "0 sample"),
                                        ("complex", "[Cc]omplex")])
def test_x_that_is_not_finite_real_data_is_refused_by_fit_and_transform(digits, bad, match):
    """A NaN row was skipped batch by batch and came out of transform as NaN; all-NaN data blamed the learning rate."""
    x = digits[0][:40].copy()
    x = {"nan": lambda: np.where(np.arange(64) == 3, np.nan, x), "inf": lambda: np.where(np.arange(64) == 3, np.inf, x),
         "empty": lambda: x[:0], "complex": lambda: x + 1j}[bad]()
    with pytest.raises(ValueError, match=match):
        FeatureLearner("rica-8x8", steps=2).fit(x)
    with pytest.raises(ValueError, match=match):
        FeatureLearner("rica-8x8", steps=2).fit(digits[0][:40]).transform(x)


def test_transform_names_a_column_count_other_than_fits():
    """A raw torch reshape error."""
    learner = FeatureLearner("rica-8x8", steps=2).fit(np.random.default_rng(0).random((40, 64)))
    with pytest.raises(ValueError, match="X has 36 features, but FeatureLearner is expecting 64 features"):
        learner.transform(np.zeros((5, 36)))


def test_a_supervised_model_or_a_cost_its_model_cannot_use_is_refused_before_training(digits):
    with pytest.raises(ValueError, match="'cnn-digits' is a supervised model and fit trains without labels"):
        FeatureLearner("cnn-digits", steps=3).fit(*digits)
    from downpour.models.registry import create_model      # an instance: the CNN's own error named data.source
    with pytest.raises(ValueError, match="'CNN' is a supervised model and fit trains without labels"):
        FeatureLearner(create_model("cnn-digits", (1, 8, 8)), steps=3, objective={"cross_entropy": 1.0}).fit(*digits)
    with pytest.raises(ValueError, match="objective.weight_l2 on model 'cat-demo'"):   # preflight's, which fit skipped
        FeatureLearner("cat-demo", steps=1, objective={"weight_l2": 1e-3}).fit(np.random.default_rng(0).random((8, 1, 32, 32)))


@pytest.mark.parametrize("kwargs", [{"batch_size": 8.5}, {"lr": "0.1"}, {"batch_size": True}])
def test_a_batch_size_or_rate_of_the_wrong_type_is_refused_by_name(kwargs):
    """8.5 trained with batches of 8, unsaid; "0.1" gave a bare TypeError from a comparison."""
    with pytest.raises(ValueError, match="batch_size must be an int >= 1 and lr a number > 0"):
        FeatureLearner("rica-8x8", steps=2, **kwargs).fit(np.random.default_rng(0).random((40, 64)))


def test_the_seed_fixes_the_trainings_own_draws_and_leaves_the_callers_rng_alone():
    # denoising draws its noise during training: that came from (and moved) the caller's RNG
    x = np.random.default_rng(0).standard_normal((200, 64)).astype(np.float32)

    def fit(global_seed):
        torch.manual_seed(global_seed)
        f = FeatureLearner("ufldl-sae", steps=20, batch_size=32, seed=3,
                           objective={"denoising": {"weight": 1.0, "noise": 0.3}})
        out = f.fit(x).transform(x[:5])
        return out, torch.rand(1)

    (a, after_a), (b, _) = fit(1), fit(2)
    assert np.array_equal(a, b)
    torch.manual_seed(1)
    assert torch.equal(after_a, torch.rand(1))


def test_a_grids_numpy_values_train_and_a_pipeline_names_its_features(digits):
    """GridSearchCV's np.arange(2) seeds, np.array(["adam", ...]) optimisers and numpy options crashed every fit
    (TypeError: an integer is required; "train.optimizer must be str"); set_output refused the learner."""
    from sklearn.model_selection import GridSearchCV

    x, y = digits
    x, y = x[:200], y[:200]
    pipe = Pipeline([("f", FeatureLearner("rica-8x8", steps=3)), ("c", LogisticRegression(max_iter=200))])
    grid = {"f__seed": np.arange(2), "f__optimizer": np.array(["adam", "sgd"]),
            "f__options": [{"hidden": np.int64(16)}]}
    search = GridSearchCV(pipe, grid, cv=2, error_score="raise").fit(x, y)
    assert len(search.cv_results_["mean_test_score"]) == 4
    plain = FeatureLearner("rica-8x8", steps=3, seed=1, optimizer="adam", options={"hidden": 16}).fit(x)
    grid_made = FeatureLearner("rica-8x8", steps=3, seed=np.int64(1), optimizer=np.str_("adam"),
                               options={"hidden": np.int64(16)}).fit(x)
    np.testing.assert_array_equal(grid_made.transform(x[:5]), plain.transform(x[:5]))
    names = plain.get_feature_names_out()
    assert len(names) == plain.transform(x[:1]).shape[1] == 16 and names[0] == "featurelearner0"
    pipe.set_output(transform="default")
    with pytest.raises(ValueError, match="seed must be an int"):
        FeatureLearner("rica-8x8", steps=1, seed=0.5).fit(x)


@pytest.mark.parametrize("shape, X, match", [
    ((16, 16), np.zeros((4, 256)), r"input_shape must be three ints > 0, \(C, H, W\), got \(16, 16\)"),   # unpacking error
    ((1, 16, 16.5), np.zeros((4, 256)), "input_shape must be three ints"),                                # read as 16
    ((1, 8, 8), np.zeros((4, 1, 16, 16)), r"images of shape \(1, 16, 16\), but input_shape is \(1, 8, 8\)"),  # ignored
    (None, np.zeros((4, 8, 8, 3)), r"reads as 8 channels of 8x3.*transpose\(0, 3, 1, 2\)"),             # 8 channels of 8x3
])
def test_an_input_shape_or_image_layout_it_cannot_mean_is_refused_by_name(shape, X, match):
    with pytest.raises(ValueError, match=match):
        FeatureLearner("tica-8x8", steps=1, input_shape=shape).fit(X.astype(np.float32))


def test_an_input_shape_given_as_numbers_of_numpy_trains():
    codes = FeatureLearner("tica-8x8", steps=1, input_shape=np.array([1, 8, 8])).fit_transform(np.zeros((4, 64), np.float32))
    assert codes.shape[0] == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"model": {"name": "rica-8x8"}}, r"model must be a registered name or a FeatureModel, got \{'name'"),  # unhashable type
    ({"model": None}, "model must be a registered name or a FeatureModel, got None"),       # 'NoneType' not iterable
    ({"model": "rica-8x8", "preprocess": 3}, "preprocess must be a callable"),               # 'int' not callable
])
def test_a_model_or_preprocess_of_the_wrong_type_is_refused_by_name(kwargs, match):
    with pytest.raises(TypeError, match=match):
        FeatureLearner(**kwargs, steps=1).fit(np.zeros((4, 64), np.float32))


def test_images_of_another_shape_than_a_model_instance_takes_are_refused_by_name():
    model = TinyAutoencoder((1, 8, 8), hidden=10)     # a linear encoder built for 64 pixels: was a matmul error
    with pytest.raises(ValueError, match=r"images of shape \(1, 10, 10\), but the model takes \(1, 8, 8\)"):
        FeatureLearner(model, steps=0).fit(np.zeros((4, 1, 10, 10), np.float32))


def test_rows_read_by_an_input_shape_the_model_instance_does_not_take_are_refused_by_name():
    """(N, D) rows with input_shape=(1, 10, 10) for a model built for (1, 8, 8) failed inside the model
    ('mat1 and mat2 shapes cannot be multiplied (1x100 and 64x10)'): the check covered (N, C, H, W) X only."""
    model = TinyAutoencoder((1, 8, 8), hidden=10)
    with pytest.raises(ValueError, match=r"input_shape reads X's rows as images of shape \(1, 10, 10\), but the model "
                                         r"takes \(1, 8, 8\)"):
        FeatureLearner(model, steps=0, input_shape=(1, 10, 10)).fit(np.zeros((4, 100), np.float32))


@pytest.mark.parametrize("objective, match", [
    ({"reconstrution": 1.0}, r"^FeatureLearner: objective: unknown cost term 'reconstrution' \(did you mean "
                             r"'reconstruction'\?\); known: reconstruction, l1, .*contrastive_divergence$"),   # a bare KeyError
    ({"kl_sparsity": {"weight": 1.0, "rhoo": 0.1}}, r"^FeatureLearner: objective: cost term 'kl_sparsity' has no "
                                                    r"parameter 'rhoo' \(did you mean 'rho'\?\); it has weight, rho$"),
    ({"kl_sparsity": {"rho": 3.0}}, r"^FeatureLearner: objective: kl_sparsity.rho must be in \(0, 1\), got 3$"),
])
def test_a_wrong_cost_term_is_one_config_error_line_naming_it_and_the_valid_ones(objective, match):
    """A misspelt term was a KeyError, which prints its message in quotes; a model instance's objective too."""
    for model in ("ufldl-sae", TinyAutoencoder((1, 8, 8), hidden=10)):
        with pytest.raises(ConfigError, match=match) as err:
            FeatureLearner(model, steps=1, objective=objective).fit(np.zeros((4, 64), np.float32))
        assert "\n" not in str(err.value)
    with pytest.raises(TypeError, match="objective must be a dict of cost terms"):   # 'str' object has no attribute 'items'
        FeatureLearner("ufldl-sae", steps=1, objective="reconstruction").fit(np.zeros((4, 64), np.float32))


@pytest.mark.parametrize("model, X, match", [
    ("ufldl-sae", np.zeros((4, 64), np.float32), "its parts: none: the model is one part"),
    (TinyAutoencoder((1, 8, 8), hidden=10), np.zeros((4, 64), np.float32), "its parts: none: the model is one part"),
    ("cat-demo", np.random.default_rng(0).random((8, 1, 32, 32)),
     r"\(did you mean 'stage2'\?\); its parts: stage1, stage2"),
])
def test_a_part_term_on_a_part_the_model_lacks_is_refused_naming_the_key(model, X, match):
    """``stage9/l1`` would never be read: trained without it, unsaid, until the learner ran preflight's check."""
    objective = {"reconstruction": 1.0, "stage9/l1": 0.1}
    with pytest.raises(ConfigError, match=r"^FeatureLearner: objective\.stage9/l1: the model has no part 'stage9'.*"
                                          + match) as err:
        FeatureLearner(model, steps=1, objective=objective).fit(X)
    assert err.value.key == "objective.stage9/l1"


def test_rows_that_are_not_a_square_read_as_one_row_of_pixels_or_are_refused_with_the_advice():
    """Rows of 3 values were refused ('cannot read 3 columns as a square image') even by a dense autoencoder, which
    takes any vector: 24 of scikit-learn's 47 estimator checks failed on it (test_learner_sklearn_checks)."""
    X = np.random.default_rng(0).random((20, 3)).astype(np.float32)
    dense = FeatureLearner("ufldl-sae", steps=2).fit(X)
    assert dense.input_shape_ == (1, 1, 3) and dense.transform(X).shape == (20, 25)
    assert FeatureLearner("ufldl-sae", steps=0).fit(np.zeros((4, 49), np.float32)).input_shape_ == (1, 7, 7)   # a square
    with pytest.raises(ConfigError, match=r"X's rows of 3 values, not a square, read as one row of pixels \(1, 1, 3\), "
                                          r"which 'rica-local' cannot take \(model.kernel_size = 6 .*\); pass input_shape"):
        FeatureLearner("rica-local", steps=1).fit(X)
