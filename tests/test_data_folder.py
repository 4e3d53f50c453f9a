"""Image folders: recursive reading, corrupt files skipped and named, empty folders, sub-folder labels."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

from downpour.config import DataConfig
from downpour.data import build_dataset
from downpour.data.folder import load_folder, read_image
from downpour.errors import DataError


def _png(path, seed, size=(20, 16), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def test_reads_recursively_png_and_jpeg_and_ignores_other_files(tmp_path):
    _png(tmp_path / "a.png", 0)
    _png(tmp_path / "sub" / "deeper" / "b.png", 1, mode="L")
    Image.fromarray(np.full((16, 20, 3), 200, np.uint8)).save(tmp_path / "c.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_folder(tmp_path, grey=True)
    assert images.names == ["a.png", "c.jpg", "sub/deeper/b.png"]
    assert all(im.shape == (1, 16, 20) and im.dtype == np.float32 for im in images.images)
    assert images.info["n_ignored"] == 1 and images.skipped == []
    colour = load_folder(tmp_path, grey=False)
    assert colour.channels == 3


def test_files_pillow_only_names_or_writes_are_ignored_not_skipped_as_corrupt(tmp_path):
    """.pdf (Pillow writes it), .h5 (a stub), .eps (needs Ghostscript) are not images to read: beside a labelled
    folder's classes they are not 'images at its top level' that refuse the run."""
    _png(tmp_path / "cat" / "a.png", 0)
    _png(tmp_path / "dog" / "b.png", 1)
    for name in ("README.pdf", "features.h5", "figure.eps"):
        (tmp_path / name).write_bytes(b"%PDF-1.4 or whatever else")
    images = load_folder(tmp_path, grey=True)
    assert images.names == ["cat/a.png", "dog/b.png"] and images.info["n_ignored"] == 3 and images.skipped == []
    labelled = build_dataset(DataConfig(source="folder", path=str(tmp_path), labels=True, mode="crops", size=8), 0)
    assert labelled.info["n_ignored"] == 3


def test_corrupt_image_is_skipped_counted_named_and_logged(tmp_path, caplog):
    for i in range(3):
        _png(tmp_path / f"ok{i}.png", i)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    good = tmp_path / "truncated.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90).save(good)
    good.write_bytes(good.read_bytes()[:200])   # cut mid-stream
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        data = build_dataset(DataConfig(source="folder", path=str(tmp_path), mode="crops", size=8), seed=0)
    assert len(data) == 3 and data.info["n_images"] == 3
    assert data.info["n_skipped"] == 2
    skipped = {entry["file"] for entry in data.info["skipped"]}
    assert skipped == {str(tmp_path / "broken.png"), str(tmp_path / "truncated.jpg")}
    assert all(entry["reason"] for entry in data.info["skipped"])
    assert json.loads(json.dumps(data.info)) == data.info
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and any("broken.png" in r.getMessage() for r in warnings)


def test_an_image_too_small_for_a_patch_is_named_by_its_path_like_an_unreadable_one(tmp_path):
    """In memory, a too-small image was recorded by its name inside the folder ('sub/small.png')."""
    for i in range(3):
        _png(tmp_path / f"ok{i}.png", i)
    _png(tmp_path / "sub" / "small.png", 9, size=(6, 5))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    data = build_dataset(DataConfig(source="folder", path=str(tmp_path), mode="patches", size=8, samples=20), seed=0)
    assert {entry["file"] for entry in data.info["skipped"]} == {str(tmp_path / "broken.png"),
                                                                str(tmp_path / "sub" / "small.png")}


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        build_dataset(DataConfig(source="folder", path=str(tmp_path)), seed=0)


def test_missing_folder_and_all_corrupt_folder_are_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope")
    (tmp_path / "x.png").write_bytes(b"garbage")
    # (it read "none of its 1 image files")
    with pytest.raises(DataError, match="its one image file could not be read"):
        load_folder(tmp_path)


def test_labels_from_sub_folders(tmp_path):
    for k in range(2):
        _png(tmp_path / "dog" / f"{k}.png", k)
    _png(tmp_path / "cat" / "nested" / "0.png", 5)
    images = load_folder(tmp_path, labels=True)
    assert images.info["classes"] == ["cat", "dog"]
    assert dict(zip(images.names, images.labels)) == {"cat/nested/0.png": 0, "dog/0.png": 1, "dog/1.png": 1}
    data = build_dataset(DataConfig(source="folder", path=str(tmp_path), labels=True, mode="crops", size=8), seed=0)
    assert sorted(data.y.tolist()) == [0, 1, 1]


def test_labels_with_images_at_the_top_level_is_an_error(tmp_path):
    _png(tmp_path / "loose.png", 0)
    _png(tmp_path / "dog" / "a.png", 1)
    with pytest.raises(DataError, match="loose.png"):
        load_folder(tmp_path, labels=True)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png", grey=True)
    assert image.shape == (1, 4, 4) and abs(float(image.mean()) - 0.5) < 1e-3


@pytest.mark.parametrize("orientation, bright", [(1, "left"), (3, "right"), (6, "top"), (8, "bottom")])
def test_an_exif_orientation_is_applied_so_the_image_is_upright(tmp_path, orientation, bright):
    """A phone's portrait JPEG is stored sideways with an Orientation tag, which the read applies."""
    pixels = np.zeros((20, 40), np.uint8)
    pixels[:, :10] = 255                               # a bright strip at the stored image's left
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "a.jpg", exif=exif, quality=100)
    x = read_image(tmp_path / "a.jpg", grey=True)[0]
    assert x.shape == ((40, 20) if orientation in (6, 8) else (20, 40))
    edges = {"left": x[:, :3], "right": x[:, -3:], "top": x[:3], "bottom": x[-3:]}
    assert {k for k, v in edges.items() if v.mean() > 0.9} == {bright}


def test_a_damaged_exif_block_costs_neither_the_image_nor_the_run(tmp_path):
    """Pillow's exif_transpose rewrites the EXIF block and raised struct.error on a damaged one (3,000
    fuzzed JPEGs: 11 crashes, naming no file); the orientation is read and applied without rewriting."""
    pixels = (np.arange(32 * 48) % 251).astype(np.uint8).reshape(32, 48)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0132] = 6, "Canon", "2020:01:01 00:00:00"
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif.tobytes())
    raw = bytearray((tmp_path / "phone.jpg").read_bytes())
    raw[41] = 0                                        # inside the EXIF block's first directory
    (tmp_path / "phone.jpg").write_bytes(bytes(raw))
    _png(tmp_path / "good.png", 0)
    images = load_folder(tmp_path)
    assert images.names == ["good.png", "phone.jpg"] and not images.skipped
    assert images.images[1].shape == (1, 48, 32)        # turned upright: orientation 6 still applied


def test_symbolic_links_to_folders_are_followed_once_and_a_dangling_one_is_named(tmp_path):
    root = tmp_path / "root"
    for i in range(3):
        _png(tmp_path / "real" / f"r{i}.png", i)
    _png(root / "own" / "a.png", 9)
    (root / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    (root / "same").symlink_to(tmp_path / "real", target_is_directory=True)   # a second link: read once
    (root / "own" / "loop").symlink_to(root, target_is_directory=True)        # a link loop must end
    (root / "a_link_to_own").symlink_to(root / "own", target_is_directory=True)   # inside: read where it lies
    (root / "own" / "dangling.png").symlink_to(tmp_path / "gone.png")
    images = load_folder(root)
    assert images.names == ["linked/r0.png", "linked/r1.png", "linked/r2.png", "own/a.png"]
    assert [s["file"] for s in images.skipped] == [str(root / "own" / "dangling.png")]
    # (not "No such file or directory: '.../dangling.png'" of a name `ls` lists)
    gone = str(tmp_path / "gone.png")
    assert images.skipped[0]["reason"] == f"FileNotFoundError: a symbolic link to {gone!r}, which is not there"


def test_thirty_two_bit_integer_images_are_scaled_into_0_1(tmp_path):
    """Pillow's mode "I" holds 32-bit images (TIFF) and 16-bit PGMs alike: both end in [0, 1]."""
    wide = np.array([[0, 1_000_000], [2 ** 31 - 1, 5]], np.int32)
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    x = read_image(tmp_path / "wide.tif", grey=True)
    assert x.max() == pytest.approx(1.0) and x.min() == 0.0
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "deep.pgm")
    with Image.open(tmp_path / "deep.pgm") as img:
        assert img.mode == "I"
    assert float(read_image(tmp_path / "deep.pgm", grey=True).mean()) == pytest.approx(0.5, abs=1e-3)
    Image.fromarray(np.array([[-5, 7]], np.int32)).save(tmp_path / "signed.tif")
    with pytest.raises(ValueError, match="negative"):
        read_image(tmp_path / "signed.tif", grey=True)


def _unlistable(monkeypatch, folder):
    """``folder`` cannot be listed, as a sub-folder without read permission cannot (chmod 000 does not stop root)."""
    import os
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_a_sub_folder_that_can_be_listed_but_not_entered_is_named_not_a_traceback(tmp_path, monkeypatch, pipeline):
    """`chmod -R 644` leaves every sub-folder readable but not searchable: os.walk lists its names, and the stat of
    its first file must not raise PermissionError out of the listing. Root ignores the mode bits (a
    non-root user, or root without CAP_DAC_OVERRIDE, meets it), so the stat is refused here as the kernel would."""
    import os

    from downpour.data.pipeline import open_data
    for i in range(4):
        _png(tmp_path / "ok" / f"{i}.png", i)
        _png(tmp_path / "noexec" / f"{i}.png", 10 + i)
    inside = str(tmp_path / "noexec") + os.sep
    for name in ("stat", "lstat"):
        real = getattr(os, name)

        def refused(path, *args, real=real, **kw):
            if os.fspath(path).startswith(inside):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path, *args, **kw)
        monkeypatch.setattr(os, name, refused)
    data = open_data(DataConfig(source="folder", path=str(tmp_path), mode="crops", size=8, pipeline=pipeline,
                                fit_sample=2), seed=0)
    assert len(data) == 4
    assert data.info["unlisted"] == [{"folder": str(tmp_path / "noexec"), "reason": "PermissionError: Permission "
                                      "denied: its names can be read, not its files (no x permission)"}]
    with pytest.raises(DataError, match="noexec' cannot be listed: PermissionError: Permission denied: its names"):
        load_folder(tmp_path / "noexec")


@pytest.mark.parametrize("pipeline", ["memory", "stream", "auto"])
def test_a_sub_folder_that_cannot_be_listed_is_named_not_dropped_unsaid(tmp_path, monkeypatch, caplog, pipeline):
    """os.walk skips a folder it cannot list without a word: its images left the run, logged and recorded nowhere."""
    from downpour.data.pipeline import open_data
    for i in range(4):
        _png(tmp_path / "ok" / f"{i}.png", i)
        _png(tmp_path / "locked" / f"{i}.png", 10 + i)
    _unlistable(monkeypatch, tmp_path / "locked")
    cfg = DataConfig(source="folder", path=str(tmp_path), mode="crops", size=8, pipeline=pipeline, fit_sample=2)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        data = open_data(cfg, seed=0)
        assert caplog.text.count(f"cannot list {tmp_path / 'locked'}") == 1     # "auto" said it 2-3 times
        open_data(cfg, seed=0)      # the next run in this process (a study's next cell): said once per process
    assert len(data) == 4
    assert data.info["unlisted"] == [{"folder": str(tmp_path / "locked"), "reason": "PermissionError: Permission denied"}]
    assert caplog.text.count(f"cannot list {tmp_path / 'locked'}") == 2


def test_an_image_under_two_names_is_read_once(tmp_path, caplog):
    """A link to an image listed already trained it twice (a link inside the folder, two links to one file)."""
    from downpour.data.folder import image_files
    for i in range(3):
        _png(tmp_path / "data" / f"{i}.png", i)
    _png(tmp_path / "outside.png", 9)
    (tmp_path / "data" / "alias.png").symlink_to(tmp_path / "data" / "1.png")
    (tmp_path / "data" / "x1.png").symlink_to(tmp_path / "outside.png")
    (tmp_path / "data" / "x2.png").symlink_to(tmp_path / "outside.png")
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        files, ignored = image_files(tmp_path / "data")
        assert "listed already" not in caplog.text        # a listing (the checks, "auto"'s count) says nothing
        loaded = load_folder(tmp_path / "data")
    assert [p.name for p in files] == ["0.png", "1.png", "2.png", "x1.png"]    # each under its first name
    assert ignored == 2 and len(loaded) == 4
    assert loaded.info["aliases"] == [{"file": str(tmp_path / "data" / n), "is": str(tmp_path / "data" / m)}
                                      for n, m in (("alias.png", "1.png"), ("x2.png", "x1.png"))]
    assert caplog.text.count("2 files name a file listed already (e.g. ") == 1


def test_an_empty_image_file_is_skipped_as_empty_not_as_an_unknown_format(tmp_path):
    """Pillow says "cannot identify image file" of a 0-byte file as of a format it does not know: the skip record
    of a 0-byte file (a failed download) says it is empty; a file it cannot identify still says that."""
    _png(tmp_path / "ok.png", 0)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"not an image")
    reasons = {e["file"].rsplit("/", 1)[1]: e["reason"] for e in load_folder(tmp_path).skipped}
    assert reasons["empty.png"] == "ValueError: empty file (0 bytes)"
    assert reasons["text.png"].startswith("UnidentifiedImageError: cannot identify image file")


def test_a_link_to_a_named_pipe_is_no_image_file_and_a_link_loop_is_one_named_unreadable(tmp_path):
    """A link to a pipe is not read: reading it waits for a writer forever (the run hangs, saying nothing); only the
    listing is asked here, so the test cannot hang."""
    import os

    from downpour.data.folder import image_files
    _png(tmp_path / "data" / "ok.png", 0)
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "data" / "pipe.png").symlink_to(tmp_path / "pipe")
    (tmp_path / "data" / "a.png").symlink_to(tmp_path / "data" / "b.png")
    (tmp_path / "data" / "b.png").symlink_to(tmp_path / "data" / "a.png")
    files, _ = image_files(tmp_path / "data")
    assert [p.name for p in files] == ["a.png", "b.png", "ok.png"]
    reasons = [e["reason"] for e in load_folder(tmp_path / "data", grey=True).skipped]
    assert len(reasons) == 2 and all("Too many levels of symbolic links" in r for r in reasons)


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_a_link_whose_target_cannot_be_looked_at_is_one_file_named_not_its_folder_left_out(tmp_path, pipeline):
    """A link's target whose stat fails with an error pathlib does not take for "no such file" (a name too long here,
    as root meets it too; a dead sshfs mount's ENOTCONN, a folder it may not enter) is listed, and skipped and named
    when read, as a link to nothing is: raised out of the listing, under the sub-folder rule (63b4421) it would leave
    the link's whole folder out, its good images with it, named "cannot list"."""
    from downpour.data.folder import image_files
    from downpour.data.pipeline import open_data
    _png(tmp_path / "data" / "0.png", 0)
    for i in (1, 2):
        _png(tmp_path / "data" / "sub" / f"{i}.png", i)
    (tmp_path / "data" / "sub" / "far.png").symlink_to("x" * 300)      # ENAMETOOLONG, not ENOENT
    files, _ = image_files(tmp_path / "data")
    assert [p.name for p in files] == ["0.png", "1.png", "2.png", "far.png"]
    reasons = [e["reason"] for e in load_folder(tmp_path / "data", grey=True).skipped]
    assert len(reasons) == 1 and "File name too long" in reasons[0]
    data = open_data(DataConfig(source="folder", path=str(tmp_path / "data"), mode="crops", size=8, pipeline=pipeline,
                                fit_sample=2), seed=0)
    assert "unlisted" not in data.info and len(data) == {"memory": 3, "stream": 4}[pipeline]


def test_an_entry_that_cannot_be_looked_at_is_listed_its_folder_kept(tmp_path, monkeypatch):
    """A stale NFS handle on one file (its stat and lstat fail, ESTALE) does not leave its whole folder out as one that
    cannot be entered; only EACCES on an entry's own lstat says its folder cannot be entered."""
    import errno
    import os

    from downpour.data.folder import image_files
    for i in (1, 2):
        _png(tmp_path / "data" / "sub" / f"{i}.png", i)
    _png(tmp_path / "data" / "sub" / "stale.png", 3)
    stale = str(tmp_path / "data" / "sub" / "stale.png")
    for name in ("stat", "lstat"):
        def refused(path, *args, real=getattr(os, name), **kw):
            if os.fspath(path) == stale:
                raise OSError(errno.ESTALE, "Stale file handle", stale)
            return real(path, *args, **kw)
        monkeypatch.setattr(os, name, refused)
    unlisted: list = []
    files, _ = image_files(tmp_path / "data", unlisted=unlisted)
    assert [p.name for p in files] == ["1.png", "2.png", "stale.png"] and unlisted == []


def test_a_listing_resolves_each_folder_once_not_every_file_and_still_finds_aliases(tmp_path, monkeypatch):
    """Each file's realpath resolved every folder above it: 822,038 stat calls to list 100,000 files 4 folders deep
    (1.99 s of CPU, 3.71 s before; 222,638 calls), 2-3 listings a run, each a round trip on network storage."""
    import os

    from downpour.data.folder import image_files
    for c in range(2):
        for i in range(10):
            (tmp_path / "data" / "a" / f"c{c}").mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / "a" / f"c{c}" / f"{i}.png").write_bytes(b"")
    (tmp_path / "outside").mkdir()
    _png(tmp_path / "outside" / "o.png", 1)
    (tmp_path / "data" / "a" / "c0" / "link.png").symlink_to(tmp_path / "data" / "a" / "c1" / "3.png")
    (tmp_path / "data" / "far").symlink_to(tmp_path / "outside")                  # a folder outside, followed
    (tmp_path / "data" / "z.png").symlink_to(tmp_path / "outside" / "o.png")      # the same file under a 2nd name
    real = os.path.realpath
    resolved = []
    monkeypatch.setattr(os.path, "realpath", lambda p, **kw: resolved.append(p) or real(p, **kw))
    aliases: list = []
    files, _ = image_files(tmp_path / "data", aliases=aliases)
    assert len(files) == 21 and [a["file"] for a in aliases] == [str(tmp_path / "data" / "a" / "c1" / "3.png"),
                                                                 str(tmp_path / "data" / "z.png")]
    assert len(resolved) < 20                    # the folders and links (30 before: every file too)


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_every_run_in_one_process_says_what_its_folder_left_out(tmp_path, monkeypatch, caplog, pipeline):
    """Said once per run, not once per process: else the second of two `main([...])` calls, or a study's second cell,
    is silent about the unlisted folder and the image under two names while its data.json records them."""
    from downpour.cli import main
    for i in range(6):
        _png(tmp_path / "data" / "ok" / f"{i}.png", i)
    _png(tmp_path / "data" / "locked" / "0.png", 9)
    (tmp_path / "data" / "ok" / "alias.png").symlink_to(tmp_path / "data" / "ok" / "1.png")
    _unlistable(monkeypatch, tmp_path / "data" / "locked")
    said, streamed = [], ["--set", "data.fit_sample=6", "--set", "data.loader_workers=0"] if pipeline == "stream" else []
    for run in ("r1", "r2"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="downpour.data"):
            assert main(["train", "--config", "ufldl-sae", "--steps", "2", "--runner", "local", "--no-report",
                         "--set", "train.tensorboard=false", "--set", "data.source=folder",
                         "--set", f"data.path={tmp_path / 'data'}", "--set", f"data.pipeline={pipeline}",
                         "--set", "data.samples=100", *streamed, "--out", str(tmp_path / run)]) == 0
        said.append((caplog.text.count("cannot list"), caplog.text.count("names a file listed already")))
        recorded = json.loads((tmp_path / run / "data.json").read_text())
        assert recorded["n_ignored"] == 1 and len(recorded["unlisted"]) == 1 and len(recorded["aliases"]) == 1
    assert said == [(1, 1), (1, 1)]


def test_a_resumed_stream_cutting_its_old_patch_count_says_what_its_folder_left_out_once(tmp_path, caplog):
    """A resume whose patches per image changed (files added since) reopens its stream with the count it began with,
    and the image under two names is said once in that run, not by each open."""
    from downpour.data.pipeline import keep_cut, open_data
    for i in range(4):
        _png(tmp_path / f"{i}.png", i)
    (tmp_path / "z.png").symlink_to(tmp_path / "0.png")
    cfg = DataConfig(source="folder", path=str(tmp_path), mode="patches", size=8, samples=40, pipeline="stream",
                     normalize="none", whiten="none", loader_workers=0)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        data = keep_cut(open_data(cfg, seed=0), [{"patches": 3}], cfg, 0, tmp_path, tmp_path / "local.json")
    assert data.cut.patches == 3 and data.info["aliases"] == [{"file": str(tmp_path / "z.png"), "is": str(tmp_path / "0.png")}]
    assert caplog.text.count("1 file names a file listed already") == 1


def test_a_folder_that_cannot_be_listed_is_an_error_saying_so(tmp_path, monkeypatch):
    """Not 'holds no image files (0 other files)'."""
    _png(tmp_path / "a.png", 0)
    _unlistable(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="cannot be listed: PermissionError: Permission denied"):
        load_folder(tmp_path)


def test_a_listing_looks_at_each_plain_file_once(tmp_path, monkeypatch):
    """A stat call is a round trip on network storage: the listing makes one lstat each, a link's target once more,
    not two looks at each file (its stat, then once_each's lstat: 41,378 calls for 20,000 files)."""
    import os

    from downpour.data.folder import image_files

    for d in range(4):
        for i in range(50):
            _png(tmp_path / f"d{d}" / f"{i}.png", i)
    os.symlink(tmp_path / "d0" / "0.png", tmp_path / "d3" / "zz.png")    # a second name: one file, said once
    calls = []
    for name in ("stat", "lstat"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda p, *a, real=real, **kw: calls.append(p) or real(p, *a, **kw))
    files, _ = image_files(tmp_path)
    assert len(files) == 200
    per_file = [c for c in calls if os.fspath(c).endswith(".png")]
    assert len(per_file) <= 201 + 3, len(per_file)     # 201 entries once each, the link's target 2 more, +1 slack


def test_an_image_file_given_as_the_folder_is_named_a_file_and_one_other_file_is_one(tmp_path):
    """An image passed as data.path was 'does not exist or is not a folder'; a folder of one text file held
    '(1 other files)'."""
    _png(tmp_path / "a.png", 0)
    with pytest.raises(DataError, match=r"data.path '.*a\.png' is a file, and data.path takes the folder of images to read"):
        load_folder(tmp_path / "a.png")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds no image files \(1 other file\); "):
        load_folder(tmp_path / "text")
