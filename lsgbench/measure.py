"""Wall time and peak memory of a phase, measured the same way for training and evaluation.

GPU: `torch.cuda.max_memory_allocated` after a reset (allocator peak, weights included).
CPU: the process's peak resident set (VmHWM), reset at the start of the phase through
/proc/self/clear_refs where the kernel allows it; otherwise the peak since the process began.
"""

from __future__ import annotations

import ctypes
import os
import resource
import time

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_cpu_peak() -> None:
    """Start a new peak at the current resident set. Freed heap memory is first handed back to the
    system (glibc's malloc_trim): memory the allocator still held from earlier work would otherwise
    be reused without raising the resident set, and a phase would measure a peak of 0."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def cpu_rss_mb() -> float:
    """The process's resident set now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Phase:
    """`with Phase(device) as p: ...` then p.seconds and p.peak_mem_mb."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0
        self.peak_mem_mb = 0.0

    def __enter__(self):
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_cpu_peak()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start
        if self.device.type == "cuda":
            self.peak_mem_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak_mem_mb = cpu_peak_rss_mb()
        return False
