"""downpour plan's cluster model: each process's memory beside the model's, the machines a layout takes, too few
machines said with the fewest that fit, the counts chosen where only some are given."""
import json

import pytest

from downpour.cli import main
from downpour.config import ConfigError
from downpour.plan import Cluster, plan_for
from downpour.plan.one_machine import PROCESS_BYTES
from downpour.plan.partition import partition

pytestmark = pytest.mark.usefixtures("one_thread")

# a process's own memory in GB (Python, torch, Ray's worker), which every process needs on its machine beside
# what it holds of the model: the small machines below are that and a few MB
OWN_GB = PROCESS_BYTES / 1e9


def test_a_split_replicas_own_process_memory_is_counted_and_checked_by_hand(capsys):
    """The same split's replica's process holds the shared banks (2,048 + 6,400 floats) and their gradient (the
    optimiser's state is the shards'), the model's buffers (masks 32·32 and 12·12, LCN taps 5 + 5: 1,178 floats), what
    the whole replica's maps keep but for the input its partitions keep (stage 1 14,352 − 1,024 = 13,328 floats per
    example, stage 2 3,904 − 1,152 = 2,752; greedy: the larger) and a step's windows and codes to and from its
    partitions (stage 1's step 13,744, stage 2's 6,248 + 5,632 = 11,880 floats per example: the larger), and its
    LocalParams of the banks: the fetch vector and the push's summed gradient (8,448 floats each). It was not
    counted until 2026-12-05: a machine of 2 MB fits the partitions (1.23 MB) but not the replica's 3.61 MB."""
    plan = plan_for(None, (), Cluster(machines=8, partitions=2, memory_gb=OWN_GB + 0.002), config="main-pooled")
    part = plan["partition"]
    assert (part["replica_weight_bytes"], part["replica_grad_bytes"], part["replica_state_bytes"]) == (
        4 * 8448, 4 * 8448, 4 * 1178)
    assert (part["replica_act_bytes"], part["replica_calls_bytes"]) == (32 * 4 * 13328, 32 * 4 * 13744)
    assert part["replica_fetch_push_bytes"] == 4 * 2 * 8448
    assert part["replica_memory_bytes"] == 4 * (4 * 8448 + 1178 + 32 * 13328 + 32 * 13744) == 3_605_096
    assert plan["fits"]["partition"] and not plan["fits"]["replica"]
    assert main(["plan", "--config", "main-pooled", "--partitions", "2", "--machines", "8", "--memory", f"{OWN_GB + 0.002:g}"]
                ) == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("memory of each replica's process"))
    assert line.startswith("memory of each replica's process: 3.61 MB (shared banks 33.79 kB") and \
        line.endswith("** does not fit **")
    # chosen, a count whose replica's process does not fit is not taken: at 3 MB none fits (each replica's holds the
    # whole replica's maps, whatever K), where 2 partitions were taken; at 4 MB 2 are
    assert not plan_for(None, (), Cluster(machines=40, memory_gb=OWN_GB + 0.003), config="main-pooled")["fits"]["replica"]
    four = plan_for(None, (), Cluster(machines=40, memory_gb=OWN_GB + 0.004), config="main-pooled")
    assert four["cluster"]["partitions"] == 2
    # one partition runs no such process, and the paper's pipeline has none
    whole = plan_for(None, (), Cluster(machines=8, partitions=1), config="main-pooled")
    assert whole["partition"]["replica_memory_bytes"] == 0
    assert plan_for("paper", (), Cluster(machines=1000, partitions=16))["partition"]["replica_memory_bytes"] == 0


def test_each_machines_process_needs_its_own_memory_beside_the_models(capsys):
    """A partition of cat-demo holds 76.70 MB of the model, but its process holds Python, torch and Ray's worker too:
    on 2 nodes of a Ray cluster (2026-12-07, 2 workers, 2 shards) the worker actors' RSS peaked at 360 MB and the
    shards' at 310 MB, where a shard holds 33.79 kB of the model. Until 2026-12-07 a plan of many machines compared the
    model's share alone with --memory, so machines of 0.1 GB "fit"; the one-machine plan counted each process's own."""
    argv = ["plan", "--config", "cat-demo", "--machines", "4", "--replicas", "2", "--shards", "2", "--partitions", "1"]
    small = plan_for(None, (), Cluster(machines=4, replicas=2, shards=2, partitions=1, memory_gb=0.1),
                     config="cat-demo")
    assert small["partition"]["memory_bytes"] < 0.1e9 and not small["fits"]["partition"]
    assert small["shard_bytes"] < 0.1e9 and not small["fits"]["shard"]
    assert main([*argv, "--memory", "0.1"]) == 1
    out = capsys.readouterr().out
    assert out.count("** does not fit **") == 2 and "each process's own ~262.14 MB (Python, torch, Ray's worker)" in out
    fitting = plan_for(None, (), Cluster(machines=4, replicas=2, shards=2, partitions=1,
                                         memory_gb=(small["partition"]["memory_bytes"] + PROCESS_BYTES) / 1e9),
                       config="cat-demo")
    assert fitting["fits"]["partition"] and fitting["fits"]["shard"]
    assert main([*argv, "--memory", "0.4"]) == 0


def test_where_no_partition_count_fits_the_plan_takes_the_one_whose_largest_process_needs_least(capsys):
    """The main job on 40 machines of 3 MB: no count fits (each replica's process holds the whole replica's maps, and
    its windows and codes grow with K). The plan took the most partitions that can be laid out, 36, whose replica's
    process needs 6.34 MB, where 2 partitions' needs 3.61 MB (a partition's 1.23 MB); it takes 2 now, and says why."""
    plan = plan_for(None, (), Cluster(machines=40, memory_gb=OWN_GB + 0.003), config="main-pooled")
    assert plan["cluster"]["partitions"] == 2 and plan["memory_fallback"]
    assert plan["partition"]["replica_memory_bytes"] == 3_605_096 and not plan["fits"]["replica"]
    assert not plan_for(None, (), Cluster(machines=40, memory_gb=OWN_GB + 0.004), config="main-pooled")["memory_fallback"]
    assert not plan_for(None, (), Cluster(machines=40, partitions=36, memory_gb=OWN_GB + 0.003),
                        config="main-pooled")["memory_fallback"]
    assert main(["plan", "--config", "main-pooled", "--machines", "40", "--memory", f"{OWN_GB + 0.003:g}"]) == 1   # no fit
    assert ("no partition count that can be laid out fits a machine's 0.265144 GB: planned 2 partitions, whose largest "
            "process (a partition, or each replica's own) needs the least") in capsys.readouterr().out


def test_where_no_partition_count_fits_the_plan_takes_one_the_machines_lay_out_and_says_what_it_needs(capsys):
    """The main job on 3 machines of 0.1 MB: nothing fits (2 partitions need 3.61 MB for each replica's process, one
    76.70 MB). The fallback took the count that needs the least of those with shards enough, 2, which needs 4 machines,
    and was refused "give --machines 4", where 4 would not fit it either; it takes one that the 3 machines lay out, 1
    partition, and says what it needs against the machine's memory. Where a count fits the memory but not the
    machines (0.004 GB: 2 partitions' 3.61 MB), the sum is still refused: more machines would fit it."""
    plan = plan_for(None, (), Cluster(machines=3, memory_gb=0.0001), config="main-pooled")
    assert plan["memory_fallback"] and plan["cluster"]["partitions"] == 1 and plan["cluster"]["machines_used"] == 3
    assert main(["plan", "--config", "main-pooled", "--machines", "3", "--memory", "0.0001"]) == 1
    assert ("no partition count that can be laid out fits a machine's 0.0001 GB: planned 1 partition, the count whose "
            "partitions need the least: 76.70 MB a partition, each process with its own ~262.14 MB, against 0.0001 GB "
            "a machine (--memory)") in capsys.readouterr().out       # the flag named beside its value
    assert main(["plan", "--config", "main-pooled", "--machines", "40", "--memory", f"{OWN_GB + 0.003:g}"]) == 1
    assert ("needs the least: each replica's process 3.61 MB, a partition 1.23 MB, each process with its own "
            "~262.14 MB, against 0.265144 GB a machine" in capsys.readouterr().out)
    assert main(["plan", "--config", "main-pooled", "--machines", "3", "--memory", f"{OWN_GB + 0.004:g}"]) == 2
    assert "2 partitions (the fewest that fit a machine's memory)" in capsys.readouterr().err


def test_too_few_machines_for_the_workers_is_said_as_arithmetic_with_its_fix(capsys):
    """--replicas 7 --partitions 3 --machines 10 said "add machines or shards": the cause was 7 x 3 = 21 workers on
    10 machines, and shards are machines too (3 at least, one per partition): 24 are needed, and 24 plan."""
    assert main(["plan", "--replicas", "7", "--partitions", "3", "--machines", "10"]) == 2
    err = capsys.readouterr().err
    assert "--replicas 7 x --partitions 3 = 21 worker machines, plus 3 shards" in err
    assert "= 24 machines; give --machines 24 or more, or fewer replicas or partitions" in err
    assert "add machines or shards" not in err
    assert main(["plan", "--partitions", "8", "--machines", "10"]) == 2      # replicas unset: 1 at least
    assert "1 replica (the fewest) x --partitions 8 = 8 worker machines, plus 8 shards" in capsys.readouterr().err
    for machines, rc in ((23, 2), (24, 0)):
        assert main(["plan", "--replicas", "7", "--partitions", "3", "--machines", str(machines), "--json"]) == rc
    assert json.loads(capsys.readouterr().out)["cluster"]["machines_used"] == 24


def test_each_split_replicas_own_process_is_a_machine_of_the_layout(capsys):
    """The Ray runner starts, for K >= 2, each replica's worker actor beside its K partition actors
    (ps/starting_on_ray.py: R + R·K + S actors); the plan gave it no machine: --replicas 3 --partitions 2 --shards 2 read 3 x 2 + 2 = 8
    machines, where 3 x 2 + 3 + 2 = 11 are used. With K = 1 that process is the partition: 3 + 2."""
    for k, used in ((2, 11), (1, 5)):
        assert main(["plan", "--config", "main-pooled", "--replicas", "3", "--partitions", str(k), "--shards", "2",
                     "--machines", str(used), "--json"]) == 0
        cluster = json.loads(capsys.readouterr().out)["cluster"]
        assert (cluster["machines_used"], cluster["replica_machines"]) == (used, 3 if k > 1 else 0)
    assert main(["plan", "--config", "main-pooled", "--replicas", "3", "--partitions", "2", "--shards", "2",
                 "--machines", "10"]) == 1
    assert ("3 replicas x 2 partitions (2x1 blocks) + 3 replica machines (each replica's own process: pooling, LCN, cost, "
            "shared banks) + 2 shards = 11 machines  ** more than the cluster has **") in capsys.readouterr().out
    assert main(["plan", "--config", "main-pooled", "--partitions", "2", "--shards", "2", "--machines", "4"]) == 2
    assert ("1 replica (the fewest) x --partitions 2 = 2 worker machines, plus 1 replica machine (each replica's own "
            "process beside its partitions), plus --shards 2 = 5 machines; give --machines 5 or more") in capsys.readouterr().err
    for machines in (9, 12, 40):      # a chosen layout of 2 partitions fits the machines given, the replicas' too
        assert main(["plan", "--config", "main-pooled", "--partitions", "2", "--machines", str(machines), "--json"]) == 0
        c = json.loads(capsys.readouterr().out)["cluster"]
        assert c["replicas"] * 3 + c["shards"] == c["machines_used"] <= machines


def test_the_paper_plan_says_its_split_has_no_replica_machine_and_why(capsys):
    """--model paper split in 16 read "33 replicas x 16 partitions + 472 shards", no replica machine, where every other
    split network counts one per replica, and nothing said why: it is planned as DistBelief's pipeline (halos between
    its partitions, no replica process), not as downpour's Ray runner would split it. Its assumptions now say so, in
    --json too."""
    assert main(["plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["cluster"]["partitions"] > 1 and plan["cluster"]["replica_machines"] == 0
    said = [line for line in plan["network"]["assumptions"] if "DistBelief's pipeline" in line]
    assert len(said) == 1 and "no replica machine" in said[0] and "halos" in said[0]
    assert main(["plan", "--config", "main-pooled", "--partitions", "2", "--machines", "8", "--json"]) == 0
    assert not [line for line in json.loads(capsys.readouterr().out)["network"]["assumptions"] if "DistBelief" in line]


def test_a_chosen_layout_uses_only_the_machines_there_are(capsys):
    """--shards 990 was planned as 1 replica x 512 partitions + 990 shards = 1,502 of 1,000 machines (no replica
    fitted, read as 1, and the most partitions won), though 5 x 2 + 990 fits; --machines 1 planned 2 (since
    2026-12-06 it plans every process on the one machine: test_plan_one_machine.py)."""
    for shards in (990, 999):
        assert main(["plan", "--shards", str(shards), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["cluster"]["machines_used"] <= 1000
    assert main(["plan", "--machines", "2", "--shards", "2"]) == 2
    assert ("--machines 2 is too few: 1 replica (the fewest) x 1 partition (the fewest) = 1 worker machine, plus "
            "--shards 2 = 3 machines; give --machines 3 or more, or fewer shards") in capsys.readouterr().err


@pytest.mark.parametrize("given, need", [([], 2), (["--replicas", "3"], 4), (["--shards", "5"], 6)])
def test_too_few_machines_for_any_layout_names_the_fewest_that_fit(capsys, given, need):
    """--machines 1 said "no layout fits" with no count: then the sum of the smallest layout, and that count plans
    where one fewer is refused alike (since 2026-12-06 one machine plans every process on it: not refused)."""
    for machines in range(2, need):
        assert main(["plan", "--machines", str(machines), *given]) == 2
        assert f"= {need} machines; give --machines {need} or more" in capsys.readouterr().err
    assert main(["plan", "--machines", str(need), *given, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cluster"]["machines_used"] == need


def test_too_few_machines_where_no_partition_count_fits_the_memory_names_the_fewest_that_plan(capsys):
    """Where no partition count fits a machine's memory and none lays out on the machines given, the refusal sums the
    smallest layout: 1 partition and --shards 4 on 5 machines, which plan it (the fallback takes a count the machines
    given lay out). It summed the count that needs the least (4 partitions, the paper's shrinking with K: "give
    --machines 8 or more") where 5 machines already plan; the main job on 2 machines with --shards 2 was told "give
    --machines 5" (2 partitions, a replica machine and the shards) where 3 plan. Fewer shards lay out 1 partition on
    fewer machines, so they are offered."""
    assert main(["plan", "--machines", "4", "--shards", "4", "--memory", "0.0001"]) == 2
    err = capsys.readouterr().err
    assert "1 replica (the fewest) x 1 partition (the fewest) = 1 worker machine, plus --shards 4 = 5 machines" in err
    assert err.rstrip().endswith("give --machines 5 or more, or fewer shards")
    assert main(["plan", "--machines", "5", "--shards", "4", "--memory", "0.0001"]) == 1      # the fewest: no fit
    assert main(["plan", "--config", "main-pooled", "--machines", "2", "--shards", "2", "--memory", "0.0001"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("= 3 machines; give --machines 3 or more, or fewer shards")
    assert main(["plan", "--config", "main-pooled", "--machines", "3", "--shards", "2", "--memory", "0.0001"]) == 1


def test_too_few_machines_offers_fewer_shards_only_above_one_per_partition(capsys):
    """--partitions 2 --shards 2 on 3 machines: fewer shards than partitions are refused, so "or fewer partitions or
    shards" offered one that cannot help; --shards 3 can go to 2."""
    assert main(["plan", "--machines", "3", "--partitions", "2", "--shards", "2"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("give --machines 4 or more, or fewer partitions")
    assert main(["plan", "--machines", "4", "--partitions", "2", "--shards", "3"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("give --machines 5 or more, or fewer partitions or shards")


def test_a_greedy_replica_on_one_machine_counts_its_frozen_stages_cache(capsys):
    """A greedy cat step takes the frozen stages' output from a per-row cache of up to 64 MiB in the replica's process
    (models/frozen.py); the plan left it out of the memory (until 2026-12-05). Not where the replica is cut into
    partitions (remote: the cache is dropped there), nor in a joint run (nothing is frozen)."""
    from downpour.models.frozen import CACHE_BYTES

    def partition(*sets: str, cut: tuple[str, ...] = ()) -> dict:
        argv = ["plan", "--config", "cat-demo", "--machines", "4", "--cores", "2", *cut]
        assert main(argv + [a for s in sets for a in ("--set", s)] + ["--json"]) == 0
        return json.loads(capsys.readouterr().out)["partition"]

    greedy = partition()
    assert greedy["frozen_cache_bytes"] == CACHE_BYTES
    assert greedy["memory_bytes"] == pytest.approx(sum(greedy[k] for k in (
        "weight_bytes", "frozen_bytes", "state_bytes", "grad_bytes", "act_bytes", "copy_bytes", "frozen_cache_bytes")))
    assert partition('train.schedule="joint"')["frozen_cache_bytes"] == 0
    cut = partition("model.tile=0", cut=("--partitions", "2", "--replicas", "1", "--shards", "2", "--machines", "5"))
    assert cut["frozen_cache_bytes"] == 0 and partition("model.tile=0")["frozen_cache_bytes"] == CACHE_BYTES
    assert main(["plan", "--config", "cat-demo", "--machines", "4", "--cores", "2"]) == 0
    assert "the frozen stages' cache at most 67.11 MB)" in capsys.readouterr().out


def test_with_only_shards_or_replicas_given_the_other_counts_are_chosen():
    """--shards 10 filled the machines with replicas (110 x 9 + 10, staleness 110) though the 10 shards' links bound
    the rate, so 2 replicas gave the same samples/s (staleness 2): the fewest replicas within 5% are chosen."""
    chosen = plan_for("paper", cluster=Cluster(shards=10))
    crowded = plan_for("paper", cluster=Cluster(shards=10, replicas=110, partitions=9))
    assert chosen["cluster"]["shards"] == 10 and chosen["cluster"]["replicas"] <= 2
    assert chosen["samples_per_s"] >= 0.95 * crowded["samples_per_s"] and chosen["staleness"] < 5
    # its partitions chosen, its shards the fewest within 1% of the machines left's samples/s (idle.py)
    given = plan_for("paper", cluster=Cluster(replicas=2))
    left = plan_for("paper", cluster=Cluster(replicas=2, partitions=given["cluster"]["partitions"],
                                             shards=1000 - 2 * given["cluster"]["partitions"]))
    assert given["cluster"]["replicas"] == 2 and given["cluster"]["machines_used"] < 1000
    assert given["samples_per_s"] >= 0.99 * left["samples_per_s"]
    assert given["cluster"]["partitions"] > 1


def test_a_cluster_too_large_to_search_is_refused_unless_its_replicas_are_given(capsys):
    """--machines 99999999999999999999 tried every replica count from 1 up, silently, for ever (10^7: a minute)."""
    with pytest.raises(ConfigError, match="--machines 100000000000000000000: the plan tries every replica count"):
        Cluster(machines=10 ** 20)
    assert main(["plan", "--machines", str(10 ** 20)]) == 2
    assert "give --replicas too, or --machines 100000 or fewer" in capsys.readouterr().err
    assert plan_for("paper", cluster=Cluster(machines=10 ** 20, replicas=2))["cluster"]["replicas"] == 2


def test_the_cluster_line_counts_one_of_each_in_the_singular(capsys):
    """It printed '1 replicas x 1 partitions ... + 1 shards' and '1 cores'."""
    assert main(["plan", "--config", "tica-8x8", "--machines", "2", "--cores", "1", "--replicas", "1"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cluster: "))
    assert "2 machines x 1 core," in line and "; 1 replica x 1 partition (1x1 blocks) + 1 shard = 2 machines" in line
