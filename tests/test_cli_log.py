"""The command's log lines in the form of its own lines (downpour/cli_log.py)."""
import logging
import subprocess
import sys

import pytest

from downpour.cli_log import CliFormatter


def record(name, level, message):
    return logging.getLogger(name).makeRecord(name, level, __file__, 1, message, (), None)


@pytest.mark.parametrize("name, level, said", [
    ("downpour.twins", logging.INFO, "downpour: training the no-faces twin"),
    ("downpour", logging.INFO, "downpour: training the no-faces twin"),
    ("downpour.ps.connect_on_ray", logging.WARNING, "downpour: warning: training the no-faces twin"),
    ("downpourish", logging.INFO, "downpourish: training the no-faces twin"),      # not ours: its own name
    ("ray.worker", logging.ERROR, "ray.worker: error: training the no-faces twin"),
])
def test_a_record_reads_as_the_commands_own_lines_do(name, level, said):
    """Not "INFO downpour.twins: ..." between the command's "downpour: ..." lines."""
    assert CliFormatter().format(record(name, level, "training the no-faces twin")) == said


def test_verbose_names_every_records_logger():
    said = CliFormatter(names=True).format(record("downpour.twins", logging.DEBUG, "kept"))
    assert said == "downpour.twins: debug: kept"


def test_the_commands_process_prints_a_modules_info_line_as_downpour():
    """Through configure_logging, as `downpour` sets it up (a fresh process: pytest holds the root's handlers)."""
    code = ("import logging; from downpour.cli_log import configure_logging; configure_logging(); "
            "twins = logging.getLogger('downpour.twins'); twins.info('twin kept'); twins.debug('hidden')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == "downpour: twin kept\n"


def test_verbose_says_downpours_debug_lines_but_not_other_libraries():
    """PIL's PngImagePlugin wrote a "debug: STREAM b'IHDR' 16 13" line for every chunk of every image read."""
    code = ("import logging; from downpour.cli_log import configure_logging; configure_logging(verbose=True); "
            "logging.getLogger('downpour.twins').debug('kept'); png = logging.getLogger('PIL.PngImagePlugin'); "
            "png.debug('chunk'); png.info('read')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr == "downpour.twins: debug: kept\nPIL.PngImagePlugin: read\n"
