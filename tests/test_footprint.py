"""Memory/compute accounting: hand counts for small layers, untied vs tiled vs tied parameter formulas."""
import pytest
import torch

from downpour.config import ConfigError
from downpour.layers import L2Pool2d, LocallyConnected2d
from downpour.models.footprint import compare_tilings, footprint_table, format_table, layer_flops
from downpour.models.registry import create_model, list_models


@pytest.mark.parametrize("tile,banks", [(None, 16), (2, 4), (1, 1)])
def test_locally_connected_hand_counts(tile, banks):
    # 6x6 input, 3x3 fields, stride 1 -> 4x4 outputs; 2 maps; C=1.
    layer = LocallyConnected2d(1, 2, 6, 3, tile=tile)
    assert layer.weight.numel() == banks * 2 * 1 * 3 * 3     # untied 16 banks, tiled 2x2, tied 1
    x = torch.rand(1, 1, 6, 6)
    # FLOPs do not depend on the tiling: 4*4 positions * 2 maps * 9 multiply-adds * 2.
    assert layer_flops(layer, x, layer(x)) == 16 * 2 * 9 * 2


def test_pool_and_conv_hand_counts():
    pool = L2Pool2d(2, stride=2)
    x = torch.rand(1, 3, 4, 4)
    # 48 squares, then per output (3*2*2 of them) 4 adds + eps + sqrt
    assert layer_flops(pool, x, pool(x)) == 48 + 12 * (4 + 2)
    conv = torch.nn.Conv2d(2, 5, 3, bias=True)
    x = torch.rand(1, 2, 7, 7)
    assert layer_flops(conv, x, conv(x)) == 5 * 5 * 5 * (2 * 2 * 9 + 1)


def test_cat_demo_table_matches_formulas():
    rows = footprint_table("cat-demo")
    by = {r["layer"]: r for r in rows}
    f1 = by["stages.0.filter"]
    # 32x32 input, 8x8 fields -> 25x25 positions, 8 maps: untied weights 25*25*8*64.
    assert f1["params"] == 25 * 25 * 8 * 64 and f1["out_shape"] == (8, 25, 25)
    assert f1["act_bytes"] == 4 * 8 * 25 * 25 and f1["flops_fwd"] == 25 * 25 * 8 * 64 * 2
    assert f1["flops_bwd"] == f1["flops_fwd"]          # first layer: weight gradient only, no input gradient
    f2 = by["stages.1.filter"]
    assert f2["flops_bwd"] == 2 * f2["flops_fwd"]      # input and weight gradients
    total = rows[-1]
    assert total["layer"] == "total" and total["params"] == sum(r["params"] for r in rows[:-1])
    # The analytic filter FLOPs agree with torch's own counter for the GEMM part.
    assert f1["flops_fwd"] + f2["flops_fwd"] <= total["torch_flops_fwd"]


def test_a_layer_that_sees_one_sample_as_several_rows_counts_them_all():
    # glimpse-rica folds its 3 glimpses (2 scales each, 12x12) into the batch before its stage: one
    # sample is 3 rows of 4x4 positions x 4 maps x (2 channels x 6x6) multiply-adds.
    by = {r["layer"]: r for r in footprint_table("glimpse-rica", (1, 32, 32))}
    stage = by["stage.filter"]
    assert stage["flops_fwd"] == 3 * 4 * 4 * 4 * (2 * 36) * 2
    assert stage["act_bytes"] == 4 * 3 * 4 * 4 * 4
    assert by["total"]["flops_fwd"] == by["total"]["torch_flops_fwd"]   # torch's counter sees every row


def test_untied_tiled_tied_parameter_counts():
    rows = {r["layer"]: r for r in compare_tilings("cat-demo", tiles=(0, 5, 1))}
    # stage 1: 8 maps of 1x8x8 filters; stage 2: 8 maps of 8x5x5; outputs 25x25 then 8x8 positions.
    # The default decoder is tied (no weights of its own); an untied one doubles the count.
    per1, per2 = 8 * 64, 8 * 8 * 25
    assert rows["untied"]["params"] == 25 * 25 * per1 + 8 * 8 * per2
    assert rows["tiled t=5"]["params"] == 25 * per1 + 25 * per2
    assert rows["tied (conv)"]["params"] == per1 + per2
    assert rows["untied"]["flops_fwd"] == rows["tied (conv)"]["flops_fwd"]  # memory differs, FLOPs do not
    free = {r["layer"]: r for r in compare_tilings("cat-demo", tiles=(0,), decoder="untied")}
    assert free["untied"]["params"] == 2 * (25 * 25 * per1 + 8 * 8 * per2)


def test_every_registered_model_is_fully_accounted():
    for entry in list_models():
        rows = footprint_table(entry.name)
        n_params = sum(p.numel() for p in create_model(entry.name).parameters())
        assert rows[-1]["params"] + rows[-1]["frozen"] == n_params, entry.name
        assert rows[-1]["flops_fwd"] > 0, entry.name
    text = format_table(footprint_table("rica-local"))
    assert "LocallyConnected2d" in text and "total" in text


@pytest.mark.parametrize("name", ["rnn-rows", "rnn-rows-faces", "cnn-digits"])
def test_the_backward_count_is_near_torchs_own_for_recurrent_layers_too(name):
    """A GRU's backward carries the hidden state's gradient through time whether or not its input needs one:
    counted as weights only, rnn-rows read 229k against torch's 401k (rnn-rows-faces 2.97M against 5.33M)."""
    total = footprint_table(name)[-1]
    assert total["flops_bwd"] == pytest.approx(total["torch_flops_bwd"], rel=0.15)


def test_model_without_tile_option_is_a_clear_error():
    with pytest.raises(ConfigError, match="no 'tile' option"):
        compare_tilings("rbm-digits")


def test_cli_models_footprint(capsys):
    from downpour.cli import main
    assert main(["models", "--footprint", "rica-local"]) == 0
    out = capsys.readouterr().out
    assert "stages" not in out and "filter" in out and "untied vs tiled vs tied" in out and "tied (conv)" in out


def test_cli_models_footprint_takes_model_options(capsys):
    from downpour.cli import main
    assert main(["models", "--footprint", "cat-demo", "--set", "model.maps=[16,16]"]) == 0
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if line.startswith("stages.0.filter"))
    assert "16x25x25" in first and "640.00k" in first          # 25*25 positions * 16 maps * 8*8 weights
    assert main(["models", "--footprint", "cat-demo", "--set", "model.mapz=[16,16]"]) == 2
    assert "did you mean 'maps'" in capsys.readouterr().err
    assert main(["models", "--footprint", "cat-demo", "--set", "train.steps=3"]) == 2


def test_costs_is_an_alias_and_an_option_the_model_refuses_is_one_line(capsys):
    from downpour.cli import main
    assert main(["models", "--costs", "rica-local"]) == 0      # the flag's old name still works
    assert "rica-local: footprint per sample" in capsys.readouterr().out
    assert main(["models", "--footprint", "cat-demo", "--set", "model.maps=[4]"]) == 2   # one stage, two kernels
    err = capsys.readouterr().err                             # (not "has 1 stages ... lengths {'kernels': 2, ...}")
    assert "model.maps = [4] gives 1 stage but model.kernels = [8, 5], model.strides = [1, 1]" in err
    assert "give every per-stage list 1 entry" in err


def test_the_footprint_command_refuses_a_model_name_override(capsys):
    """`downpour models --footprint cat-demo --set model.name=rbm` ended in a TypeError traceback."""
    from downpour.cli import main

    assert main(["models", "--footprint", "cat-demo", "--set", "model.name=rbm"]) == 2
    assert "the model is --footprint's NAME" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ufldl-sae", "cat-demo"])
@pytest.mark.parametrize("kind", ["gabor", "random"])
def test_a_frozen_first_layer_costs_no_backward_as_torch_counts(name, kind):
    """ufldl-sae's encoder matrix sits beside its decoder's (trained, unused in forward) on one module: owning a
    trainable matrix made its frozen encoder cost 3.2k backward FLOPs, where torch counted 0."""
    rows = footprint_table(name, first_layer=kind)
    first = next(r for r in rows if r["frozen"])
    assert first["frozen"] > 0 and first["flops_fwd"] > 0 and first["flops_bwd"] == 0
    if name == "ufldl-sae":        # one layer only: the whole backward is the encoder's, none
        assert rows[-1]["flops_bwd"] == rows[-1]["torch_flops_bwd"] == 0
    learned = next(r for r in footprint_table(name) if r["params"])
    assert learned["flops_bwd"] == learned["flops_fwd"]    # trained: the weight gradient, no input gradient


def test_the_footprint_of_a_preset_is_its_model_as_it_trains_beside_the_comparison(capsys):
    """`--footprint NAME` compared untied / tile 4 / tied only: the main job's tile 2 was in no row, so "what does the
    main job cost" had no answer there. Counted by hand: tile 2 is 2x2 = 4 banks; stage 1 4 banks x 8 maps x 8x8
    filters of 1 channel = 2,048, stage 2 4 x 64 x 10x10 x 8 channels = 204,800; 206,848 in all, 827,392 bytes."""
    from downpour.cli import main
    assert main(["models", "--footprint", "--config", "main"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("main (model cat-demo): footprint per sample (float32), input 1x32x32")
    first = next(line for line in out.splitlines() if line.startswith("stages.0.filter"))
    assert first.split()[3] == "2.05k"
    row = next(line for line in out.splitlines() if line.startswith("main: tiled t=2 (as configured)"))
    assert row.split()[7:10] == ["206.85k", "0", "827.39kB"]
    assert [line.split()[0] for line in out.splitlines()[-4:]] == ["main:", "untied", "tiled", "tied"]


def test_a_tile_set_on_a_model_is_the_configured_row(capsys):
    """`--set model.tile=2` changed the per-layer table, and the comparison dropped it (0 / 4 / 1 whatever was set)."""
    from downpour.cli import main
    assert main(["models", "--footprint", "cat-demo", "--set", "model.tile=2"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "(as configured)" in line)
    assert row.startswith("cat-demo: tiled t=2 (as configured)") and "8.45k" in row.split()
    assert main(["models", "--footprint", "cat-demo"]) == 0        # the registry's own: untied
    row = next(line for line in capsys.readouterr().out.splitlines() if "(as configured)" in line)
    assert row.startswith("cat-demo: untied (as configured)") and "422.40k" in row.split()


@pytest.mark.parametrize("argv, said", [
    (["models", "--footprint"], "--footprint needs a model NAME"),
    (["models", "--footprint", "cat-demo", "--config", "main"], "--footprint cat-demo and --config main: give one of"),
    (["models", "--config", "main"], "--config main needs --footprint: downpour models --footprint --config main"),
    (["models", "--set", "model.tile=2"], "needs --footprint: downpour models --footprint NAME --set model.tile=2"),
    (["models", "--footprint", "--config", "main", "--set", "model.name=rbm"],
     "model.name=rbm: the model is --footprint's NAME or the preset's (--config main: cat-demo)"),
])
def test_the_footprint_takes_a_model_or_a_preset(capsys, argv, said):
    from downpour.cli import main
    assert main(argv) == 2
    assert said in capsys.readouterr().err
