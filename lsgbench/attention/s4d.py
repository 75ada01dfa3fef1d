"""S4D: a diagonal state-space layer (Gu et al. 2022), bidirectional (or causal), as SPADE's global branch.

Per channel c (d channels), with n = state_size // 2 complex modes (their conjugates are implied):
    continuous  x'(t) = A x(t) + B u(t),  y(t) = 2 Re(C x(t))
    zero-order hold with step dt_c:  dA = exp(dt A),  dB = (dA - 1) / A * B
    x_l = dA x_{l-1} + dB u_l,  y_l = 2 Re(C x_l)   <=>   y = K * u,  K_l = 2 Re(sum_n C_n dB_n dA_n^l)
The kernel is applied as a long convolution by FFT, O(L log L). Bidirectional: one kernel runs
forward in time and another backward; y = K_fwd * u + flip(K_bwd * flip(u)) + D u. Causal (decoders, as in
SPADE's language modelling): the forward kernel alone, y = K_fwd * u + D u.
A is initialised S4D-Lin (A_n = -1/2 + i pi n) or S4D-Inv (A_n = -1/2 + i N/pi (N/(2n+1) - 1)),
log dt uniform in [log dt_min, log dt_max]; `freeze` keeps A and B fixed (as SPADE does).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError

INITS = ("lin", "inv")


class S4D(nn.Module):
    def __init__(self, channels: int, state_size: int = 64, init: str = "lin", dt_min: float = 1e-3,
                 dt_max: float = 1e-1, freeze: bool = True, causal: bool = False):
        super().__init__()
        self.causal = causal
        self.check_settings(state_size, init)
        n = state_size // 2
        modes = torch.arange(n, dtype=torch.float64)
        imag = math.pi * modes if init == "lin" else state_size / math.pi * (state_size / (2 * modes + 1) - 1)
        # A, B per direction (2, causal: 1) x channel x mode; real parts stored as log(-Re A) to keep Re A < 0.
        directions = 1 if causal else 2
        shape = (directions, channels, n)
        self.log_neg_re_a = nn.Parameter(torch.full(shape, math.log(0.5)), requires_grad=not freeze)
        self.im_a = nn.Parameter(imag.float().expand(shape).clone(), requires_grad=not freeze)
        self.b = nn.Parameter(torch.ones(*shape, 2), requires_grad=not freeze)  # real, imag
        self.c = nn.Parameter(torch.randn(*shape, 2) * 0.5**0.5)
        self.log_dt = nn.Parameter(torch.rand(directions, channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.d = nn.Parameter(torch.randn(channels))

    @staticmethod
    def check_settings(state_size: int, init: str) -> None:
        if init not in INITS:
            raise ConfigError(f"s4d_init={init!r} is unknown; choose one of {list(INITS)}")
        if state_size < 2 or state_size % 2:
            raise ConfigError(f"state_size={state_size} must be an even number >= 2")

    def discretised(self):
        """(dA, dB, C) as complex tensors [directions, channels, n]."""
        a = torch.complex(-self.log_neg_re_a.exp(), self.im_a)
        dt = self.log_dt.exp().unsqueeze(-1)
        d_a = torch.exp(dt * a)
        d_b = (d_a - 1) / a * torch.view_as_complex(self.b.contiguous())
        return d_a, d_b, torch.view_as_complex(self.c.contiguous())

    def kernels(self, length: int) -> torch.Tensor:
        """K [directions, channels, length]: K_l = 2 Re(sum_n C_n dB_n dA_n^l)."""
        d_a, d_b, c = self.discretised()
        powers = torch.exp(torch.log(d_a).unsqueeze(-1) * torch.arange(length, device=d_a.device))  # dA^l
        return 2 * torch.einsum("zcn,zcnl->zcl", c * d_b, powers).real

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u [B, L, channels] -> y [B, L, channels]."""
        L, dtype = u.shape[1], u.dtype
        k = self.kernels(L)
        x = u.transpose(1, 2).to(torch.promote_types(u.dtype, torch.float32))  # [B, channels, L]; FFT needs fp32+
        both = torch.stack([x] if self.causal else [x, x.flip(-1)], dim=1)  # forward (and backward) in time
        n = 2 * L                                              # zero-padded: a linear, not circular, convolution
        y = torch.fft.irfft(torch.fft.rfft(both, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :L]
        y = (y[:, 0] if self.causal else y[:, 0] + y[:, 1].flip(-1)) + self.d[:, None] * x
        return y.transpose(1, 2).to(dtype)
