"""A worker's channel to its driver (downpour.ps.channel): grants in order, whole reports, stop."""
import os
import threading

import pytest

from downpour.ps import channel, shm

if not shm.available():
    pytest.skip("no writable /dev/shm", allow_module_level=True)


@pytest.fixture
def ends(tmp_path):
    driver = channel.DriverEnd(tmp_path / "w0")
    worker = channel.WorkerEnd(driver.go, driver.done)
    yield driver, worker
    worker.close()
    driver.close()


def test_grants_arrive_in_order_with_their_first_step_and_stop_ends_them(ends):
    driver, worker = ends
    driver.grant(3, 0)
    driver.grant(1, 750)
    driver.stop()
    assert [worker.next_grant() for _ in range(3)] == [(3, 0), (1, 750), (channel.STOP, 0)]


def test_reports_come_back_whole_in_order_and_only_once(ends):
    driver, worker = ends
    assert driver.reports() == [] and channel.wait([driver], 0.0) == []      # nothing yet: no blocking
    metas = [{"seq": i, "base": [i, i], "loss": 0.5 * i, "parts": {"rec": float("nan")}, "inbox": [True, True]}
             for i in range(3)]
    for m in metas:
        worker.report(m)
    assert channel.wait([driver], 1.0) == [driver]
    got = driver.reports()
    assert [m["seq"] for m in got] == [0, 1, 2] and got[1]["base"] == [1, 1] and got[2]["loss"] == 1.0
    assert driver.reports() == []


def test_a_report_larger_than_a_pipe_read_is_reassembled(ends):
    driver, worker = ends
    big = {"seq": 7, "parts": {f"term{i}": float(i) for i in range(8000)}}    # > 64 KiB of JSON
    writer = threading.Thread(target=worker.report, args=(big,))   # blocks until the driver reads
    writer.start()
    got = []
    while not got:
        channel.wait([driver], 1.0)
        got = driver.reports()
    writer.join()
    assert got == [big]


def test_close_removes_the_pipes(tmp_path):
    driver = channel.DriverEnd(tmp_path / "w1")
    assert driver.go.exists() and driver.done.exists()
    driver.close()
    driver.close()
    assert not driver.go.exists() and not driver.done.exists() and not os.listdir(tmp_path)


def test_a_report_written_in_parts_arrives_whole(ends, monkeypatch):
    """A write to a pipe can return after part of a frame (a signal between its parts); the rest
    was dropped, and the driver read a torn frame."""
    driver, worker = ends
    real_write = os.write
    monkeypatch.setattr(channel.os, "write", lambda fd, data: real_write(fd, bytes(data[:5])))
    worker.report({"seq": 7, "base": [3, 4], "loss": 0.25})
    monkeypatch.undo()
    assert channel.wait([driver], 1.0) == [driver]
    assert driver.reports() == [{"seq": 7, "base": [3, 4], "loss": 0.25}]


def test_a_report_after_the_driver_closed_its_end_says_so_and_raises_nothing(ends):
    """The driver closes its ends on a stop (``RayCluster.close``) while a worker may be mid-cycle: the worker's
    report then meets a pipe with no reader: the report says the driver is gone (False) and the serve task ends (a
    BrokenPipeError would fail the serve task, which Ray prints, never read, as an "Unhandled error" traceback)."""
    driver, worker = ends
    driver.grant(1, 0)
    assert worker.next_grant() == (1, 0)
    assert worker.report({"seq": 0}) is True
    driver.close()
    assert worker.report({"seq": 1}) is False
