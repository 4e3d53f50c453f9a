"""What the variance gate needs of the layer it wraps: its filters as banks, and inputs it accepts."""
from __future__ import annotations

from torch import Tensor, nn


def as_bank(layer: nn.Module) -> tuple[Tensor, Tensor | None, int, int]:
    """(weight (tH, tW, M, C, k, k), bias (tH, tW, M) or None, k, stride) of a wrapped layer."""
    if isinstance(layer, nn.Conv2d):
        if (layer.groups != 1 or layer.dilation != (1, 1) or layer.padding not in ((0, 0), "valid")
                or layer.kernel_size[0] != layer.kernel_size[1] or layer.stride[0] != layer.stride[1]):
            raise ValueError(f"VarianceGate: a Conv2d must have groups=1, dilation=1, padding=0 and square "
                             f"kernel/stride, got {layer}")
        b = None if layer.bias is None else layer.bias.view(1, 1, -1)
        return layer.weight.unsqueeze(0).unsqueeze(0), b, layer.kernel_size[0], layer.stride[0]
    if hasattr(layer, "tile_shape") and hasattr(layer, "weight") and layer.weight.dim() == 6:
        return layer.effective_weight(), layer.bias, layer.kernel_size, layer.stride
    raise TypeError(f"VarianceGate wraps a LocallyConnected2d or an nn.Conv2d, got {type(layer).__name__}")


def check_input(layer: nn.Module, x: Tensor) -> None:
    """Refuse what the layer would refuse: every gated path computes from the weights' shape, and a
    tiled or untied layer's filters would otherwise wrap round on a larger image."""
    size = getattr(layer, "in_size", None)   # a LocallyConnected2d is built for one size, a Conv2d for any
    if x.dim() != 4 or x.shape[1] != layer.in_channels or (size is not None and tuple(x.shape[2:]) != tuple(size)):
        want = f"(B, {layer.in_channels}, {size[0]}, {size[1]})" if size is not None else f"(B, {layer.in_channels}, H, W)"
        raise ValueError(f"VarianceGate: the wrapped layer takes {want}, got {tuple(x.shape)}")
