"""`downpour train --address HOST:PORT --dry-run` asks whether a Ray head answers there, as the run's join does
before Ray is asked, and refuses what the run would refuse in the same line. Reading only the address's form,
`--address 127.0.0.1:PORT` where nobody listens would pass it ("config checked"), and the run then refuse it."""
import socket

import pytest

from downpour.cli import main

TINY = ["train", "--config", "ufldl-sae", "--steps", "4", "--set", "train.tensorboard=false", "--dry-run"]


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


def test_a_dry_run_refuses_an_address_where_nobody_answers(tmp_path, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    assert main([*TINY, "--address", address, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at cluster.address={address!r}" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_dry_run_refuses_an_address_where_a_web_server_answers(capsys, web_server):
    assert main([*TINY, "--address", web_server]) == 2
    assert (f"cannot join the Ray cluster at cluster.address={web_server!r}: something answers there, but it is not "
            "a Ray head") in capsys.readouterr().err


def test_a_dry_run_says_a_head_answers_and_not_that_it_joined(capsys, gcs_like):
    assert main([*TINY, "--address", gcs_like]) == 0
    err = capsys.readouterr().err
    assert f"a Ray head answers at cluster.address={gcs_like!r} (reached, not joined" in err
    assert "config checked" in err



@pytest.mark.parametrize("address", ["head:70000", "127.0.0.1:0", "ray://head:99999"])
def test_an_address_whose_port_is_out_of_range_says_so(capsys, address):
    """`--address 127.0.0.1:99999` is told its port is out of range, not only "is not a Ray address: HOST:PORT, ...",
    which it has the form of."""
    assert main([*TINY, "--address", address]) == 2
    port = int(address.rpartition(":")[2])
    assert f"cluster.address={address!r} is not a Ray address" in (err := capsys.readouterr().err)
    assert f"(its port, {port}, is outside 1-65535)" in err
