"""Filter layers of the cat network: locally connected / tiled / convolutional filtering, L2 pooling,
local contrast normalisation. See docs/layers.md."""
from downpour.layers._lc_kernels import input_gradients_only
from downpour.layers.lcn import LocalContrastNorm2d
from downpour.layers.locally_connected import LocallyConnected2d, locally_connected_reference
from downpour.layers.pooling import L2Pool2d

__all__ = ["L2Pool2d", "LocalContrastNorm2d", "LocallyConnected2d", "input_gradients_only", "locally_connected_reference"]
