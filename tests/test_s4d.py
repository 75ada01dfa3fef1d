"""S4D: the FFT convolution equals the step-by-step recurrence; the bidirectional layer sees both sides."""

import pytest
import torch

from lsgbench.attention.s4d import S4D
from lsgbench.errors import ConfigError


def recurrence(layer: S4D, u: torch.Tensor) -> torch.Tensor:
    """x_l = dA x_(l-1) + dB u_l, y_l = 2 Re(C x_l), forward in time and backward in time, plus D u."""
    d_a, d_b, c = layer.discretised()
    B, L, channels = u.shape
    out = layer.d * u
    for direction in (0, 1):
        seq = u if direction == 0 else u.flip(1)
        x = torch.zeros(B, channels, d_a.shape[-1], dtype=d_a.dtype)
        ys = []
        for step in range(L):
            x = d_a[direction] * x + d_b[direction] * seq[:, step, :, None]
            ys.append(2 * (c[direction] * x).sum(-1).real)
        y = torch.stack(ys, dim=1)
        out = out + (y if direction == 0 else y.flip(1))
    return out


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_fft_convolution_equals_the_recurrence(init):
    torch.manual_seed(0)
    layer = S4D(channels=5, state_size=16, init=init).double()
    u = torch.randn(2, 37, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(u), recurrence(layer, u), atol=1e-8, rtol=1e-8)


def test_dt_is_log_uniform_in_range_and_a_b_are_frozen():
    layer = S4D(channels=1000, state_size=8)
    dt = layer.log_dt.exp()
    assert dt.min() >= 1e-3 and dt.max() <= 1e-1 and dt.median() < 0.02  # log-uniform median ~ 0.01
    assert not layer.im_a.requires_grad and not layer.b.requires_grad and layer.c.requires_grad


def test_bidirectional_output_depends_on_both_sides():
    torch.manual_seed(1)
    layer = S4D(channels=3, state_size=8).double()
    u = torch.randn(1, 50, 3, dtype=torch.float64, requires_grad=True)
    layer(u)[0, 25].sum().backward()
    grad = u.grad[0].abs().sum(-1)
    assert grad[:25].sum() > 1e-6 and grad[26:].sum() > 1e-6
    assert grad[0] > 0 and grad[-1] > 0  # the whole sequence, both ends


def test_bad_s4d_settings_are_rejected():
    with pytest.raises(ConfigError, match="state_size=7"):
        S4D(4, state_size=7)
    with pytest.raises(ConfigError, match="s4d_init='legs'"):
        S4D(4, init="legs")
