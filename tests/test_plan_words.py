"""What ``downpour plan`` says, in the words and units the rest of downpour uses (the 2026-12-06 audit)."""
import re

import pytest

from downpour.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _text(capsys, argv):
    main(argv)
    return capsys.readouterr().out


def test_the_plan_says_samples_per_second_as_train_does(capsys):
    """`downpour train` logs "2546 samples/s"; the plan said "4.73k examples/s" of the same thing."""
    text = _text(capsys, ["plan", "--config", "cat-demo", "--machines", "3"])
    assert "examples/s" not in text and re.search(r"^predicted: [\d.]+k? samples/s;", text, re.M)
    assert main(["plan", "--config", "cat-demo", "--machines", "3", "--json"]) == 0
    assert '"samples_per_s"' in capsys.readouterr().out


@pytest.mark.parametrize("patches", [False, True])
def test_every_quantity_is_value_space_unit_in_decimal_units_said_once(tmp_path, capsys, patches):
    """It read "9.73GB" beside "5.44 s", and 10**6 patches past the frozen cache's "64 MiB" among MB and GB."""
    config = tmp_path / "many.toml"
    config.write_text('base = "cat-demo"\n[data]\nsource = "natural"\nmode = "patches"\nsamples = 1000000\n')
    text = _text(capsys, ["plan", "--config", str(config) if patches else "cat-demo", "--machines", "3"])
    assert not re.search(r"\d[kMGT]?(B|FLOP)\b", text)
    assert "MiB" not in text and "KiB" not in text
    assert not patches or "are past the frozen cache's 67.1 MB" in text
    assert text.count("decimal units") == 1 and "17.00 GFLOP/s per core" in text


@pytest.mark.parametrize("flag", ["--cores", "--machines", "--replicas"])
def test_a_whole_number_flag_given_a_fraction_says_what_it_takes(capsys, flag):
    """--cores 1.5 got argparse's bare "invalid int value: '1.5'"."""
    with pytest.raises(SystemExit) as done:
        main(["plan", flag, "1.5"])
    assert done.value.code == 2
    assert f"argument {flag}: takes a whole number; '1.5' is not one" in capsys.readouterr().err


def test_a_whole_number_flag_reads_1e3_as_set_does(capsys):
    assert main(["plan", "--config", "cat-demo", "--machines", "1e3", "--json"]) == 0
    assert '"machines": 1000,' in capsys.readouterr().out


def test_a_split_train_refused_names_the_partitions_flag_typed(tmp_path, capsys):
    """`train --partitions 1000` was told "(cluster.partitions = 1000; as rows x columns ...)", a key never typed."""
    argv = ["train", "--config", "cat-demo", "--runner", "simulated", "--partitions", "1000", "--steps", "2",
            "--out", str(tmp_path / "run"), "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: --partitions 1000: cannot split a 25x25 output grid into 1000 blocks" in err
    assert "cluster.partitions" not in err


def test_a_plan_that_does_not_fit_is_printed_and_exits_1(capsys):
    """A script sweeping clusters tells a plan that cannot run (a process past a machine's memory) by its status, as
    --check-simulated's failed check: 1; refusals are 2. It exited 0."""
    argv = ["plan", "--config", "main", "--partitions", "2", "--machines", "8"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--memory", "0.002"]) == 1
    assert "** does not fit **" in capsys.readouterr().out
    assert main(["plan", "--machines", "1000", "--replicas", "7", "--partitions", "3", "--machines", "10"]) == 2
