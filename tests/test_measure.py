"""CPU peak memory: a phase that reuses heap memory freed earlier still measures what it holds."""

import torch

from lsgbench import measure


def test_a_phase_reusing_freed_heap_memory_measures_its_peak():
    def work():
        return [torch.ones(8192) for _ in range(8000)]  # 32 KB tensors from the heap: ~250 MB

    kept = work()
    del kept
    measure.reset_cpu_peak()
    base = measure.cpu_rss_mb()
    kept = work()
    assert measure.cpu_peak_rss_mb() - base > 200  # without handing the freed heap back: ~0
    del kept


def test_busy_elsewhere_sees_another_process_and_not_this_one():
    import os
    import subprocess
    import sys
    import time

    import pytest

    def during(work):
        busy = measure.BusyElsewhere().start()
        work()
        return busy.stop()

    def spin():
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            pass

    background = during(lambda: time.sleep(1.0))
    if background > 0.2:
        pytest.skip(f"the machine is already {background:.0%} busy with other work: nothing to compare against")
    assert during(spin) < background + 0.2  # this process's own work is not "elsewhere"
    other = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 2.5\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)  # the other process is running
        share = during(lambda: time.sleep(1.0))
    finally:
        other.wait()
    assert share - background > 0.7 / os.cpu_count()  # it kept one core busy


def test_the_report_notes_speeds_measured_on_a_shared_machine():
    from lsgbench.measure import busy_note

    assert busy_note({"train": 0.05, "eval": None}) is None
    assert busy_note({"train": 0.45, "eval": 0.1}) == \
        "speed measured on a shared machine: other processes used 45% of the CPUs during train"


def test_kernel_ops_count_launching_ops_only_and_a_compiled_kernel_as_one(tmp_path):
    from lsgbench.measure import KernelOps, kernel_ops, profile_step

    a, b = torch.randn(4, 8), torch.randn(8, 3)

    def step():
        c = a @ b                      # mm: 1
        c = c.view(3, 4).t()           # views: 0
        torch.empty(5)                 # an allocation: 0
        return (c + 1).sum()           # add, sum: 2

    assert kernel_ops(step) == 3
    with KernelOps() as ops:
        step()
        KernelOps.opaque("compiled", lambda: [step() for _ in range(5)])  # 15 ops inside, counted as one
    assert ops.total == 4 and ops.ops["compiled"] == 1 and ops.ops["mm"] == 1
    figures = profile_step(step, torch.device("cpu"), tmp_path / "p" / "step.txt")
    assert figures["device_ms"] is None and figures["device_kernels"] is None and figures["aten_calls"] >= 3
    assert figures["file"] == "step.txt" and "aten::mm" in (tmp_path / "p" / "step.txt").read_text()
