"""A figure's PNG is written whole or not at all: a study's figures/*.png and a run's report figures, each drawn
over the last one, would be torn by a kill mid-save (shown broken in study.html or report.html until drawn again)."""
import os

import pytest
from PIL import Image

from downpour.analysis import canvas
from downpour.studies import figures as study_figures


def _drawn(save, path):
    fig = (study_figures.figure if save is study_figures.save else canvas.figure)(2, 2)
    fig.subplots().plot([0, 1], [1, 0])
    return save(fig, path)


@pytest.mark.parametrize("save", [study_figures.save, canvas.save], ids=["study", "run report"])
def test_a_kill_mid_save_leaves_the_figure_drawn_before_whole(monkeypatch, tmp_path, save):
    path = tmp_path / "figures" / "loss.png"
    _drawn(save, path)
    before = path.read_bytes()
    Image.open(path).verify()

    def killed(self, fp, *args, **kwargs):      # PIL's write cut after the PNG's signature, as a SIGKILL would
        if isinstance(fp, (str, os.PathLike)):
            with open(fp, "wb") as out:
                out.write(b"\x89PNG\r\n\x1a\n")
        else:
            fp.write(b"\x89PNG\r\n\x1a\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        _drawn(save, path)
    assert path.read_bytes() == before          # (the old code left the 8 bytes written: a PNG no viewer opens)
    monkeypatch.undo()
    assert _drawn(save, path) == path and path.read_bytes() == before     # drawn again: the same PNG, whole
    assert not (tmp_path / "figures" / "loss.png.tmp").exists()
