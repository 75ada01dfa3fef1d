"""Processes sharing a store run one configuration at a time; a claim left by a killed process is taken over."""

import subprocess
import sys
import threading
import time

from lsgbench.record import Claim


def test_a_second_claim_waits_until_the_first_is_released(tmp_path):
    order = []
    first = Claim(tmp_path, "point", poll_s=0.05).__enter__()

    def second():
        with Claim(tmp_path, "point", poll_s=0.05):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert order == [] and thread.is_alive()  # still waiting
    order.append("first done")
    first.__exit__(None, None, None)
    thread.join(timeout=5)
    assert order == ["first done", "second"]
    assert not (tmp_path / ".claims" / "point.claim").exists()


def test_a_claim_of_a_process_that_is_gone_is_taken_over(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import platform

    (tmp_path / ".claims").mkdir()
    (tmp_path / ".claims" / "point.claim").write_text(f"{platform.node()} {gone.stdout.strip()}")
    start = time.perf_counter()
    with Claim(tmp_path, "point", poll_s=0.05):
        pass
    assert time.perf_counter() - start < 2
