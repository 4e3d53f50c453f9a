"""``metric/`` entries of ``Outputs.extra``: logged among the parts, detached, never in the total."""
import pytest
import torch

from downpour.batch import Outputs
from downpour.objectives import Objective, is_metric


def _outputs(scale: float) -> Outputs:
    codes = torch.full((4, 3), 0.5, requires_grad=True)
    return Outputs(x=torch.zeros(4, 3), codes=codes,
                   extra={"metric/error": (codes * scale).sum(), "free_energy_data": torch.zeros(4)})


def test_metrics_are_parts_but_not_in_the_total():
    o = _outputs(2.0)
    total, parts = Objective.from_config({"l1": 1.0})({"": o})
    assert set(parts) == {"l1", "metric/error"}
    assert parts["metric/error"].item() == pytest.approx(12.0)
    assert not parts["metric/error"].requires_grad
    assert total.item() == pytest.approx(1.5)                           # Σ|h| = 3 × 0.5 per sample: the l1 term alone
    assert total.item() == pytest.approx(sum(v.item() for k, v in parts.items() if not is_metric(k)))
    total.backward()
    assert torch.allclose(o.codes.grad, torch.full((4, 3), 0.25))       # d(mean Σ|h|)/dh = 1/B, nothing from the metric


def test_metrics_of_a_stacked_model_are_named_per_part():
    total, parts = Objective.from_config({"l1": 1.0})({"stage1": _outputs(1.0), "stage2": _outputs(3.0)})
    assert parts["stage1/metric/error"].item() == pytest.approx(6.0)
    assert parts["stage2/metric/error"].item() == pytest.approx(18.0)
    assert "free_energy_data" not in parts and "stage1/free_energy_data" not in parts
    assert total.item() == pytest.approx(parts["stage1/l1"].item() + parts["stage2/l1"].item())


def test_is_metric():
    assert is_metric("metric/x") and is_metric("stage2/metric/x")
    assert not is_metric("reconstruction") and not is_metric("stage1/kl_sparsity")
