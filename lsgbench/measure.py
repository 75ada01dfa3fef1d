"""Wall time and peak memory of a phase, measured the same way for training and evaluation.

GPU: `torch.cuda.max_memory_allocated` after a reset (allocator peak, weights included).
CPU: the process's peak resident set (VmHWM), reset at the start of the phase through
/proc/self/clear_refs where the kernel allows it; otherwise the peak since the process began.
Both: how busy the machine was with other work (`busy_elsewhere`), so that speeds measured while
another job shared the CPUs can be told apart.
"""

from __future__ import annotations

import collections
import ctypes
import os
import resource
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes


def device_name(device: torch.device) -> str:
    """What records and results name the device: the GPU's model, or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


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


BUSY = 0.2  # busy_elsewhere above this: the speed was measured on a shared machine (the report says so)


def busy_note(shares: dict) -> str | None:
    """A note for speeds measured while other processes kept the CPUs busy ({what was timed: share}), or None."""
    busy = {what: share for what, share in shares.items() if share is not None and share > BUSY}
    if busy:
        return "speed measured on a shared machine: other processes used " + \
            ", ".join(f"{share:.0%} of the CPUs during {what}" for what, share in busy.items())
    return None


def machine_busy_s() -> float | None:
    """CPU-seconds every process on the machine has spent busy since boot (/proc/stat; None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user .. steal (guest time is inside user)


def own_cpu_s() -> float:
    """CPU-seconds of this process and its finished children (data-loader workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class BusyElsewhere:
    """The share of the machine's CPU time other processes used between start() and stop(): 0 on an
    otherwise idle machine, 0.5 when another job kept half of the cores busy; None where unknown."""

    def start(self):
        self._start = (time.perf_counter(), machine_busy_s(), own_cpu_s())
        return self

    def stop(self) -> float | None:
        (wall0, busy0, own0), wall = self._start, time.perf_counter()
        busy = machine_busy_s()
        if busy is None or busy0 is None or wall <= wall0:
            return None
        others = (busy - busy0) - (own_cpu_s() - own0)
        return round(min(max(others / ((wall - wall0) * (os.cpu_count() or 1)), 0.0), 1.0), 3)


class Phase:
    """`with Phase(device) as p: ...` then p.seconds, p.peak_mem_mb and p.busy_elsewhere."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0
        self.peak_mem_mb = 0.0
        self.busy_elsewhere = None

    def __enter__(self):
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_cpu_peak()
        self._busy = BusyElsewhere().start()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start
        self.busy_elsewhere = self._busy.stop()
        if self.device.type == "cuda":
            self.peak_mem_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak_mem_mb = cpu_peak_rss_mb()
        return False


# Ops that move no data and launch no kernel: allocations and the like (views are told by their schema).
_NO_KERNEL = frozenset({"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "detach", "alias",
                        "lift_fresh", "set_", "resize_", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset",
                        "is_same_size", "_has_compatible_shallow_copy_type", "record_stream"})


class KernelOps(TorchDispatchMode):
    """Counts the ATen ops a block of code dispatches that launch a kernel (views and bare allocations left out),
    by name in `ops`. The count is the same on a CPU and a GPU (autograd's backward included), so it shows on a
    CPU what a GPU pays per launch: `with KernelOps() as ops: ...; ops.total`. A compiled kernel run through
    `KernelOps.opaque` counts as one op (the mode does not look inside it)."""

    active: list["KernelOps"] = []

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __enter__(self):
        KernelOps.active.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        KernelOps.active.remove(self)
        return super().__exit__(*exc)

    @staticmethod
    def opaque(name: str, run):
        """run(), counted as one op `name` by the KernelOps counting now (if any), which is set aside meanwhile."""
        if not KernelOps.active:
            return run()
        KernelOps.active[-1].ops[name] += 1
        with _disable_current_modes():
            return run()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not (func.is_view or name in _NO_KERNEL):
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def kernel_ops(step) -> int:
    """The kernel ops one run of `step` launches (KernelOps)."""
    with KernelOps() as counted:
        step()
    return counted.total


def profile_step(step, device: torch.device, path, top: int = 15) -> dict:
    """Profile one run of `step` and write a summary to `path`: the top ops by device time (CPU time on a CPU), how
    many kernels the device ran, and host vs device time (a step whose host time exceeds its device time is bound
    by launching). Returns the summary's figures."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
        start = time.perf_counter()
        step()
        synchronize(device)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    device_us = sum(getattr(e, "self_device_time_total", 0) for e in events if e.device_type == DeviceType.CUDA)
    figures = {"wall_ms": wall * 1e3, "host_ms": sum(e.self_cpu_time_total for e in events) / 1e3,
               "device_ms": device_us / 1e3 if cuda else None,
               "device_kernels": sum(e.count for e in events if e.device_type == DeviceType.CUDA) if cuda else None,
               "aten_calls": sum(e.count for e in events if e.key.startswith("aten::"))}
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    lines = [f"{k}: {'—' if v is None else round(v, 1)}" for k, v in figures.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n\n" + events.table(sort_by=sort, row_limit=top) + "\n")
    return {**figures, "file": path.name}
