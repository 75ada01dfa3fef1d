"""What every layer of one forward would otherwise remake from the same tensor.

transformers hands every layer of a forward the same padding-mask object, so what a kernel derives from it alone
(the padding mask with the global tokens, a FlexAttention BlockMask) is made by the first layer and reused by the
others: one build per forward instead of one per layer call (tens of launches and milliseconds of host time each).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable

import torch

SIZE = 8  # entries kept: a forward's few (the padding mask with globals, a BlockMask per layout), and the last ones
_made: collections.OrderedDict = collections.OrderedDict()


def once_per(anchor: torch.Tensor | None, key: Hashable, make: Callable):
    """make(), remembered for this anchor tensor (or None: no tensor) and `key`, which must name everything else
    the value depends on (shapes, knobs, device). The anchor is held, so its id stays its own while remembered;
    an in-place change to it (its version counter) makes the value anew."""
    # what inference made (inference tensors) is kept apart: autograd cannot save it for training
    entry = (id(anchor), _version(anchor), torch.is_inference_mode_enabled(), key)
    hit = _made.get(entry)
    if hit is not None and hit[0] is anchor:
        _made.move_to_end(entry)
        return hit[1]
    value = make()
    _made[entry] = (anchor, value)
    while len(_made) > SIZE:
        _made.popitem(last=False)
    return value


def _version(anchor) -> int | None:
    try:
        return None if anchor is None else anchor._version
    except RuntimeError:  # an inference tensor has no version counter, and cannot be changed in place outside one
        return None


def clear() -> None:
    _made.clear()
