"""keep_freed_host_memory: blocks of activation size come from glibc's heap and stay there when
freed, so the next training step reuses them instead of mapping and faulting them in again."""

import platform
import subprocess
import sys
import types

import pytest

LIBC, VERSION = platform.libc_ver()
GLIBC = platform.system() == "Linux" and LIBC == "glibc"
MALLINFO2 = GLIBC and tuple(map(int, VERSION.split(".")[:2])) >= (2, 33)  # the probe reads mallinfo2

# In a fresh process: malloc 20 MiB, free it, and report glibc's own accounting (mallinfo2) of
# the bytes in mmapped blocks while it was held, and of the heap's size after the free.
PROBE = """
import ctypes, sys
from cskd.training.host_memory import keep_freed_host_memory
if sys.argv[1] == "keep":
    assert keep_freed_host_memory()
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
block = libc.malloc(20 * 2**20)
mmapped = libc.mallinfo2().hblkhd
libc.free(block)
print(mmapped, libc.mallinfo2().arena)
"""


def _probe(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    mmapped, heap = map(int, out.stdout.split())
    return mmapped, heap


@pytest.mark.skipif(not MALLINFO2, reason="needs glibc >= 2.33")
def test_activation_sized_blocks_come_from_the_heap_and_stay_there():
    mib = 2**20
    mmapped, _ = _probe("default")
    assert mmapped >= 20 * mib  # glibc's default: mapped on its own, unmapped again when freed
    mmapped, heap = _probe("keep")
    assert mmapped < 20 * mib  # now from the heap ...
    assert heap >= 20 * mib  # ... which keeps it after the free, ready for the next step


def test_it_is_applied_once_and_reports_whether_it_took(monkeypatch):
    from cskd.training import host_memory

    first = host_memory.keep_freed_host_memory()
    assert first == GLIBC
    # A fresh process: the three settings go to mallopt on the first call only.
    calls = []

    def mallopt(param, value):
        calls.append((param, value))
        return 1

    # a plain function takes the argtypes/restype attributes a ctypes function gets
    monkeypatch.setattr(host_memory, "_done", None)
    monkeypatch.setattr(host_memory.ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda name: types.SimpleNamespace(mallopt=mallopt))
    assert host_memory.keep_freed_host_memory() is True
    assert host_memory.keep_freed_host_memory() is True
    assert sorted(calls) == sorted([(host_memory.M_MMAP_THRESHOLD, host_memory.MMAP_THRESHOLD),
                                    (host_memory.M_TRIM_THRESHOLD, host_memory.TRIM_THRESHOLD),
                                    (host_memory.M_TOP_PAD, host_memory.TOP_PAD)])
