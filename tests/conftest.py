import os
from pathlib import Path

# Set before transformers / datasets are imported: they read these once.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from lsgbench.config import config_dir  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test when the samples are absent."""
    path = Path(os.environ.get("LSGBENCH_SHARED_DATA", SHARED_DATA)) / name
    if not path.is_dir():
        pytest.skip(f"shared data sample {name!r} not found at {path}")
    return path


@pytest.fixture
def make_cfg(tmp_path):
    """Compose the real configs with overrides; results and caches go to a temporary folder."""

    def _make(*overrides: str):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose("config", overrides=[f"store_dir={tmp_path / 'store'}",
                                                f"cache_dir={tmp_path / 'cache'}", *overrides])

    return _make
