import os

# Set before transformers / datasets are imported: they read these once.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from lsgbench.attention import blocks  # noqa: E402
from lsgbench.config import config_dir  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need CUDA: skipped, and said so, without it."""
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def make_cfg(tmp_path):
    """Compose the real configs with overrides; results and caches go to a temporary folder."""

    def _make(*overrides: str):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose("config", overrides=[f"paths.store_dir={tmp_path / 'store'}",
                                                f"paths.cache_dir={tmp_path / 'cache'}", *overrides])

    return _make


@pytest.fixture(params=["whole", "per_block"])
def pieces(request, monkeypatch):
    """Kernels run as pieces of blocks (blocks.attend_pieces); "per_block" makes every piece one block
    of one batch row, so pieces, their slices and the gradients added back from them are exercised."""
    if request.param == "per_block":
        monkeypatch.setattr(blocks, "PIECE_SCORES", 1)
    return request.param
