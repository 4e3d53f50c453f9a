"""Array sources: .npy / .npz with shape, dtype and key checks; pickles refused."""
import numpy as np
import pytest

from downpour.config import DataConfig
from downpour.data import build_dataset
from downpour.data.arrays import load_array, npz_labels, read_arrays
from downpour.errors import DataError


def test_npz_with_labels_and_uint8_scaling(tmp_path):
    x = np.arange(5 * 6 * 6, dtype=np.uint8).reshape(5, 6, 6)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 1, 0]))
    xs, ys = read_arrays(tmp_path / "d.npz")
    assert xs.shape == (5, 1, 6, 6) and xs.dtype == np.float32
    assert np.allclose(xs[:, 0], x / 255.0) and ys.dtype == np.int64
    data = build_dataset(DataConfig(source="array", path=str(tmp_path / "d.npz"), mode="crops", size=6), seed=1)
    assert len(data) == 5 and sorted(data.y.tolist()) == [0, 0, 1, 1, 2]


def test_npy_floats_kept_and_colour_to_grey(tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 3, 5, 5)).astype(np.float32)
    np.save(tmp_path / "d.npy", x)
    assert np.array_equal(read_arrays(tmp_path / "d.npy")[0], x)
    grey = load_array(tmp_path / "d.npy", grey=True)
    assert grey.channels == 1 and len(grey) == 4 and grey.labels is None


@pytest.mark.parametrize("x, match", [
    (np.zeros((4, 5)), r"shape \(4, 5\); expected \(N, H, W\) or \(N, C, H, W\)"),
    (np.zeros((4, 5, 5, 5, 1)), "expected"),
    (np.zeros((4, 8, 8, 3)), "channels last"),
    (np.zeros((0, 8, 8)), "holds no images"),
    (np.array([[[np.nan]]]), "NaN"),
    (np.array([[["a"]]]), "dtype"),
])
def test_bad_x_shapes_and_values(tmp_path, x, match):
    np.savez(tmp_path / "bad.npz", x=x)
    with pytest.raises(DataError, match=match) as err:        # (a NaN row is skipped; a file of only those is refused)
        load_array(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)


def test_bad_keys_and_labels(tmp_path):
    np.savez(tmp_path / "nox.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="no array named 'x'.*images"):
        read_arrays(tmp_path / "nox.npz")
    np.savez(tmp_path / "extra.npz", x=np.zeros((2, 4, 4)), z=np.zeros(2))
    with pytest.raises(DataError, match="unexpected keys"):
        read_arrays(tmp_path / "extra.npz")
    np.savez(tmp_path / "ylen.npz", x=np.zeros((3, 4, 4)), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"y has shape \(2,\); expected \(3,\)"):
        read_arrays(tmp_path / "ylen.npz")
    np.savez(tmp_path / "yfloat.npz", x=np.zeros((2, 4, 4)), y=np.array([1.0, 0.5]))
    with pytest.raises(DataError, match=r"yfloat.npz: y has dtype float64 \(y\[1\] = 0.5\); labels must be integers"):
        read_arrays(tmp_path / "yfloat.npz")


def test_negative_labels_are_refused_at_load_naming_the_first(tmp_path):
    """A label of -1 loaded: a supervised model failed at its first batch holding one ("IndexError: Target -1 is out
    of bounds"), the run folder left behind; the class count (the largest label + 1) ignored it."""
    np.savez(tmp_path / "neg.npz", x=np.zeros((5, 4, 4)), y=np.array([0, 1, -1, 2, -3]))
    with pytest.raises(DataError, match=r"neg.npz: y\[2\] = -1: labels are class numbers 0, 1, 2, ... \(2 of 5 are negative"):
        read_arrays(tmp_path / "neg.npz")
    assert read_arrays(_save(tmp_path / "u8.npz", y=np.array([0, 255, 3, 1, 0], np.uint8)))[1].tolist() == [0, 255, 3, 1, 0]


def test_a_label_past_a_million_classes_is_refused_naming_it(tmp_path):
    """y = 2**40 loaded, and a supervised model asked for 2**40 + 1 outputs at its first batch."""
    path = _save(tmp_path / "big.npz", y=np.array([0, 1, 2**40, 2], np.int64))
    with pytest.raises(DataError, match=r"big.npz: y\[2\] = 1099511627776: .* 1,099,511,627,777 classes \(at most 1,048,576\)"):
        read_arrays(path)
    assert npz_labels(_save(tmp_path / "ok.npz", y=np.array([0, 2**20 - 1]))).max() == 2**20 - 1


def _save(path, y):
    np.savez(path, x=np.zeros((len(y), 4, 4)), y=y)
    return path


def test_pickled_objects_are_refused_not_loaded(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickled"):
        read_arrays(tmp_path / "obj.npy")


def test_missing_wrong_suffix_and_garbage_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_arrays(tmp_path / "none.npz")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"\.npy or \.npz"):
        read_arrays(tmp_path / "x.csv")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.npz: not a readable"):
        read_arrays(tmp_path / "junk.npz")


def test_big_endian_uint16_is_scaled_like_little_endian(tmp_path):
    x = np.random.default_rng(0).integers(0, 65536, (3, 8, 8)).astype(np.uint16)
    np.save(tmp_path / "le.npy", x)
    np.save(tmp_path / "be.npy", x.astype(">u2"))
    np.testing.assert_array_equal(read_arrays(tmp_path / "be.npy")[0], read_arrays(tmp_path / "le.npy")[0])
    assert read_arrays(tmp_path / "be.npy")[0].max() <= 1.0


def test_an_array_sources_run_is_checked_before_its_folder_is_made(tmp_path):
    """preflight runs its dry batch and the ZCA limit for arrays too (their shape is not 'only the file can tell'),
    and checks the file whatever it is, not only an existing .npy/.npz: else each of these fails after the run's
    folder is written."""
    from downpour.config import ConfigError
    from downpour.preflight import check_run_config, new_run_config

    np.save(tmp_path / "rgb.npy", np.random.default_rng(0).random((6, 3, 40, 40), dtype=np.float32))
    (tmp_path / "notes.txt").write_text("hi")

    def check(*sets):
        return check_run_config(new_run_config("cat-demo", [("data.source", "array"), *sets]))

    check(("data.path", str(tmp_path / "rgb.npy")), ("data.size", 32), ("data.samples", 20))   # fits: no error
    with pytest.raises(ConfigError, match="model.kernels"):           # the dry batch: 4x4 crops under 8x8 filters
        check(("data.path", str(tmp_path / "rgb.npy")), ("data.size", 4))
    with pytest.raises(ConfigError, match="data.whiten = 'zca' on 3x64x64"):
        check(("data.path", str(tmp_path / "rgb.npy")), ("data.size", 64), ("data.grey", False), ("data.whiten", "zca"))
    with pytest.raises(DataError, match=r"notes.txt' must end in \.npy or \.npz"):
        check(("data.path", str(tmp_path / "notes.txt")))
    (tmp_path / "photos").mkdir()          # a folder of images given to the array source: not "must end in .npy"
    with pytest.raises(DataError, match=r"photos' is a folder, and data.source = 'array' reads one \.npy or \.npz "
                                        r"file \(a folder of images: data.source = 'folder'"):
        check(("data.path", str(tmp_path / "photos")))
    with pytest.raises(ConfigError, match="gone.npz' does not exist"):
        check(("data.path", str(tmp_path / "gone.npz")))


def test_an_arrays_enlarged_and_skipped_rows_are_counted_as_rows_not_files(tmp_path, caplog):
    """Crops of 4x4 rows at data.size 8 are enlarged, and a NaN row skipped: the log and the report counted them as
    "files" of a single .npy ("crops mode enlarged 3 files ... leave such files out", "1 file skipped, unreadable")."""
    from downpour.analysis.report_notes import data_note
    x = np.random.default_rng(0).random((4, 4, 4)).astype(np.float32)
    x[1, 0, 0] = np.nan
    np.save(tmp_path / "small.npy", x)
    ds = build_dataset(DataConfig(source="array", path=str(tmp_path / "small.npy"), mode="crops", size=8,
                                  normalize="none", whiten="none"), seed=0)
    said = [m for m in caplog.messages if "crops mode enlarged" in m]
    assert len(said) == 1 and "enlarged 3 rows smaller than data.size = 8" in said[0], said
    assert "leave such rows out" in said[0]
    note = data_note(ds.info)
    assert "3 rows enlarged to data.size" in note and "1 row skipped (first: " in note and "file" not in note, note
    assert "2 files enlarged" in data_note({"upscaled": [{"file": "a.png", "size": "4x4"}] * 2, "n_upscaled": 2})
