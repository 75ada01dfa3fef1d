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
