"""Video sources: frames sampled evenly with PyAV; corrupt files skipped and counted like images."""
import logging
import os
import sys

import av
import numpy as np
import pytest

from downpour.config import DataConfig
from downpour.data import build_dataset
from downpour.data.video import frame_indices, load_videos, sample_frames
from downpour.errors import DataError


def _write_video(path, n_frames=12, size=32, codec="mpeg4", step=20, format=None):
    """Frame t is a flat grey of level ``step`` * t, so a decoded frame tells which index it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format=format) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": "1"}    # near-lossless, so the grey levels survive
        for t in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), step * t, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_frame_indices_are_centred_and_even():
    assert frame_indices(12, 3) == [2, 6, 10]
    assert frame_indices(9, 1) == [4]
    assert frame_indices(2, 5) == [0, 1]
    assert frame_indices(0, 3) == []


def test_sample_frames_picks_the_evenly_spaced_frames(tmp_path):
    _write_video(tmp_path / "clip.mp4")
    frames = sample_frames(tmp_path / "clip.mp4", 3)
    assert len(frames) == 3 and frames[0].shape == (32, 32, 3)
    levels = [float(f.mean()) / 20 for f in frames]
    assert np.allclose(levels, [2, 6, 10], atol=0.3)


def test_video_folder_with_a_corrupt_file(tmp_path, caplog):
    _write_video(tmp_path / "a.mp4")
    _write_video(tmp_path / "nested" / "b.mkv", n_frames=6)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    (tmp_path / "readme.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        images = load_videos(tmp_path, frames_per_video=2, grey=True)
    assert len(images) == 4 and images.channels == 1
    assert images.info["n_videos"] == 2
    assert [s["file"] for s in images.skipped] == [str(tmp_path / "broken.mp4")]
    assert any("broken.mp4" in r.getMessage() for r in caplog.records)


def test_video_source_builds_crops_and_counts_skips(tmp_path):
    _write_video(tmp_path / "a.mp4")
    (tmp_path / "bad.mkv").write_bytes(b"not a video at all")
    cfg = DataConfig(source="video", path=str(tmp_path), frames_per_video=3, mode="crops", size=8)
    data = build_dataset(cfg, seed=0)
    assert data.x.shape == (3, 1, 8, 8)
    assert data.info["n_skipped"] == 1 and data.info["skipped"][0]["file"].endswith("bad.mkv")


def test_single_video_file_and_no_decodable_video_error(tmp_path):
    _write_video(tmp_path / "one.mp4", n_frames=5)
    assert len(load_videos(tmp_path / "one.mp4", frames_per_video=1)) == 1
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "x.mp4").write_bytes(b"junk")
    # (it read "none of its 1 video files")
    with pytest.raises(DataError, match="its one video file could not be decoded"):
        load_videos(tmp_path / "only_bad")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no video files") as err:
        load_videos(tmp_path / "empty")
    assert "image file" not in str(err.value)


@pytest.mark.parametrize("pipeline", ["memory", "stream"])
@pytest.mark.parametrize("one_file", [False, True])
def test_a_video_source_without_pyav_names_the_file_and_how_to_install_it(tmp_path, monkeypatch, pipeline, one_file):
    """Without PyAV the data is refused in one line naming the file and the install: else every file is skipped as
    "ModuleNotFoundError: No module named 'av'" (in memory), or the stream's listing raises that bare (a traceback)."""
    from downpour.data.stream import list_items

    _write_video(tmp_path / "b.mp4")
    _write_video(tmp_path / "a.mp4")
    monkeypatch.setitem(sys.modules, "av", None)      # (`import av` raises ModuleNotFoundError, as when not installed)
    cfg = DataConfig(source="video", path=str(tmp_path / "a.mp4" if one_file else tmp_path), pipeline=pipeline)
    with pytest.raises(DataError, match=rf"^'{tmp_path / 'a.mp4'}': data.source = 'video' decodes it with PyAV, which "
                                        r"cannot be imported \(.*\); install it: pip install av$"):
        build_dataset(cfg, seed=0) if pipeline == "memory" else list_items(cfg)


def test_a_folder_of_images_read_as_videos_names_the_source_that_reads_them(tmp_path):
    """`--set data.source=video` on a folder of photos names the source that reads them, not only "holds no video
    files (3 other files; extensions ...)"."""
    from PIL import Image

    for name in ("b.png", "a.jpg"):
        Image.new("L", (8, 8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"; it holds 2 image files \(e.g. 'a.jpg'\): data.source = 'folder' reads images$"):
        load_videos(tmp_path)


def test_truncated_video_without_frame_count_uses_the_frames_it_can_decode(tmp_path):
    # Matroska declares no frame count, so the frames are counted by decoding; a truncated file
    # still gives k evenly spaced frames from the part that survives.
    _write_video(tmp_path / "full.mkv", n_frames=12)
    data = (tmp_path / "full.mkv").read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 2 // 3])
    levels = [float(f.mean()) / 20 for f in sample_frames(tmp_path / "cut.mkv", 3)]
    assert len(levels) == 3 and levels == sorted(levels) and levels[-1] < 9


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
@pytest.mark.parametrize("frames, per_image, per_pass", [(3, 10, 120), (100, 2, 96)])
def test_streamed_video_patches_keep_samples_per_pass(tmp_path, frames, per_image, per_pass, ext):
    """A video's frames share samples / videos windows (each taking them, 4 videos of 3 frames give 3x the samples
    asked for). The frames the headers declare count, not frames_per_video = 100 on 12-frame videos (a pass of 4 x 12 x
    1 = 48 samples for 120): 120 / 48 = 2.5 windows: 2, 96 a pass, the nearest to 120. A .mkv declares no count: its
    duration x frame rate counts (else it gives 48)."""
    from downpour.data.reader import ItemReader
    from downpour.data.stream import open_stream

    for i in range(4):
        _write_video(tmp_path / f"{i}{ext}", size=16)
    cfg = DataConfig(source="video", path=str(tmp_path), frames_per_video=frames, mode="patches", size=8, samples=120,
                     pipeline="stream", normalize="none", whiten="none")
    data = open_stream(cfg, seed=0)
    assert data.info["frames_per_video_declared"] == min(frames, 12) and data.info["patches_per_image"] == per_image
    reader = ItemReader("video", data.items, data.cut, 0, str(tmp_path), frames=frames)
    assert sum(len(reader.samples(reader.images(k), 0, k)) for k in range(4)) == per_pass


def _write_cut_avi(path):
    """An avi declaring 30 frames (frame t a flat grey of level 8 * t), cut to its first 4/5: 15 frames decode."""
    full = path.with_name("full.avi.part")
    with av.open(str(full), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        for t in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 8 * t, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) * 4 // 5])


def test_truncated_video_that_declares_its_frame_count_uses_the_frames_before_the_break(tmp_path):
    """An avi declares its 30 frames; cut short, decoding raised partway and the whole file was skipped."""
    _write_cut_avi(tmp_path / "cut.avi")
    cut: list = []
    frames = sample_frames(tmp_path / "cut.avi", 3, cut)
    again = sample_frames(tmp_path / "cut.avi", 3)      # a streamed run reads it every pass
    levels = [float(f.mean()) / 8 for f in frames]
    assert len(levels) == 3 and levels == sorted(levels) and 0 < levels[0] and levels[-1] < 29
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))
    assert [(e["file"], e["frames"]) for e in cut] == [(str(tmp_path / "cut.avi"), 15)]


def test_a_truncated_video_is_logged_once_by_every_run_that_reads_it(tmp_path, caplog):
    """Once a run: not up to 3 times a read (302 lines in 40 streamed steps), nor once a process, so that a second run
    in one Python (a study's next cell, a second main([...])) says nothing while its data.json records it."""
    import torch

    from downpour.data.pipeline import open_data

    _write_cut_avi(tmp_path / "cut.avi")
    _write_video(tmp_path / "whole.mp4")
    kw = dict(source="video", path=str(tmp_path), frames_per_video=3, mode="crops", size=8, normalize="none",
              whiten="none", loader_workers=0)

    def said(run) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="downpour.data"):
            run()
        return [r.getMessage() for r in caplog.records if "decoding stopped" in r.getMessage()]

    def streamed():
        batches = open_data(DataConfig(**kw, pipeline="stream"), seed=0).batches(3, torch.Generator().manual_seed(0))
        for _ in range(6):                    # 3 passes: the file read 3 times, said once
            next(batches)

    for run in range(2):
        memory = said(lambda: open_data(DataConfig(**kw, pipeline="memory"), seed=0))
        assert len(memory) == 1 and memory[0].startswith(f"{tmp_path / 'cut.avi'}: decoding stopped after frame 15 ("), run
        assert len(said(streamed)) == 1, run


def test_a_video_sub_folder_that_cannot_be_listed_is_logged(tmp_path, monkeypatch, caplog):
    """os.walk drops a folder it cannot list without a word (no read permission: chmod 000 does not stop root,
    so os.scandir refuses it here)."""
    import os
    from downpour.data.video_list import video_files

    _write_video(tmp_path / "a.mp4")
    (tmp_path / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(tmp_path / "locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        assert video_files(tmp_path) == ([tmp_path / "a.mp4"], 0)
        assert "cannot list" not in caplog.text      # the listing records it; the load says it, once per load
        for _ in range(2):                           # (not once per process, unrecorded)
            videos = load_videos(tmp_path, 1)
    assert caplog.text.count(f"cannot list {tmp_path / 'locked'} (PermissionError: Permission denied)") == 2
    assert videos.info["unlisted"] == [{"folder": str(tmp_path / "locked"), "reason": "PermissionError: Permission denied"}]


def test_a_video_sub_folder_that_cannot_be_listed_is_recorded_in_info(tmp_path, monkeypatch):
    """Recorded, not only logged: a video folder's info (and so data.json) records it, as an image folder's does."""
    import os
    from downpour.data.stream import list_items

    _write_video(tmp_path / "a.mp4")
    (tmp_path / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) in (str(tmp_path / "locked"), str(tmp_path / "gone")):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    expected = [{"folder": str(tmp_path / "locked"), "reason": "PermissionError: Permission denied"}]
    assert load_videos(tmp_path, frames_per_video=1).info["unlisted"] == expected
    assert list_items(DataConfig(source="video", path=str(tmp_path), pipeline="stream")).info["unlisted"] == expected
    (tmp_path / "gone").mkdir()
    with pytest.raises(DataError, match="video folder '.*gone' cannot be listed: PermissionError: Permission denied"):
        load_videos(tmp_path / "gone")


def _write_turned(path, matrix, image, n_frames=3):
    """A video whose frames are ``image`` (H, W, 3) as stored, with ``matrix`` as its display matrix (what a phone writes)."""
    if not hasattr(av.video.stream.VideoStream, "set_display_matrix"):
        pytest.skip("writing a display matrix needs PyAV 17.1+")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"qscale": "1"}
        stream.set_display_matrix(matrix)
        for _ in range(n_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


ONE = 1 << 16          # 1.0 in the display matrix's 16.16 fixed point; its last entry is 1.0 in 2.30
# (matrix, displayed shape of a stored 32-wide, 48-tall frame, where the stored top-left 8x8 corner is shown)
TURNS = {
    "iphone-portrait": ([0, ONE, 0, -ONE, 0, 0, 0, 0, 1 << 30], (32, 48), "top-right"),    # ffprobe: rotation -90
    "upside-down": ([-ONE, 0, 0, 0, -ONE, 0, 0, 0, 1 << 30], (48, 32), "bottom-right"),   # rotation 180
    "turned-left": ([0, -ONE, 0, ONE, 0, 0, 0, 0, 1 << 30], (32, 48), "bottom-left"),     # rotation 90
    "mirrored": ([-ONE, 0, 0, 0, ONE, 0, 0, 0, 1 << 30], (48, 32), "top-right"),          # hflip alone
    "none": ([ONE, 0, 0, 0, ONE, 0, 0, 0, 1 << 30], (48, 32), "top-left"),
}


@pytest.mark.parametrize("name", sorted(TURNS))
def test_a_frame_is_turned_upright_by_its_display_matrix(tmp_path, name):
    """A phone's portrait video is stored sideways with a display matrix; its frames were read lying on their side
    (48x32 stored, a white corner at the stored top-left: shown by players at the top right of a 32x48 picture)."""
    matrix, shape, corner = TURNS[name]
    stored = np.zeros((48, 32, 3), np.uint8)
    stored[:8, :8] = 255
    _write_turned(tmp_path / "phone.mp4", matrix, stored)
    frame = sample_frames(tmp_path / "phone.mp4", 1)[0]
    assert frame.shape == (*shape, 3)
    rows, cols = np.nonzero(frame[..., 0] > 128)
    top, left = rows.mean() < shape[0] / 2, cols.mean() < shape[1] / 2
    assert f"{'top' if top else 'bottom'}-{'left' if left else 'right'}" == corner
    assert len(rows) == pytest.approx(64, abs=12)          # the 8x8 corner, not smeared


def test_a_portrait_video_reaches_the_model_upright_in_rgb_order(tmp_path):
    """The planted frame through build_dataset, in memory and streamed: (C, H, W), R G B in that order, in [0, 1]."""
    from downpour.data.reader import ItemReader
    from downpour.data.stream import open_stream

    shown = np.zeros((32, 32, 3), np.uint8)        # as a player shows it: red, green / blue, grey quadrants
    shown[:16, :16], shown[:16, 16:], shown[16:, :16], shown[16:, 16:] = (250, 0, 0), (0, 250, 0), (0, 0, 250), 128
    stored = np.ascontiguousarray(np.rot90(shown, 1))   # the phone stores it turned a quarter counter-clockwise
    _write_turned(tmp_path / "phone.mp4", TURNS["iphone-portrait"][0], stored)
    cfg = DataConfig(source="video", path=str(tmp_path), frames_per_video=1, mode="crops", size=32, grey=False,
                     normalize="none", whiten="none", pipeline="memory")
    memory = build_dataset(cfg, seed=0).x[0].numpy()
    data = open_stream(DataConfig(**{**cfg.__dict__, "pipeline": "stream"}), seed=0)
    reader = ItemReader("video", data.items, data.cut, 0, str(tmp_path), frames=1)
    streamed = reader.samples(reader.images(0), 0, 0)[0]
    for x in (memory, streamed):
        assert x.shape == (3, 32, 32) and x.dtype == np.float32
        quadrants = [x[:, 4:12, 4:12], x[:, 4:12, 20:28], x[:, 20:28, 4:12], x[:, 20:28, 20:28]]
        expected = [(0.98, 0, 0), (0, 0.98, 0), (0, 0, 0.98), (0.5, 0.5, 0.5)]
        for q, rgb in zip(quadrants, expected):
            assert np.allclose(q.mean(axis=(1, 2)), rgb, atol=0.06)


def test_a_display_matrix_turning_by_an_odd_angle_is_skipped_and_named(tmp_path, caplog):
    c, s = int(ONE * np.cos(np.pi / 4)), int(ONE * np.sin(np.pi / 4))
    _write_turned(tmp_path / "tilted.mp4", [c, -s, 0, s, c, 0, 0, 0, 1 << 30], np.zeros((48, 32, 3), np.uint8))
    _write_video(tmp_path / "fine.mp4")
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        images = load_videos(tmp_path, frames_per_video=1)
    assert len(images) == 1 and images.info["n_videos"] == 1
    assert images.skipped[0]["file"] == str(tmp_path / "tilted.mp4")
    assert images.skipped[0]["reason"] == ("DataError: its display matrix turns it by 315 degrees clockwise; only "
                                           "multiples of 90 are turned upright")    # (45 counter-clockwise)


@pytest.mark.parametrize("name", ["clip.mkv", "clip.webm"])
def test_a_video_that_declares_no_frame_count_is_decoded_only_up_to_its_frames(tmp_path, monkeypatch, name):
    """Matroska and WebM declare no frame count: the packets, demuxed, count them, not the whole video decoded to count
    its frames and then again up to the middle one (40 + 21 frames decoded for k = 1 of 40)."""
    import downpour.data.video as video

    path = tmp_path / name
    _write_video(path, n_frames=40, codec="mpeg4" if name.endswith("mkv") else "libvpx", step=6)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0               # (what makes this the case)
    decoded, real = [], video._decode

    def counting(p, wanted):
        kept, count, broke = real(p, wanted)
        decoded.append(count)
        return kept, count, broke

    monkeypatch.setattr(video, "_decode", counting)
    frames = sample_frames(path, 1)
    assert sum(decoded) == 21
    assert abs(float(frames[0].mean()) / 6 - 20) < 0.5             # the middle frame, index 20 of 40


def test_a_cover_picture_stored_before_the_video_is_not_the_video_read(tmp_path):
    """A .mkv holding its cover JPEG as a one-frame video stream ahead of the video: the first stream was read, so
    every 'frame' of the file was the white cover (one, whatever frames_per_video asked)."""
    path = tmp_path / "with_cover.mkv"
    with av.open(str(path), mode="w") as container:
        cover = container.add_stream("mjpeg", rate=1)
        cover.width = cover.height = 32
        cover.pix_fmt = "yuvj420p"
        video = container.add_stream("mpeg4", rate=10)
        video.width = video.height = 32
        video.pix_fmt, video.options = "yuv420p", {"qscale": "1"}
        for packet in [*cover.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 255, np.uint8), format="rgb24")),
                       *cover.encode()]:
            container.mux(packet)
        for t in range(12):                      # frame t is a flat grey of level 20 * t
            for packet in video.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * t, np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"     # (what makes this the case)
    levels = [float(f.mean()) / 20 for f in sample_frames(path, 3)]
    assert np.allclose(levels, [2, 6, 10], atol=0.3)


def test_a_video_linked_under_two_names_is_read_once(tmp_path, caplog):
    """As in an image folder: a link to a video listed already (another name, or a sub-folder's link) trained it twice
    (2 videos, 4 listed, 12 frames for 6)."""
    from downpour.data.stream import list_items

    _write_video(tmp_path / "a.mp4")
    _write_video(tmp_path / "b.mp4", n_frames=6)
    (tmp_path / "a_again.mp4").symlink_to(tmp_path / "a.mp4")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.mp4").symlink_to(tmp_path / "b.mp4")
    with caplog.at_level(logging.WARNING, logger="downpour.data"):
        images = load_videos(tmp_path, frames_per_video=3)
    assert len(images) == 6 and images.info["n_videos"] == 2
    assert "2 files name a file listed already" in caplog.text
    assert images.info["aliases"] == [{"file": str(tmp_path / "a_again.mp4"), "is": str(tmp_path / "a.mp4")},
                                      {"file": str(tmp_path / "sub" / "b.mp4"), "is": str(tmp_path / "b.mp4")}]
    cfg = DataConfig(source="video", path=str(tmp_path), pipeline="stream")
    assert list_items(cfg).items == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]


def test_a_camcorders_mts_files_are_videos_and_other_files_are_counted(tmp_path):
    """A camcorder's .MTS (MPEG-TS) files left out are counted in n_ignored, in memory and streamed, as an image folder
    counts them (else 1 video of 2 trains, nothing said)."""
    from downpour.data.stream import list_items

    _write_video(tmp_path / "a.mp4")
    _write_video(tmp_path / "00001.MTS", codec="mpeg2video", format="mpegts")
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / ".hidden.mp4").write_bytes(b"")
    images = load_videos(tmp_path, frames_per_video=3)
    assert images.info["n_videos"] == 2 and images.info["n_ignored"] == 2 and len(images) == 6
    listing = list_items(DataConfig(source="video", path=str(tmp_path), pipeline="stream"))
    assert listing.items == [str(tmp_path / "00001.MTS"), str(tmp_path / "a.mp4")] and listing.info["n_ignored"] == 2


def test_a_video_too_small_for_a_patch_is_one_file_skipped_in_memory_as_streamed(tmp_path):
    """In memory each of its frames was a skip ("small.mp4#frame0".."#frame2": 3), streamed its file (1)."""
    import torch

    from downpour.data.pipeline import open_data
    from downpour.data.telemetry import run_data_info

    _write_video(tmp_path / "big.mp4", size=32)
    _write_video(tmp_path / "small.mp4", size=16)
    kw = dict(source="video", path=str(tmp_path), frames_per_video=3, mode="patches", size=20, samples=60,
              normalize="none", whiten="none", loader_workers=0)
    memory = open_data(DataConfig(**kw, pipeline="memory"), seed=0).info
    stream = open_data(DataConfig(**kw, pipeline="stream"), seed=0)
    batches = stream.batches(10, torch.Generator().manual_seed(0))
    for _ in range(6):           # 2 passes over the 2 files (30 patches a pass from big.mp4's 3 frames)
        next(batches)
    streamed = run_data_info(stream.info, [batches.report()])
    said = "16x16 image is smaller than the 20x20 patch"
    assert memory["skipped"] == [{"file": str(tmp_path / "small.mp4"), "reason": said}]
    assert streamed["skipped"] == [{"file": str(tmp_path / "small.mp4"), "reason": said}]   # one wording, both paths
    assert memory["n_skipped"] == streamed["n_skipped"] == 1
    assert memory["n_images"] == 6 and memory["n_videos"] == 2     # read, as an image folder's too-small image is


def test_a_truncated_video_is_recorded_in_data_json_in_memory_streamed_and_resumed(tmp_path):
    """Its frames before the break trained, and only the log said so: data.json named it nowhere."""
    import torch

    from downpour.data.pipeline import open_data
    from downpour.data.telemetry import run_data_info
    from downpour.data.positions import position_problem

    _write_cut_avi(tmp_path / "cut.avi")
    _write_video(tmp_path / "whole.mp4")
    kw = dict(source="video", path=str(tmp_path), frames_per_video=3, mode="crops", size=8, normalize="patch",
              whiten="none", loader_workers=1)     # (forked loaders hang here after the other video tests)
    memory = open_data(DataConfig(**kw, pipeline="memory"), seed=0).info
    stream = open_data(DataConfig(**kw, pipeline="stream"), seed=0)
    batches = stream.batches(3, torch.Generator().manual_seed(0))
    for _ in range(4):                     # 2 passes: each file read twice, recorded once
        next(batches)
    streamed = run_data_info(stream.info, [batches.report()])
    cut = memory["truncated"]
    assert [(e["file"], e["frames"]) for e in cut] == [(str(tmp_path / "cut.avi"), 15)] and cut[0]["reason"]
    assert streamed["truncated"] == cut and stream.info["fit_sample"]["truncated"] == cut   # (the fit read it too)
    position = batches.position()
    assert position["truncated"] == [[e["file"], e["frames"], e["reason"]] for e in cut] and not position_problem(position)
    resumed = stream.batches(3, torch.Generator().manual_seed(0), position=position)
    assert resumed.report()["truncated"] == cut           # before reading anything: from the checkpoint
    assert "its stream position's truncated is" in position_problem({**position, "truncated": [["a.avi", -1, "x"]]})
    (tmp_path / "cut.avi").unlink()
    assert "truncated" not in open_data(DataConfig(**kw, pipeline="memory"), seed=0).info   # only what happened


def test_auto_estimates_a_videos_memory_by_the_frames_it_has_not_frames_per_video(tmp_path, monkeypatch):
    """frames_per_video = 100 on 12-frame videos was estimated at 100 frames each: 8x what memory held, streamed."""
    from downpour.data import pipeline
    from downpour.data.estimate import estimate_bytes
    from downpour.data.stream import list_items

    for i, ext in enumerate([".mp4", ".mkv", ".avi"]):       # declared counts; Matroska: duration x rate
        _write_video(tmp_path / f"{i}{ext}", n_frames=12, size=16)
    cfg = DataConfig(source="video", path=str(tmp_path), frames_per_video=100, mode="patches", size=8)
    held = sum(im.nbytes for im in load_videos(tmp_path, frames_per_video=100).images)     # decoded: 36 frames
    assert estimate_bytes(cfg, list_items(cfg)) == held == 3 * 12 * 16 * 16 * 4
    monkeypatch.setattr(pipeline, "STREAM_ABOVE", 2 * held)
    assert pipeline.choose_pipeline(cfg)[0] == "memory"
    few = DataConfig(source="video", path=str(tmp_path), frames_per_video=2, mode="patches", size=8)
    assert estimate_bytes(few, list_items(few)) == 3 * 2 * 16 * 16 * 4          # k < T: k


_STREAM_AFTER_DECODING = """
import gc, os, sys
import torch
from downpour.config import DataConfig
from downpour.data.pipeline import open_data
from downpour.data.video import sample_frames

root = sys.argv[1]
gc.disable()            # the frames decoded here wait for a collection, as a busy driver's often do at the fork
stream = open_data(DataConfig(source="video", path=root, frames_per_video=3, mode="crops", size=8, normalize="patch",
                              whiten="none", pipeline="stream", loader_workers=int(sys.argv[2])), seed=0)
sample_frames(os.path.join(root, "whole.mp4"), 3)
os.register_at_fork(after_in_child=gc.collect)      # ... and the forked loader process collects them
batches = stream.batches(3, torch.Generator().manual_seed(0))
for _ in range(4):
    next(batches)
print(batches.report()["reads"])
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_streaming_videos_decoded_before_the_loader_forks_does_not_hang(tmp_path, workers):
    """Frames decoded in the driver (the fitting sample) were garbage still held at the fork; the loader's process,
    freeing them, waited forever for their converters' threads, which exist in the driver alone: no error, no end."""
    import os
    import signal
    import subprocess
    import sys

    _write_cut_avi(tmp_path / "cut.avi")            # (FFmpeg logs its break, in the driver and in the loader)
    _write_video(tmp_path / "whole.mp4")
    run = subprocess.Popen([sys.executable, "-c", _STREAM_AFTER_DECODING, str(tmp_path), str(workers)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)          # (its hung loader process too, so nothing is left behind)
        run.communicate()
        pytest.fail(f"streaming {workers} loader process(es) after decoding in the driver hung (killed after 120 s)")
    assert run.returncode == 0, err[-2000:]
    assert int(out.split()[-1]) >= 2               # 4 batches of 3 from the 2 files' crops: each file read


def _write_unevenly_timed(path, n_frames=12, audio_s=0.0, vfr=False, size=16):
    """``n_frames`` video frames at 10 fps (``vfr``: the second half 1 s apart) and ``audio_s`` seconds of silence."""
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libvpx" if path.suffix == ".webm" else "mpeg4", rate=10)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48000) if audio_s else None
        pts = 0
        for t in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 20 * t, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 1000 if vfr and t >= n_frames // 2 else 100
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for start in range(0, int(audio_s * 48000), 960):
            sound = av.AudioFrame.from_ndarray(np.zeros((2, 960), np.float32), format="fltp", layout="stereo")
            sound.sample_rate, sound.pts, sound.time_base = 48000, start, Fraction(1, 48000)
            for packet in audio.encode(sound):
                container.mux(packet)
        for packet in audio.encode() if audio else []:
            container.mux(packet)


@pytest.mark.parametrize("name, audio_s, vfr", [("longer_audio.mkv", 6, False), ("longer_audio.webm", 6, False),
                                                ("longer_audio.ts", 6, False), ("variable_rate.mkv", 0, True)])
def test_a_video_without_a_declared_count_counts_its_own_frames_not_the_longest_streams_time(
        tmp_path, name, audio_s, vfr):
    """Matroska, WebM and MPEG-TS declare no frame count: the video counts its own frames, not the container's duration
    x the frame rate (12 frames at 10 fps under 6 s of audio would count 60, the memory estimate 5x, the patches a
    frame 1/5; 6 frames at 10 fps then 6 at 1 fps, 57)."""
    from downpour.data.stream import open_stream
    from downpour.data.video import decoded_pixels, frames_taken

    for i in range(4):
        _write_unevenly_timed(tmp_path / f"{i}{name}", audio_s=audio_s, vfr=vfr)
    path = tmp_path / f"0{name}"
    with av.open(str(path)) as container:     # (what makes this the case: no count, a longer duration)
        assert container.streams.video[0].frames == 0 and container.duration / av.time_base > 2
    assert frames_taken([path], 100) == 12 and decoded_pixels(path, 100) == 16 * 16 * 12
    cfg = DataConfig(source="video", path=str(tmp_path), frames_per_video=100, mode="patches", size=8, samples=480,
                     pipeline="stream", normalize="none", whiten="none")
    data = open_stream(cfg, seed=0)
    assert data.info["frames_per_video_declared"] == 12 and data.info["patches_per_image"] == 10   # 480 / (4 x 12)
    levels = [float(f.mean()) / 20 for f in sample_frames(path, 3)]
    assert np.allclose(levels, [2, 6, 10], atol=0.5)


def test_a_decoded_frame_is_freed_at_once_not_left_to_the_cyclic_collector(tmp_path):
    """PyAV's side data and its frame hold each other: every frame whose display matrix is read would wait for the
    cyclic collector (400 reads of a 1080p frame peaked at 670-747 MB of RSS, 262 MB when each is freed at once)."""
    import gc

    path = tmp_path / "portrait.mp4"
    image = np.zeros((48, 32, 3), np.uint8)
    image[:8, :8] = 255
    _write_turned(path, TURNS["iphone-portrait"][0], image, n_frames=6)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        frames = sample_frames(path, 3)
        gc.collect()
        left = [g for g in gc.garbage if isinstance(g, av.VideoFrame) and g.width * g.height > 4]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert len(frames) == 3 and frames[0].shape == (32, 48, 3) and frames[0][:8, -8:].mean() > 200    # upright
    assert left == []


def test_a_video_that_declares_no_frame_count_is_demuxed_once_a_process_until_it_changes(tmp_path, monkeypatch):
    """The count of a .mkv's packets is kept by (path, size, mtime), and counted anew when the file changes: a demux of
    the whole file at each streamed read costs 50 demuxes, 0.75 s of CPU, for 50 reads of a 58 MB one."""
    import os

    import downpour.data.video as video

    path = tmp_path / "clip.mkv"
    _write_video(path, n_frames=30, step=8)
    demuxed, real = [], video._count

    def counting(container, stream):
        demuxed.append(real(container, stream))
        return demuxed[-1]

    monkeypatch.setattr(video, "_count", counting)
    first = sample_frames(path, 3)
    assert demuxed == [30]
    assert all(np.array_equal(a, b) for a, b in zip(sample_frames(path, 3), first))
    assert demuxed == [30]                                          # (the second read counted nothing)
    assert sample_frames(tmp_path / "." / "clip.mkv", 1) and demuxed == [30]     # (another name of the same file)
    _write_video(path, n_frames=20, step=8)                         # rewritten: 20 frames now
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))   # (whatever the clock's grain)
    assert len(sample_frames(path, 40)) == 20 and demuxed == [30, 20]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))   # touched: same bytes, new mtime
    assert len(sample_frames(path, 40)) == 20 and demuxed == [30, 20, 20]


def test_a_truncated_video_is_decoded_to_recount_it_once_a_process_not_at_every_read(tmp_path, monkeypatch):
    """A file whose declared frames do not all decode is recounted once: 42 decodes for 40 streamed reads (trying
    them, decoding to its break to recount, then the frames picked at each read: 3 decodes a read, 120)."""
    import downpour.data.video as video

    _write_cut_avi(tmp_path / "cut.avi")
    decodes = []
    real = video._decode
    monkeypatch.setattr(video, "_decode", lambda path, wanted: decodes.append(path) or real(path, wanted))
    first: list = []
    frames = sample_frames(tmp_path / "cut.avi", 3, first)
    decodes.clear()
    cut: list = []
    for _ in range(4):
        again = sample_frames(tmp_path / "cut.avi", 3, cut)
    assert len(decodes) == 4                                   # one decode a read: the frames picked
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))
    assert [e["frames"] for e in first + cut] == [15] * 5      # recorded at every read, as before
    _write_video(tmp_path / "cut.avi", n_frames=12, format="avi")   # rewritten whole: counted anew, not cut short
    cut.clear()
    assert len(sample_frames(tmp_path / "cut.avi", 3, cut)) == 3 and cut == []


def test_an_empty_a_sound_only_and_an_indexless_mp4_are_skipped_each_with_its_own_reason(tmp_path):
    """Each says what it is (not "no video stream" or FFmpeg's "Invalid data found" for all three): else an .mp4 cut
    before its 'moov' index (a phone's recording that stopped) reads like a sound file, a 0-byte download like a
    damaged one."""
    _write_video(tmp_path / "ok.mp4")
    data = (tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])     # (PyAV writes the index last, as a camera does)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with av.open(str(tmp_path / "sound.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    reasons = {e["file"].rsplit("/", 1)[1]: e["reason"] for e in load_videos(tmp_path, 3).skipped}
    assert reasons["empty.mp4"] == "ValueError: empty file (0 bytes)"
    assert reasons["sound.mp4"] == "ValueError: no video stream (streams: audio)"
    assert "cut short before its index, the 'moov' atom" in reasons["cut.mp4"]


def test_an_mp4_cut_inside_its_first_media_box_says_it_was_cut_short(tmp_path):
    """Cut early (100 bytes: its 'ftyp' box and the start of 'mdat'), an .mp4 does not open at all: its skip says it
    was most likely cut short before its index, as one cut later does, not FFmpeg's "Invalid data found when
    processing input" alone. A file of other bytes keeps FFmpeg's words."""
    _write_video(tmp_path / "ok.mp4")
    (tmp_path / "cut.mp4").write_bytes((tmp_path / "ok.mp4").read_bytes()[:100])
    (tmp_path / "junk.mp4").write_bytes(bytes(range(256)) * 2)
    reasons = {e["file"].rsplit("/", 1)[1]: e["reason"] for e in load_videos(tmp_path, 3).skipped}
    assert "its boxes hold no 'moov'" in reasons["cut.mp4"] and "cut short before its index" in reasons["cut.mp4"]
    assert "moov" not in reasons["junk.mp4"]


def test_a_video_rewritten_whole_at_its_old_size_and_mtime_is_counted_anew(tmp_path):
    """A download that allocates the file's full size first (zeros past what has come), read while cut, then
    complete, its mtime set back as ``cp -p``, ``rsync -t`` or ``tar x`` leave it: counts kept by (path, size,
    mtime_ns) alone would hold its 15 frames of 30, so every later read would pick among the first half and record
    it truncated."""
    _write_video(tmp_path / "whole.avi", n_frames=30, step=8, format="avi")
    whole = (tmp_path / "whole.avi").read_bytes()
    path = tmp_path / "video.avi"
    path.write_bytes(whole[: len(whole) * 4 // 5].ljust(len(whole), b"\0"))
    first: list = []
    assert len(sample_frames(path, 3, first)) == 3 and [e["frames"] for e in first] == [15]
    before = path.stat()
    path.write_bytes(whole)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again: list = []
    levels = [round(float(f.mean()) / 8) for f in sample_frames(path, 3, again)]
    assert again == [] and levels == [5, 15, 25]          # frame_indices(30, 3): before, [2, 7, 12] of the 15


def test_a_folder_of_one_other_file_says_one_other_file(tmp_path):
    """Not "holds no video files (1 other files; extensions ...)"."""
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds no video files \(1 other file; extensions"):
        load_videos(tmp_path)
