"""Array files that can be read lazily: plain uncompressed `.npz` with a JSON `meta` member.

`np.savez` stores every array as an uncompressed ("stored") zip member holding a `.npy` file, so
the bytes of each array lie contiguously in the file and can be memory-mapped: a reader touches
only the rows it uses (a 50,000-image predictions file need not be read to show 24 thumbnails).
The zip format keeps a CRC-32 of every member, which `verify()` checks: a flipped byte anywhere
is found without a second checksum. Any numpy user can still read the file with `np.load`.

Object arrays are refused (no pickle is ever loaded); `meta` is a 0-d unicode array holding a
JSON object.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

META = "meta"
_LOCAL_HEADER = 30  # bytes of a zip local file header before the name and the extra field
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


class NpzFile:
    """Lazy reader of an npz written by `write_npz` (or any uncompressed npz).

    `meta` is read at once; `array(name)` returns a read-only memory map of a stored member (a
    compressed member is read whole). Raises NpzError for anything unreadable."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._specs: dict[str, tuple] = {}
        try:
            with zipfile.ZipFile(self.path) as z, open(self.path, "rb") as raw:
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
        start = info.header_offset + _LOCAL_HEADER + int.from_bytes(header[26:28], "little") \
            + int.from_bytes(header[28:30], "little")
        raw.seek(start)
        version = np.lib.format.read_magic(raw)
        shape, fortran, dtype = _read_header(raw, version)
        offset = raw.tell()
        if offset - start + dtype.itemsize * int(np.prod(shape)) > info.file_size:
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
        """Member `name` as a read-only array: a memory map when it is stored uncompressed."""
        if name not in self:
            raise KeyError(name)
        return self._load(name)

    def _load(self, name: str) -> np.ndarray:
        info, offset, dtype, shape, fortran = self._specs[name]
        if offset is None or int(np.prod(shape)) == 0:
            with zipfile.ZipFile(self.path) as z, z.open(info) as f:
                a = np.lib.format.read_array(f, allow_pickle=False)
        else:
            a = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape,
                          order="F" if fortran else "C")
        a.flags.writeable = False
        return a

    def verify(self) -> None:
        """Check every member's CRC-32 against the zip directory; NpzError naming the first member
        whose bytes changed."""
        try:
            with zipfile.ZipFile(self.path) as z, open(self.path, "rb") as raw:
                for info in z.infolist():
                    if info.compress_type != zipfile.ZIP_STORED:
                        z.read(info)  # zipfile checks the CRC of what it decompresses
                        continue
                    raw.seek(info.header_offset)
                    header = raw.read(_LOCAL_HEADER)
                    raw.seek(info.header_offset + _LOCAL_HEADER + int.from_bytes(header[26:28], "little")
                             + int.from_bytes(header[28:30], "little"))
                    crc, left = 0, info.file_size
                    while left > 0:
                        chunk = raw.read(min(left, _CRC_CHUNK))
                        if not chunk:
                            break
                        crc, left = zlib.crc32(chunk, crc), left - len(chunk)
                    if left or crc != info.CRC:
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
