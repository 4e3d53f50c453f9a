"""The teacher–student task: a two-layer ReLU network learning another one, a landscape with known
spurious minima and a checkable global optimum (Safran & Shamir 2018).

The student is f(x) = Σ_i relu(w_i · x) with ``width`` units and unit output weights; the teacher
is the same with ``teacher_width`` orthonormal rows v_j = e_j (fixed, a buffer, so every replica
and every worker holds the same one). Inputs are x ~ N(0, I_d) (``data.source = "gaussian"``).
The student reaches zero loss exactly when its units cover the teacher's (any permutation; an
over-parametrised student may also split a teacher unit between several of its own), and gradient
descent from random starts often stalls at a spurious local minimum instead when
``width == teacher_width`` ≳ 6 — which is what the staleness study needs: does asynchrony help
escape those minima?

:meth:`TeacherStudent.population_loss` is the exact ½E[(f_student − f_teacher)²] over the input
distribution (the arc-cosine kernel of degree 1), so success is measured without sampling noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downpour.batch import Batch, Outputs
from downpour.models.base import FeatureModel
from downpour.models.registry import register_model
from downpour.settings import Section, setting


@dataclass
class TeacherStudentConfig(Section):
    section: ClassVar[str] = "model"
    width: int = setting(8, within="[1, inf)")            # the student's hidden units
    teacher_width: int = setting(8, within="[1, inf)")    # the teacher's hidden units (orthonormal rows; <= input dimension)
    init_scale: float = setting(0.0, within="[0, inf)")   # student rows ~ N(0, s²/d) · ...; 0 = s = 1 (Xavier-like)


def relu_kernel(a: Tensor, b: Tensor) -> Tensor:
    """E[relu(a_i·x) relu(b_j·x)] over x ~ N(0, I): (m, d), (n, d) -> (m, n)
    = ‖a_i‖‖b_j‖ (sin θ + (π − θ) cos θ) / 2π, θ the angle between a_i and b_j."""
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    outer = na * nb.t()
    cos = ((a @ b.t()) / outer.clamp_min(1e-30)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    return outer * (torch.sin(theta) + (math.pi - theta) * cos) / (2 * math.pi)


class TeacherStudent(FeatureModel):
    """``forward(x)`` returns the student's hidden activations (B, width); its output is their sum."""

    config_class = TeacherStudentConfig

    def __init__(self, config: TeacherStudentConfig, input_shape: tuple[int, ...]):
        super().__init__()
        self.config = config
        self.input_shape = tuple(input_shape)
        d = math.prod(self.input_shape)
        if config.teacher_width > d:
            raise ValueError(f"model.teacher_width = {config.teacher_width} needs inputs of dimension >= it, "
                             f"these have {d} (data.size)")
        scale = (config.init_scale or 1.0) / math.sqrt(d)
        self.weight = nn.Parameter(torch.randn(config.width, d) * scale)          # (width, d)
        self.register_buffer("teacher", torch.eye(d)[: config.teacher_width])    # (teacher_width, d)

    def tensor_layouts(self) -> dict[str, str]:
        """Each tensor's axes and use in words (model.safetensors' metadata), its shape words first."""
        d, shape = self.weight.shape[1], list(self.input_shape)
        return {"weight": (f"(student units {self.config.width}, inputs {d}: a {shape} sample x flattened row-major): "
                           "unit i's input weights; codes = relu(x @ weight.T), the student's output their sum "
                           "(output weights 1)"),
                "teacher": (f"(teacher units {self.config.teacher_width}, inputs {d}): the fixed teacher, rows "
                            "e_0, e_1, ... of the identity; target = sum over units of relu(x @ teacher.T), "
                            "x ~ N(0, I)")}

    def _flat(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(F.linear(self._flat(x), self.weight))

    def target(self, x: Tensor) -> Tensor:
        """The teacher's output (B, 1)."""
        return F.relu(F.linear(self._flat(x), self.teacher)).sum(dim=1, keepdim=True)

    def forward_train(self, batch: Batch) -> dict[str, Outputs]:
        h = self(batch.x)
        return {"": Outputs(x=self.target(batch.x), codes=h, recon=h.sum(dim=1, keepdim=True), weights=(self.weight,))}

    @torch.no_grad()
    def population_loss(self) -> float:
        """½E[(f_student(x) − f_teacher(x))²] over x ~ N(0, I), exactly (0 at a global optimum)."""
        w, v = self.weight.double(), self.teacher.double()
        total = relu_kernel(w, w).sum() - 2 * relu_kernel(w, v).sum() + relu_kernel(v, v).sum()
        return float(0.5 * total.clamp_min(0.0))


register_model("teacher-student", TeacherStudent, input_shape=(1, 1, 8), objective={"reconstruction": 1.0},
               description="2-layer ReLU student of an orthonormal teacher (spurious minima; exact population loss)")
