"""IDX files (the MNIST container format), gzip-compressed or raw.

Layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic ``00 00 TT ND`` (TT the
element type, ND the number of dimensions), ND big-endian uint32 sizes, then the elements in C order,
big-endian. Every check here raises :class:`DataFileError` naming the file, so a broken download says
which file to delete."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataFileError", "read_idx", "read_idx_header", "write_idx", "idx_bytes", "IDX_DTYPES"]

# type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class DataFileError(ValueError):
    """A data file is missing, corrupt, truncated, of the wrong shape or has the wrong hash.

    The message always names the file; ``.path`` holds it too."""

    def __init__(self, path, message: str):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


def _open(path: Path):
    """Open ``path`` for binary reading, transparently gunzipping (detected by magic bytes, not name)."""
    f = open(path, "rb")
    head = f.read(2)
    f.seek(0)
    if head == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=f, mode="rb"), f
    return f, f


def _read_header(f, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = f.read(4)
    if len(magic) < 4:
        raise DataFileError(path, f"not an IDX file: only {len(magic)} bytes, the header needs 4")
    if magic[0] != 0 or magic[1] != 0:
        raise DataFileError(path, f"not an IDX file: magic {magic.hex()} does not start with 0000")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        raise DataFileError(path, f"not an IDX file: unknown element type 0x{code:02x} (magic {magic.hex()})")
    if ndim == 0:
        raise DataFileError(path, f"IDX header declares 0 dimensions (magic {magic.hex()})")
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataFileError(path, f"truncated IDX header: {ndim} dims need {4 * ndim} bytes, got {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw)
    return IDX_DTYPES[code], tuple(int(s) for s in shape)


def read_idx_header(path) -> tuple[np.dtype, tuple[int, ...]]:
    """Return ``(dtype, shape)`` from the header of an IDX file without reading its data."""
    path = Path(path)
    try:
        f, raw = _open(path)
        with raw, f:
            return _read_header(f, path)
    except FileNotFoundError as e:
        raise DataFileError(path, "file not found") from e
    except (OSError, EOFError, zlib.error) as e:
        raise DataFileError(path, f"cannot read IDX header: {e}") from e


def read_idx(path, expected_shape: tuple[int, ...] | None = None, expected_dtype=None) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian numpy array.

    Checks the magic, the header, that the data length equals the product of the dimensions (no
    truncation, no trailing bytes), and optionally the shape and dtype. Errors name the file."""
    path = Path(path)
    try:
        f, raw = _open(path)
    except FileNotFoundError as e:
        raise DataFileError(path, "file not found") from e
    try:
        with raw, f:
            dtype, shape = _read_header(f, path)
            if expected_shape is not None and tuple(shape) != tuple(expected_shape):
                raise DataFileError(path, f"IDX shape {shape}, expected {tuple(expected_shape)}")
            if expected_dtype is not None and dtype.newbyteorder("=") != np.dtype(expected_dtype):
                want_dt = np.dtype(expected_dtype).name
                raise DataFileError(path, f"IDX element type {dtype.name}, expected {want_dt}")
            n = int(np.prod(shape, dtype=np.int64))
            arr = np.empty(n, dtype=dtype)
            want = arr.nbytes
            buf = memoryview(arr).cast("B")
            got = 0
            while got < want:
                k = f.readinto(buf[got:])
                if not k:
                    break
                got += k
            if got < want:
                raise DataFileError(
                    path, f"truncated: header {shape} needs {want} data bytes, file has only {got}"
                )
            extra = f.read(1)
            if extra:
                raise DataFileError(path, f"trailing bytes: shape {shape} needs {want} data bytes, got more")
    except DataFileError:
        raise
    except (OSError, EOFError, zlib.error) as e:  # includes gzip.BadGzipFile and truncated gzip streams
        raise DataFileError(path, f"corrupt or truncated file: {e}") from e
    return arr.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path, array, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip it when ``compress`` (default: when the name ends in .gz).

    The file is written to ``PATH.tmp`` and renamed, so a crash never leaves a half-written file."""
    path = Path(path)
    a = np.asarray(array)
    if compress is None:
        compress = path.suffix == ".gz"
    data = idx_bytes(a)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            if compress:
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as g:
                    g.write(data)
            else:
                raw.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def idx_bytes(array) -> bytes:
    """The raw (uncompressed) IDX encoding of ``array``, for tests and hashing."""
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.ndim == 0 or a.ndim > 255:
        raise ValueError(f"IDX needs an array with 1..255 dimensions, got {a.ndim}")
    code = _CODES.get((a.dtype.kind, a.dtype.itemsize))
    if code is None:
        raise ValueError(f"dtype {a.dtype} has no IDX type (use uint8, int8, int16, int32, float32, float64)")
    if any(s >= 2**32 for s in a.shape):
        raise ValueError(f"dimension too large for IDX: {a.shape}")
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + np.ascontiguousarray(a, dtype=IDX_DTYPES[code]).tobytes()
