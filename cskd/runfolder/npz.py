"""Array files that can be read lazily: plain uncompressed `.npz` with a JSON `meta` member.

`np.savez` stores every array as an uncompressed ("stored") zip member holding a `.npy` file, so
the bytes of each array lie contiguously in the file and can be memory-mapped: a reader touches
only the rows it uses (a 50,000-image predictions file need not be read to show 24 thumbnails).
The zip format keeps a CRC-32 of every member, which `verify()` checks: a flipped byte anywhere
is found without a second checksum. Any numpy user can still read the file with `np.load`.

Object arrays are refused (no pickle is ever loaded); `meta` is a 0-d unicode array holding a
JSON object.

A reader remembers the file it opened (device and inode) and maps it whole at once. Each array is
mapped on its own from the path when the path still names that file — so its pages leave memory
with the array — and read from the mapping made when opened otherwise: a file replaced afterwards
(cskd replaces files atomically, under a new inode) leaves a reader in use reading the old,
complete contents, never new bytes at old offsets.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

META = "meta"
_LOCAL_HEADER = 30  # bytes of a zip local file header before the name and the extra field


def _data_start(info: zipfile.ZipInfo, header: bytes) -> int:
    """Offset of a stored member's bytes: its local header (`header`, its first _LOCAL_HEADER
    bytes), then its name and extra field, whose lengths the header gives."""
    return info.header_offset + _LOCAL_HEADER + int.from_bytes(header[26:28], "little") \
        + int.from_bytes(header[28:30], "little")
_CRC_CHUNK = 64 << 20


def write_npz(f, arrays: dict, meta: dict) -> None:
    """Write `arrays` (name -> ndarray, no object dtype) and `meta` (JSON-able) to the open binary
    file `f` as an uncompressed npz."""
    if META in arrays:
        raise ValueError(f"{META!r} is reserved for the JSON metadata")
    for name, a in arrays.items():
        if np.asarray(a).dtype.hasobject:
            raise ValueError(f"array {name!r} has an object dtype; it cannot be stored without pickle")
    np.savez(f, **arrays, **{META: np.array(json.dumps(meta, sort_keys=True))})


class NpzError(ValueError):
    """The file is not a readable npz of the expected form (truncated, not a zip, object arrays...)."""


class _View(io.RawIOBase):
    """A read-only file over a memory mapping with its own position (so that readers in several
    threads never move each other's)."""

    def __init__(self, buffer):
        self._buf, self._pos = memoryview(buffer), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._buf)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b) -> int:
        n = max(0, min(len(b), len(self._buf) - self._pos))
        b[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n


class NpzFile:
    """Lazy reader of an npz written by `write_npz` (or any uncompressed npz).

    `meta` is read at once; `array(name)` returns a read-only view of a stored member in the
    file's memory mapping (a compressed member is read whole). Raises NpzError for anything
    unreadable."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._specs: dict[str, tuple] = {}
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                self._identity = (st.st_dev, st.st_ino)
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # ValueError when empty
            with zipfile.ZipFile(self._reader()) as z:
                raw = self._reader()
                for info in z.infolist():
                    if not info.filename.endswith(".npy"):
                        continue
                    name = info.filename[:-4]
                    self._specs[name] = self._spec(z, raw, info)
            meta = self._load(META) if META in self._specs else np.array("{}")
            self.meta = json.loads(str(meta))
            if not isinstance(self.meta, dict):
                raise NpzError("its meta entry is not a JSON object")
        except NpzError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
            raise NpzError(f"not a readable npz ({type(e).__name__}: {e})") from None

    def _reader(self):
        return io.BufferedReader(_View(self._map))

    @staticmethod
    def _spec(z: zipfile.ZipFile, raw, info: zipfile.ZipInfo) -> tuple:
        """(info, data offset or None, dtype, shape, fortran order) of one member."""
        if info.compress_type != zipfile.ZIP_STORED:
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = _read_header(f, version)
            return info, None, dtype, shape, fortran
        raw.seek(info.header_offset)
        header = raw.read(_LOCAL_HEADER)
        if len(header) < _LOCAL_HEADER or header[:4] != b"PK\x03\x04":
            raise NpzError(f"member {info.filename} has a damaged header")
        start = _data_start(info, header)
        raw.seek(start)
        version = np.lib.format.read_magic(raw)
        shape, fortran, dtype = _read_header(raw, version)
        offset = raw.tell()
        end = offset + dtype.itemsize * int(np.prod(shape))
        if end - start > info.file_size or end > raw.seek(0, io.SEEK_END):
            raise NpzError(f"member {info.filename} is shorter than its header says")
        return info, offset, dtype, shape, fortran

    def names(self) -> list[str]:
        return [n for n in self._specs if n != META]

    def __contains__(self, name: str) -> bool:
        return name in self._specs and name != META

    def shape(self, name: str) -> tuple:
        return tuple(self._specs[name][3])

    def dtype(self, name: str) -> np.dtype:
        return self._specs[name][2]

    def array(self, name: str) -> np.ndarray:
        """Member `name` as a read-only array: a view of the mapping when it is stored uncompressed."""
        if name not in self:
            raise KeyError(name)
        return self._load(name)

    def _load(self, name: str) -> np.ndarray:
        info, offset, dtype, shape, fortran = self._specs[name]
        count = int(np.prod(shape))
        if offset is None or count == 0:
            with zipfile.ZipFile(self._reader()) as z, z.open(info) as f:
                a = np.lib.format.read_array(f, allow_pickle=False)
        else:
            buffer, at = self._own_map(offset, dtype.itemsize * count)
            a = np.frombuffer(buffer, dtype=dtype, count=count, offset=at).reshape(
                shape, order="F" if fortran else "C")
        a.flags.writeable = False
        return a

    def _own_map(self, offset: int, nbytes: int) -> tuple:
        """(buffer, offset in it) of bytes [offset, offset + nbytes): a mapping of their own while
        the path still names the file opened (released with the array), else the whole-file
        mapping made when it was opened (the file was replaced or removed since)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if (st.st_dev, st.st_ino) == self._identity:
                    start = offset - offset % mmap.ALLOCATIONGRANULARITY
                    return mmap.mmap(f.fileno(), offset + nbytes - start, access=mmap.ACCESS_READ,
                                     offset=start), offset - start
        except (OSError, ValueError):
            pass
        return self._map, offset

    def _release(self, start: int, stop: int) -> None:
        """Drop the pages of bytes [start, stop) from this process's resident memory (they stay in
        the page cache and come back when read): a checksum pass must not keep the whole file."""
        first = start - start % mmap.PAGESIZE
        with contextlib.suppress(AttributeError, OSError, ValueError):  # madvise: Linux, Python >= 3.8
            self._map.madvise(mmap.MADV_DONTNEED, first, stop - first)

    def verify(self) -> None:
        """Check every member's CRC-32 against the zip directory; NpzError naming the first member
        whose bytes changed."""
        try:
            view = memoryview(self._map)
            with zipfile.ZipFile(self._reader()) as z:
                for info in z.infolist():
                    if info.compress_type != zipfile.ZIP_STORED:
                        z.read(info)  # zipfile checks the CRC of what it decompresses
                        continue
                    header = bytes(view[info.header_offset:info.header_offset + _LOCAL_HEADER])
                    start = _data_start(info, header)
                    end = start + info.file_size
                    crc = 0
                    for at in range(start, min(end, len(view)), _CRC_CHUNK):
                        stop = min(at + _CRC_CHUNK, end, len(view))
                        crc = zlib.crc32(view[at:stop], crc)
                        self._release(at, stop)
                    if end > len(view) or crc != info.CRC:
                        raise NpzError(f"the bytes of {info.filename} do not match their checksum (damaged file)")
        except NpzError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise NpzError(f"not a readable npz ({type(e).__name__}: {e})") from None


def _read_header(f, version) -> tuple:
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise NpzError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise NpzError("it holds an object array (refused: reading it would unpickle)")
    return shape, fortran, dtype
