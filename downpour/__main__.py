"""``python -m downpour ...``: the ``downpour`` command."""
import sys

from downpour.cli import command

sys.exit(command())
