"""downpour plan of a replica split into partitions the runner's way: when it splits, the shards it lays out, the
traffic, calls and work of the replica's own process and of each partition, counted by hand."""
import dataclasses
import json

import pytest

from downpour.cli import main
from downpour.config import ConfigError
from downpour.models.registry import build
from downpour.plan import Cluster, network_of, plan_config, plan_for
from downpour.parallel import partition_model
from downpour.parallel.partition import block_banks, partition_bounds, partition_ranges
from downpour.plan.partition import grid, partition, partition_stage

pytestmark = pytest.mark.usefixtures("one_thread")


def test_partitions_split_the_untied_weights_and_pay_a_halo():
    cfg, shape = plan_config("paper")
    stage = network_of(cfg, shape).stages[0]             # 183x183 codes
    one, four = partition_stage(stage, 1), partition_stage(stage, 4)
    assert grid(4) == (2, 2) and grid(8) == (4, 2) and grid(9) == (3, 3)
    assert one["halo_floats"] == 0 and one["params"] == stage.params
    assert four["params"] == pytest.approx(stage.params * 92 * 92 / 183 ** 2)   # the largest block: ceil(183/2)^2 positions
    # input window of a 92x92 block: 91 + 18 = 109 rows, against 100 rows owned: 3 channels
    assert four["halo_floats"] >= 3 * (109 ** 2 - 100 ** 2)


def test_a_model_no_partition_count_fits_is_planned_at_the_most_partitions_that_can_be_laid_out():
    """0.05 GB: no count fits, and the fallback (512 partitions) has no layout on 1,000 machines: the plan blamed
    the shards ("use fewer partitions"), not the memory."""
    plan = plan_for("paper", cluster=Cluster(memory_gb=0.05))
    assert plan["cluster"]["partitions"] == 256 and plan["cluster"]["shards"] >= 256
    assert not plan["fits"]["partition"] and plan["fits"]["machines"]


def test_a_model_the_runner_cannot_split_is_planned_whole_and_a_mode_refuses_the_others_flags(capsys):
    assert main(["plan", "--model", "ufldl-sae", "--json"]) == 0       # it chose 512 partitions of 3,289 weights
    assert json.loads(capsys.readouterr().out)["cluster"]["partitions"] == 1
    assert main(["plan", "--model", "ufldl-sae", "--partitions", "2"]) == 2
    assert "model parallelism splits the locally connected stages of the cat network" in capsys.readouterr().err
    # (--config is the plan's too since 2026-12-02, planning what a preset trains: --out stands for a check's flag)
    for argv, named in ((["--out", "x"], "--out: not read by the plan itself"),
                        (["--check-simulated", "--model", "cat-demo", "--partitions", "4"],
                         "--model, --partitions: not read by plan --check-simulated"),
                        (["--check-run", "x", "--steps", "5"], "--steps: not read by plan --check-run")):
        assert main(["plan", *argv]) == 2
        assert named in capsys.readouterr().err


@pytest.mark.parametrize("sets", [(), ("model.tile=100",), ('model.first_layer="gabor"',), ("model.tile=2",),
                                  ('model.decoder="untied"',)])
def test_the_plan_splits_a_cat_network_exactly_when_the_runner_does(sets):
    """The runner itself is the reference: partition_model on the built network (tile 100 is >= the codes grid,
    so untied, and split; a frozen Gabor first layer is split too)."""
    cfg, shape = plan_config("cat-demo", sets)
    try:
        partition_model(build(cfg, shape)[0], 2)
        runner = ""
    except ValueError as err:
        runner = str(err)
    uncut = network_of(cfg, shape).uncut
    assert bool(uncut) == bool(runner) and uncut in runner
    assert (plan_for("cat-demo", sets, Cluster(machines=16))["cluster"]["partitions"] == 1) if runner else \
        plan_for("cat-demo", sets, Cluster(machines=16, partitions=2))["cluster"]["partitions"] == 2


@pytest.mark.parametrize("sets", [(), ("model.tile=2",), ("model.tile=16",), ("model.tile=16", 'model.first_layer="gabor"'),
                                  ('model.decoder="untied"',), ("model.tile=2", 'model.decoder="untied"'),
                                  ("model.tile=16", 'model.decoder="untied"')])
def test_the_plan_lays_out_the_shards_the_runner_takes_for_a_split_network(sets):
    """The fewest shards K partitions run on, the runner's (partition_bounds on the built network) the reference:
    K for untied filters; 1 where every stage is tiled (the main job's tile 2: the partitions own nothing, the
    replica pushes the shared banks), which the plan refused as fewer shards than partitions; K + 1 at tile 16
    (stage 1's banks shared, stage 2 untied and split), where the plan laid out K shards the runner refuses; K again
    when those banks are a frozen Gabor layer's (no shard holds them)."""
    cfg, shape = plan_config("cat-demo", sets)
    model = partition_model(build(cfg, shape)[0], 2)
    for shards in (1, 2, 3):
        try:
            partition_bounds(partition_ranges(model), shards)
            runner = ""
        except ValueError as err:
            runner = str(err)
        try:
            plan = plan_for("cat-demo", sets, Cluster(machines=16, partitions=2, shards=shards))
            assert plan["cluster"]["shards"] == shards
            planned = ""
        except ConfigError as err:
            planned = str(err)
        assert bool(planned) == bool(runner), (shards, planned, runner)
        assert "the model-parallel runner refuses it" in planned if planned else True
    chosen = plan_for("cat-demo", sets, Cluster(machines=6, partitions=2))["cluster"]   # shards left unset
    partition_bounds(partition_ranges(model), chosen["shards"])                        # the runner takes them


@pytest.mark.parametrize("sets", [("model.tile=2",), ("model.tile=16",), ("model.tile=16", 'model.first_layer="gabor"'),
                                  ("model.tile=2", 'train.schedule="greedy"'), ("model.tile=16", 'train.schedule="greedy"'),
                                  (), ('model.decoder="untied"',), ("model.tile=16", 'model.decoder="untied"'),
                                  ("model.tile=2", 'model.decoder="untied"', 'train.schedule="greedy"'),
                                  ('model.first_layer="gabor"', 'model.decoder="untied"'),
                                  ("model.tile=2", 'model.first_layer="gabor"', 'model.decoder="untied"')])
def test_a_split_networks_traffic_is_what_the_runner_moves(sets):
    """Counted off the built network split in 2, the runner's way (ps/partitions_on_ray.py): each partition fetches
    and pushes its own untied filters (partition_ranges); the replica the shared banks, once; and every call of a
    tiled stage lends each block its banks (block_banks), a trained one's gradient coming back: joint, every stage
    trained; greedy, stage i's step runs the stages below it forward only. Until 2026-12-05 the plan booked each
    block's banks into its partition's fetch and push (the main job's tile 2: 8.19 kB + 25.6 kB a partition where the
    partitions push nothing), and no bytes between the replica and its partitions."""
    cfg, shape = plan_config("cat-demo", sets)
    model = partition_model(build(cfg, shape)[0], 2)
    ranges = partition_ranges(model)
    sent, back, forward = [], [], []
    for stage in model.stages:
        f = stage.filter
        lent = [block_banks(f.banks, b).numel() for b in f.blocks] if f.banks is not None else [0]
        decoder = [block_banks(bk, b).numel() for bk in getattr(stage.decoder_weight, "_banks", []) for b in f.blocks]
        sent.append(sum(lent) + sum(decoder))        # an untied decoder's banks lent with the filters' (2026-12-05)
        back.append((sum(lent) if f.banks is not None and f.banks.requires_grad else 0) + sum(decoder))
        forward.append(sum(lent))                    # forward only, nothing decoded: the filters' alone (2026-12-05)
    steps = ([sum(sent) + sum(back)] if cfg.train.schedule != "greedy" else
             [sum(forward[:i]) + sent[i] + back[i] for i in range(len(sent))])
    plan = plan_for("cat-demo", sets, Cluster(machines=16, partitions=2, shards=3))
    assert plan["push_bytes_partition"] == 4 * max(b - a for a, b in ranges[:-1])
    assert plan["push_bytes_shared"] == 4 * (ranges[-1][1] - ranges[-1][0])
    assert plan["push_bytes_replica"] == 4 * ranges[-1][1]
    assert plan["lend_bytes_replica"] == pytest.approx(4 * sum(steps) / len(steps))
    assert (plan["lend_bytes_replica"] > 0) == any(sent)
    # each call's windows and code blocks, to and from the replica over the runner's own blocks (RemoteFilter): a trained
    # stage sends the window, gets codes and the window's reconstruction, sends both gradients; forward only, greedy's
    # stages below the trained one, the window and its codes; a frozen stage trained at its cost, no gradients, unless
    # its untied decoder trains (a frozen Gabor layer's: the replica sends the reconstruction's gradient,
    # RemoteFilter.anchor, and not the codes', which the frozen encoder would drop: since 2026-12-05)
    trained, forward = [], []
    for stage in model.stages:
        f = stage.filter
        win = [f.in_channels * (b.in_rows.stop - b.in_rows.start) * (b.in_cols.stop - b.in_cols.start) for b in f.blocks]
        codes = [f.maps * (b.rows.stop - b.rows.start) * (b.cols.stop - b.cols.start) for b in f.blocks]
        learns = f.trainable or stage.decoder_weight is not None
        trained.append(sum(2 * w + c + w * learns + c * f.trainable for w, c in zip(win, codes)))
        forward.append(sum(w + c for w, c in zip(win, codes)))
    steps = ([sum(trained)] if cfg.train.schedule != "greedy" else
             [sum(forward[:i]) + trained[i] for i in range(len(trained))])
    assert plan["partition"]["window_bytes_replica"] == pytest.approx(4 * sum(steps) / len(steps))
    assert plan["partition"]["halo_bytes"] == 0      # the runner's partitions exchange nothing among themselves


def test_a_split_replicas_calls_go_through_its_own_process_counted_by_hand():
    """The main job (cat-demo, tile 2, greedy, batch 32) split in 2 (2x1 blocks): stage 1 (1x32x32 in, 8x8 fields,
    25x25 codes) cuts codes rows 0-12 and 12-25, windows rows 0-19 and 12-32; stage 2 (8x12x12 in, 5x5, 8x8 codes)
    rows 0-4 and 4-8, windows 8 rows each. Per example, a trained stage 3 windows + 2 code blocks, forward only a window
    + a code block: stage 1 trained 3·608 + 2·2,400 = 6,624 and 3·640 + 2·2,600 = 7,120, forward 3,008 and 3,240;
    stage 2 trained 3·768 + 2·256 = 2,816, forward 1,024, each block. Greedy: stage 1's step, then stage 1 forward +
    stage 2's. The largest partition: (7,120 + 3,240 + 2,816) / 2 = 6,588 floats; the replica's link (13,744 + 6,248 +
    5,632) / 2 = 12,812. Until 2026-12-05 the plan counted DistBelief's halo between the partitions, 2,976 B per
    example, and nothing through the replica, whose process had no machine."""
    plan = plan_for(None, (), Cluster(machines=8, partitions=2), config="main-pooled")
    part = plan["partition"]
    assert (part["window_bytes"], part["window_bytes_replica"], part["halo_bytes"]) == (4 * 6588, 4 * 12812, 0)
    assert part["window_by_stage"] == [4 * 13744, 4 * (6248 + 5632)]
    bw = 1e9 / 8
    assert plan["times_s"]["windows"] == pytest.approx(32 * 4 * 12812 / bw)
    assert plan["cycle_bounds_s"]["replica link"] == pytest.approx(
        (part["shared_bytes"] + 32 * 4 * 12812 + part["lend_bytes_replica"]) / bw)
    assert plan["cluster"]["replica_machines"] == plan["cluster"]["replicas"]
    # the paper's network is planned as DistBelief's pipeline: halos between partitions, no replica's process
    paper = plan_for("paper", (), Cluster(machines=1000, partitions=16))
    assert paper["partition"]["halo_bytes"] > 0 and paper["partition"]["window_bytes_replica"] == 0
    assert paper["cluster"]["replica_machines"] == 0 and "replica link" not in paper["cycle_bounds_s"]


def test_a_split_partition_holds_only_its_blocks_filter_work_counted_by_hand():
    """The main job split in 2 (blocks above; batch 32, greedy, tile 2, tied decoder): a partition actor keeps from a
    trained call to its backward its input window, its codes block and the window's reconstruction, stage 1's largest
    640 + 2,600 + 640 = 3,880 floats per example, stage 2's 768 + 256 + 768 = 1,792; pooling, LCN and the cost run in
    the replica's process. Its copies: the lent banks expanded to its block, saved once (the tied decoder uses the
    same tensor), stage 1's 8 maps x 64 x 13·25 positions = 166,400 floats, stage 2's 8 x 200 x 4·8 = 51,200. Greedy:
    the larger step's, stage 1's. Until 2026-12-05 it was DistBelief's partition: the stage's activations over K with
    the pooling and LCN halos (1.02 MB), the replica's copies over K (1.33 MB) and its block's share of the buffers."""
    plan = plan_for(None, (), Cluster(machines=8, partitions=2), config="main-pooled")
    part = plan["partition"]
    assert [s["partition"]["act_bytes_batch"] for s in plan["stages"]] == [32 * 4 * 3880, 32 * 4 * 1792]
    assert (part["act_bytes"], part["copy_bytes"]) == (32 * 4 * 3880, 4 * 166400)
    assert part["state_bytes"] == 0        # the masks and LCN taps are the replica's (its block's share was counted)


def test_a_split_replicas_own_process_computes_its_pooling_lcn_and_banks_norm_in_the_step_counted_by_hand(capsys):
    """The main job split in 2 (tile 2, greedy, batch 32): the replica's process runs every stage's pooling, LCN and the
    tiled banks' normalising itself, between its partitions' calls (they compute while it waits, and it while they
    do), on the whole replica's maps. Stage 1 (codes 8x25x25 pooled 3/2 to 8x12x12, LCN 5): pooling 5,000 + 1,152·11
    = 17,672, LCN 2·(2·8·25)·144 + 6·1,152 = 122,112, the banks' norm 196 forward, 652 trained; stage 2 (8x8x8 to
    8x6x6): 3,680, 30,528, 604 and 2,012. Greedy steps, each skipping its trained stage's LCN (its output feeds
    nothing; the plan counted it until 2026-12-06: 168,994 per example, replica's process 61.8 µs): stage 1's
    2·17,672 + 652 = 35,996; stage 2's 17,672 + 122,112 + 196 below it and 2·3,680 + 2,012: their mean 92,674. The largest
    partition runs its block's products alone (stage 1 13/25 of 3.2 M, stage 2 half of 1.024 M, stage 1 forward 13/25
    of 640 k below it). Until 2026-12-05 the step counted the largest partition's share of every stage's FLOPs,
    pooling and LCN included, and nothing of the replica's process (compute 157.9 µs; then 147.6 + 19.9 µs). Of the
    92,674, all but the banks' norm ((652 + 196 + 2,012) / 2 = 1,430) is pooling and LCN, at their own rate since
    2026-12-06 (until then the layer's: 19.9 µs; now 33.7 µs at the defaults)."""
    plan = plan_for(None, (), Cluster(machines=8, partitions=2), config="main-pooled")
    part, t = plan["partition"], plan["times_s"]
    assert part["replica_flops"] == (35_996 + 17_672 + 122_112 + 196 + 2 * 3_680 + 2_012) / 2 == 92_674
    assert part["flops_train"] == pytest.approx((13 / 25 * 3_200_000 + 13 / 25 * 640_000 + 1_024_000 / 2) / 2)
    rate, pool_rate = 16 * plan["rates"]["flops_per_core"], 16 * plan["rates"]["pool_lcn_flops_per_core"]
    assert part["pool_lcn_replica_flops"] == 92_674 - 1_430
    assert t["replica_compute"] == pytest.approx(32 * (1_430 / rate + (92_674 - 1_430) / pool_rate))
    assert t["step"] == pytest.approx(t["compute"] + t["replica_compute"] + t["windows"] + t["lend"] + t["fetch"])
    assert sum(t["step_by_stage"]) / 2 == pytest.approx(t["step"])      # each greedy stage's step has its own
    # untied filters are normalised by the partitions that own them, not by the replica's process
    untied = plan_for(None, (), Cluster(machines=8, partitions=2), config="cat-untied")
    net = network_of(*plan_config(None, (), "cat-untied"))
    (one, two) = net.stages          # greedy: stage 2's step normalises stage 1's filters forward, its own trained
    assert one.norm_fwd and untied["partition"]["replica_flops"] == pytest.approx(
        net.flops_train - net.products_train - (one.norm_train + one.norm_fwd + two.norm_train) / 2)
    # one partition is the replica: its step is the whole network's, no process beside it
    whole = plan_for(None, (), Cluster(machines=8, partitions=1), config="main-pooled")
    assert whole["times_s"]["replica_compute"] == 0
    assert whole["partition"]["flops_train"] == whole["network"]["flops_train"]
    # (counted without the frozen cache; with it, less by the forwards of stage 1 it answers: test_plan_cache_hits.py)
    assert network_of(*plan_config(None, (), "main-pooled")).flops_train == 2_524_674
    assert main(["plan", "--config", "main-pooled", "--partitions", "2", "--machines", "8"]) == 0
    assert "step (batch 32): compute 147.6 µs + replica's process 33.7 µs + windows 13.1 ms + " in capsys.readouterr().out


def test_a_split_partition_counts_its_fetch_vector_and_push_beside_its_filters_and_their_gradient(capsys):
    """cat-untied split in 2 (untied filters, the partitions' own: 217,600 floats the largest's, its shards' 870.4 kB):
    its actor's LocalParams keeps a fetch vector apart from the filters (PartitionActor.flat) and the push's summed
    gradient beside the step's .grad, 2 x 870.4 kB the plan left out until 2026-12-05 (2.95 MB, where it holds 4.69
    MB). A whole replica's worker (K = 1) is another process, counted as before."""
    part = plan_for(None, (), Cluster(machines=8, partitions=2), config="cat-untied")["partition"]
    assert part["server_bytes"] == part["weight_bytes"] == 4 * 217_600
    assert part["fetch_push_bytes"] == 2 * 4 * 217_600 and part["replica_fetch_push_bytes"] == 0
    assert part["memory_bytes"] == (part["weight_bytes"] + part["grad_bytes"] + part["fetch_push_bytes"]
                                    + part["act_bytes"] + part["copy_bytes"])
    assert plan_for(None, (), Cluster(machines=8, partitions=1), config="cat-untied")["partition"]["fetch_push_bytes"] == 0
    assert main(["plan", "--config", "cat-untied", "--partitions", "2", "--machines", "8"]) == 0
    assert "gradient 870.40 kB, fetch vector and push 1.74 MB, " in capsys.readouterr().out


def test_a_split_frozen_layers_untied_decoder_is_sent_only_what_it_uses_counted_by_hand():
    """The main job's split in 2 (above) under a frozen Gabor first layer with untied decoders (tile 2: 4 banks a
    block, stage 1's of 8·1·8·8 = 512 floats, stage 2's of 8·8·5·5 = 1,600, as many decoder banks). Stage 1's step
    sends the window and its reconstruction's gradient, not its codes' (the frozen encoder drops it): 3·608 + 2,400
    = 4,224 and 3·640 + 2,600 = 4,520 a block, where it read 6,624 and 7,120; stage 2 as above. Replica (8,744 +
    6,248 + 5,632) / 2 = 10,312 floats per example, the largest (4,520 + 3,240 + 2,816) / 2 = 5,288. Lent per step and
    block: stage 1's step its 2,048 filter and 2,048 decoder floats, the decoder's gradient back (6,144); stage 2's
    step stage 1 forward only, its filters' 2,048 (no decoder: 4,096 until 2026-12-05), and stage 2's 2·6,400 out and
    back (25,600): the largest (6,144 + 27,648) / 2 = 16,896 floats, the replica's twice that."""
    plan = plan_for(None, ('model.first_layer="gabor"', 'model.decoder="untied"'), Cluster(machines=8, partitions=2),
                    config="main-pooled")
    part = plan["partition"]
    assert (part["window_bytes"], part["window_bytes_replica"]) == (4 * 5288, 4 * 10312)
    assert part["window_by_stage"] == [4 * 8744, 4 * (6248 + 5632)]
    assert (plan["lend_bytes_partition"], plan["lend_bytes_replica"]) == (4 * 16896, 4 * 2 * 16896)


def test_the_table_of_a_split_on_the_runners_way_gives_each_stages_calls_not_a_halo(capsys):
    """The main job split in 2 has no halo between its partitions (the summary says so), so its table's column gives
    each stage's trained call through the replica, the largest block's (hand counts above: 7,120 and 2,816 floats);
    until 2026-12-05 it read "halo/ex" with DistBelief's halo, 2.05 kB and 1.86 kB. The paper's split keeps its halo."""
    assert main(["plan", "--config", "main-pooled", "--partitions", "2", "--machines", "8"]) == 0
    out = capsys.readouterr().out
    header, _, one, two = out.splitlines()[3:7]
    assert "calls/ex" in header and "halo/ex" not in header and "no halo between partitions" in out
    assert one.split()[-4:-2] == ["28.48", "kB"] and two.split()[-4:-2] == ["11.26", "kB"]
    assert main(["plan", "--config", "main-pooled", "--partitions", "2", "--machines", "8", "--json"]) == 0
    stages = json.loads(capsys.readouterr().out)["stages"]
    assert [(s["partition"]["calls_bytes"], s["partition"]["halo_bytes"]) for s in stages] == [(4 * 7120, 0),
                                                                                               (4 * 2816, 0)]
    assert main(["plan", "--partitions", "16", "--machines", "1000"]) == 0
    paper = capsys.readouterr().out.splitlines()
    assert "halo/ex" in paper[4] and "calls/ex" not in paper[4]


def test_every_planned_partition_has_a_shard_of_its_own(capsys):
    """17 machines were planned as 1 replica x 9 partitions + 8 shards, a layout the model-parallel runner
    refuses (and whose staleness the plan's own formula understates: a shared shard takes R·K/S pushes)."""
    for machines in (17, 40, 100):
        assert main(["plan", "--machines", str(machines), "--json"]) == 0
        cluster = json.loads(capsys.readouterr().out)["cluster"]
        assert cluster["shards"] >= cluster["partitions"] and cluster["machines_used"] <= machines
    assert main(["plan", "--partitions", "16", "--shards", "4", "--replicas", "2"]) == 2
    assert "--shards 4 is fewer than --partitions 16: each partition needs a shard of its own" in capsys.readouterr().err


def test_a_frozen_first_layer_is_held_by_its_partition_but_not_pushed(capsys):
    plans = {}
    for kind in ("learned", "gabor"):
        argv = ["plan", "--set", f'model.first_layer="{kind}"', "--partitions", "16", "--replicas", "33", "--json"]
        assert main(argv) == 0
        plans[kind] = json.loads(capsys.readouterr().out)
    learned, gabor = plans["learned"]["partition"], plans["gabor"]["partition"]
    assert learned["frozen_bytes"] == 0 and gabor["frozen_bytes"] > 0
    assert gabor["weight_bytes"] + gabor["frozen_bytes"] == pytest.approx(learned["weight_bytes"])   # held: all of them
    assert gabor["grad_bytes"] == pytest.approx(learned["grad_bytes"] - gabor["frozen_bytes"])   # no gradient for them
    # nor a normalised copy, nor its input and pooled maps for the backward (tests/test_plan_held.py has the bytes)
    assert gabor["copy_bytes"] < learned["copy_bytes"] and gabor["act_bytes"] < learned["act_bytes"]
    assert gabor["memory_bytes"] == pytest.approx(sum(gabor[k] for k in ("weight_bytes", "frozen_bytes", "state_bytes",
                                                                         "grad_bytes", "act_bytes", "copy_bytes")))
    assert plans["gabor"]["push_bytes_partition"] == gabor["grad_bytes"] < learned["grad_bytes"]


def test_a_step_that_skips_a_stages_lcn_receives_no_lcn_halo_for_it():
    """The paper's pipeline (halos between neighbouring partitions, 4 x 4 at K = 16): a joint step skips its top
    stage's LCN, so its partitions receive no LCN halo for it: stage 3's pooled 8 x 137 x 137 in blocks of 35 x 35,
    LCN 5 reading 39 x 39. Until 2026-12-06 the plan counted it: 180.38 kB per example where a step moves 170.91 kB."""
    cfg, shape = plan_config("paper")
    net = network_of(cfg, shape, paper=True)
    as_before = dataclasses.replace(net, stages=tuple(dataclasses.replace(s, lcn_trained=True) for s in net.stages))
    halo = [partition(n, 16, 100, "adagrad")["halo_bytes"] for n in (as_before, net)]
    assert halo[0] - halo[1] == 4 * 8 * (39 * 39 - 35 * 35)
