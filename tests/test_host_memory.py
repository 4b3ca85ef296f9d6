"""keep_freed_host_memory: blocks of activation size come from glibc's heap and stay there when
freed, so the next training step reuses them instead of mapping and faulting them in again."""

import json
import platform
import subprocess
import sys

import pytest

LIBC, VERSION = platform.libc_ver()
GLIBC = platform.system() == "Linux" and LIBC == "glibc"
MALLINFO2 = GLIBC and tuple(map(int, VERSION.split(".")[:2])) >= (2, 33)  # the probe reads mallinfo2

# In a fresh process: call keep_freed_host_memory twice (with "keep"), malloc 20 MiB, free it, and
# report glibc's own accounting (mallinfo2): the heap's size before, the bytes in mmapped blocks and
# the heap's size while the block was held, and the heap's size after the free.
PROBE = """
import ctypes, json, sys
from cskd.training.host_memory import keep_freed_host_memory
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
before = libc.mallinfo2().arena
took = [keep_freed_host_memory(), keep_freed_host_memory()] if sys.argv[1] == "keep" else []
block = libc.malloc(20 * 2**20)
held = libc.mallinfo2()
libc.free(block)
print(json.dumps({"took": took, "before": before, "mmapped": held.hblkhd, "heap": held.arena,
                  "after_free": libc.mallinfo2().arena}))
"""
MIB = 2**20


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not MALLINFO2, reason="needs glibc >= 2.33")
def test_activation_sized_blocks_come_from_the_heap_and_stay_there():
    """Each of the three settings, seen in glibc's accounting: the 20 MiB block comes from the heap
    (mmap threshold 32 MiB), the heap grows by the block and 64 MiB more at once (top pad), and keeps
    its size after the free (trim threshold)."""
    default = _probe("default")
    assert default["mmapped"] >= 20 * MIB  # glibc's default: mapped on its own ...
    assert default["heap"] - default["before"] < 20 * MIB  # ... not in the heap
    kept = _probe("keep")
    assert kept["took"] == [True, True]  # applied on the first call; the second says the same
    assert kept["mmapped"] < 20 * MIB  # now from the heap ...
    assert kept["heap"] - kept["before"] >= (20 + 64 - 2) * MIB  # ... grown with 64 MiB to spare ...
    assert kept["after_free"] == kept["heap"]  # ... which keeps it all after the free, for the next step


def test_it_reports_false_where_there_is_no_libc_to_tune(monkeypatch):
    from cskd.training import host_memory

    # glibc's <malloc.h>: M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3
    assert (host_memory.M_TRIM_THRESHOLD, host_memory.M_TOP_PAD, host_memory.M_MMAP_THRESHOLD) == (-1, -2, -3)
    assert host_memory.keep_freed_host_memory() == GLIBC
    monkeypatch.setattr(host_memory, "_done", None)  # as in a fresh process on a system without a C library
    monkeypatch.setattr(host_memory.ctypes.util, "find_library", lambda name: None)
    assert host_memory.keep_freed_host_memory() is False
    assert host_memory.keep_freed_host_memory() is False
