"""lsgbench: fine-tune and benchmark efficient long-sequence attention models."""

__version__ = "0.1.0"
