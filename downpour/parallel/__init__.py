"""Model parallelism (DistBelief's other axis): each replica's locally connected stages split into
K spatial blocks of output positions, each block's untied filters (and untied decoder weights) owned by
one partition, a tiled stage's banks shared by them all (their gradients summed before a push).

    model = partition_model(create_model("cat-demo"), 4)     # same outputs, gradients, steps
    full = merge_model(model)                                 # back to the plain CatNet (to save it)

See docs/parameter-server.md (## Model parallelism).
"""
from downpour.parallel.blocks import Block, grid_shape, split_blocks
from downpour.parallel.partition import BlockDecoder, PartitionedFilter, cut_refusal, merge_model, partition_model

__all__ = ["Block", "BlockDecoder", "PartitionedFilter", "cut_refusal", "grid_shape", "merge_model", "partition_model",
           "split_blocks"]
