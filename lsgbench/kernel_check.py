"""Kernel check: every fast attention kernel of lsgbench against its dense reference, forward and backward,
with full SDPA's own error at the same dtype and shape as the yardstick.

    python -m lsgbench.kernel_check --device cuda --out DIR      # N=1024, every configuration, fp32 and bf16
    python -m lsgbench.kernel_check --device cpu --quick --out DIR  # the CPU dry run: N=256, flex for one configuration

Each configuration (CONFIGS: every LSG sparsity type, LSG without globals, local sliding and disjoint with and
without a global token, all on the blocks and on the flex backend, and dilated attention; then the causal kernels
of decoders: LSG with three sparsity types, local sliding and disjoint, both backends, and dilated) runs on one set of
random inputs per dtype, [B, H, N, D] with the last 10% of the last row padded:
- the kernel, `knobs.attend`, in the dtype, and the gradients of q, k, v from a fixed random upstream gradient;
- the truth, `knobs.reference` on float64 copies of the same values (same device), with its gradients.
Padded queries' outputs are unspecified (kernels and references may differ there), so their upstream gradient
is zero and the outputs are compared on real query rows only; the gradients of q, k and v are compared at every
position (padded keys get no weight, hence zero gradient, in both).
Error: max |kernel - truth| / max |truth| over what is compared, for the output and each gradient (the
gradient error is the largest of the three): relative to the scale of the values, so fp32 and bf16 and
outputs and gradients read alike.
Yardstick: F.scaled_dot_product_attention in the dtype against the float64 dense full attention, same inputs,
same measure. A kernel passes when its output and gradient errors are each at most
max(SDPA_FACTOR x SDPA's error, FLOOR[dtype]); see the constants for why these values.

A row's `ok` is True when it passes, False when it fails or raises (status error), None when not run (status
skip: --quick runs flex for one configuration only, QUICK_FLEX). A kernel whose forward-with-backward raises
NotImplementedError (flex on CPU has no backward) but whose forward runs is checked forward only: its gradient
fields are None and a note says why; that passes, as a skip of the backward. Any other exception is an error
row, and a failure. Writes DIR/kernel_check.json (rows, device, versions) and
DIR/kernel_check.md (the table, also printed); exit code 0 when no row fails, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from .attention import SPARSITY_TYPES, VARIANTS
from .attention.full import FullKnobs
from .measure import device_name
from .record import SCHEMA, environment, write_json_atomic

# (variant, knobs overrides). LSG and local run on both backends; dilated has one kernel (SPADE's attention is
# local attention's kernel, checked by the local rows).
LSG = dict(block_size=64, sparse_block_size=32, sparsity_factor=2, num_global_tokens=1)
BACKEND_CONFIGS = [("lsg", {**LSG, "sparsity_type": t}) for t in SPARSITY_TYPES] + [
    ("lsg", {**LSG, "sparsity_type": "pooling", "num_global_tokens": 0}),
    *[("local", dict(mode="sliding", window=128, num_global_tokens=g)) for g in (0, 1)],
    *[("local", dict(mode="disjoint", block_size=64, num_global_tokens=g)) for g in (0, 1)],
]
CONFIGS = [(name, {**knobs, "backend": backend}) for backend in ("blocks", "flex") for name, knobs in BACKEND_CONFIGS]
# Defaults (window 512, dilation 1) scaled down to N = 256..1024, with distinct per-head dilations (cycled
# over the heads) and a global token.
DILATED = dict(window=64, dilation=[1, 2, 4, 8], num_global_tokens=1)
CONFIGS.append(("dilated", DILATED))
# The causal kernels (decoders): the same patterns restricted to keys at or before the query.
CAUSAL_CONFIGS = [("lsg", {**LSG, "sparsity_type": t}) for t in ("pooling", "norm", "bos_pooling")] + [
    ("local", dict(mode="sliding", window=128, num_global_tokens=1)), ("local", dict(mode="disjoint", block_size=64))]
CONFIGS += [(name, {**knobs, "backend": backend, "causal": True}) for backend in ("blocks", "flex")
            for name, knobs in CAUSAL_CONFIGS]
CONFIGS.append(("dilated", {**DILATED, "causal": True}))

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Pass rule: error <= max(SDPA_FACTOR * SDPA's error, FLOOR[dtype]).
# - The kernels compute the same softmax(QK^T)V in the same dtype as SDPA but in more steps (gathered key
#   blocks, sparse keys pooled in the dtype, gradients of overlapping pieces added in the dtype), so their
#   error is a small multiple of SDPA's: tests/test_lsg_attention.py measures bf16 LSG within 3x; 4x leaves room
#   for gradients and other GPU kernels. A real defect costs far more: bf16 norm selection cost ~200x.
# - The floors keep a near-exact SDPA (fp32: ~1e-6 relative) from making the bound tighter than the rounding
#   of another summation order: 1e-5 is ~100 fp32 ulps. bf16 (8-bit mantissa: one rounding is up to 4e-3
#   relative) gets 1e-2, about SDPA's own bf16 error.
# Pattern bugs are far above both: local w=128 run as w=126 (one key fewer on each side) measures 0.33 at N=256,
# since the max over all queries finds one whose heaviest key went missing. A uniform offset of 1e-2 on the output
# (0.5% relative) fails fp32 but not bf16, where it is SDPA's own error (tests/test_kernel_check.py).
SDPA_FACTOR = 4.0
FLOOR = {"fp32": 1e-5, "bf16": 1e-2}
QUICK_SEQ_LEN, SEQ_LEN = 256, 1024
# --quick runs flex for this configuration only: each flex configuration compiles (~8 s a dtype on 2 CPU cores,
# 2.5 minutes for all), and this one has all of flex's parts (global queries, local blocks, sparse keys, padding).
QUICK_FLEX = ("lsg", {**LSG, "sparsity_type": "pooling", "backend": "flex"})
QUICK_SKIP = "not run: --quick runs flex for one configuration (each compiles for seconds on CPU)"


def make_knobs(name: str, overrides: dict, heads: int):
    overrides = {k: v for k, v in overrides.items() if k != "causal"}  # how the kernel is called, not a knob
    if name == "dilated" and len(overrides.get("dilation", ())) > 1:  # one dilation per head
        overrides["dilation"] = [overrides["dilation"][h % len(overrides["dilation"])] for h in range(heads)]
    return VARIANTS[name].make(**overrides)


def config_label(name: str, overrides: dict, heads: int) -> str:
    return make_knobs(name, overrides, heads).label() + (" causal" if overrides.get("causal") else "")


def make_inputs(batch: int, heads: int, seq_len: int, head_dim: int, dtype, device, seed: int = 0):
    """q, k, v [B, H, N, D] in `dtype`, keep [B, N] (the last row's last 10% padded) and the upstream
    gradient, zero on padded queries."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v, up = (torch.randn(batch, heads, seq_len, head_dim, generator=gen).to(device=device, dtype=dtype)
                   for _ in range(4))
    keep = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
    keep[-1, seq_len - max(1, seq_len // 10):] = False
    return q, k, v, keep, up * keep[:, None, :, None]


def _run(attend, inputs, keep, up, backward: bool = True):
    """attend(q, k, v, keep) on fresh leaves of `inputs`: the output and, with `backward`, the gradients of
    (output * up).sum()."""
    leaves = [x.detach().clone().requires_grad_(backward) for x in inputs]
    out = attend(*leaves, keep)
    if not backward:
        return out.detach(), None
    return out.detach(), torch.autograd.grad(out, leaves, up)


def _relative(x, truth, where=None) -> float:
    """max |x - truth| / max |truth| (over `where`, a mask broadcast to their shape)."""
    diff, truth = (x.double() - truth).abs(), truth.abs()
    if where is not None:
        where = where.expand_as(truth)
        diff, truth = diff[where], truth[where]
    return float(diff.max() / truth.max())


def errors(attend, reference, q, k, v, keep, up) -> dict:
    """out_err and grad_err of `attend` (in the inputs' dtype) against `reference` (float64), and a note
    when only the forward could run."""
    truth, truth_grads = _run(reference, [t.double() for t in (q, k, v)], keep, up.double())
    note = None
    try:
        out, grads = _run(attend, (q, k, v), keep, up)
    except NotImplementedError as err:  # no backward on this device (FlexAttention on CPU): check the forward alone
        out, grads = _run(attend, (q, k, v), keep, up, backward=False)
        note = f"forward only (no backward here): {str(err).split('. ')[0][:150]}"  # its first sentence
    real = keep[:, None, :, None]
    return {"out_err": _relative(out, truth, real),
            "grad_err": None if grads is None else max(_relative(a, b) for a, b in zip(grads, truth_grads)),
            "note": note}


def check_kernels(configs=None, *, device="cpu", seq_len=SEQ_LEN, batch=2, heads=4, head_dim=64,
                  dtypes=tuple(DTYPES), seed=0, skip=None, progress=None) -> list[dict]:
    """One row per (configuration, dtype): the kernel's errors, SDPA's, the bounds and whether it passes.
    `skip(name, overrides)` gives the reason not to run a configuration (None: run it); `progress(row)` is
    called after each row."""
    device = torch.device(device)
    rows = []
    for dtype in dtypes:
        q, k, v, keep, up = make_inputs(batch, heads, seq_len, head_dim, DTYPES[dtype], device, seed)
        full = FullKnobs.make(implementation="sdpa")
        sdpa = errors(lambda *a: full.attend(*a, None, 0.0), lambda *a: full.reference(*a, None), q, k, v, keep, up)
        out_tol = max(SDPA_FACTOR * sdpa["out_err"], FLOOR[dtype])
        grad_tol = max(SDPA_FACTOR * sdpa["grad_err"], FLOOR[dtype])
        for name, overrides in configs if configs is not None else CONFIGS:
            causal = overrides.get("causal", False)
            row = {"variant": name, "label": None, "backend": overrides.get("backend"), "causal": causal, "dtype": dtype,
                   "seq_len": seq_len, "out_err": None, "grad_err": None, "sdpa_out_err": sdpa["out_err"],
                   "sdpa_grad_err": sdpa["grad_err"], "out_tol": out_tol, "grad_tol": grad_tol, "ok": False,
                   "status": "error", "error": None, "note": None}
            start = time.perf_counter()
            try:
                knobs = make_knobs(name, overrides, heads)
                row["label"] = config_label(name, overrides, heads)
                if skip and (reason := skip(name, overrides)):
                    row.update(ok=None, status="skip", note=reason)
                else:
                    how = {"causal": True} if causal else {}
                    row.update(errors(lambda *a: knobs.attend(*a, None, 0.0, **how),
                                      lambda *a: knobs.reference(*a, None, **how), q, k, v, keep, up))
                    row["status"] = "ok"
                    row["ok"] = row["out_err"] <= out_tol and (row["grad_err"] is None or row["grad_err"] <= grad_tol)
            except Exception as err:  # noqa: BLE001 - a configuration that fails is a row, and the check goes on
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
            row["seconds"] = round(time.perf_counter() - start, 2)
            rows.append(row)
            if progress:
                progress(row)
    return rows


def quick_skip(name: str, overrides: dict) -> str | None:
    """--quick: every flex configuration but QUICK_FLEX is not run."""
    return QUICK_SKIP if overrides.get("backend") == "flex" and (name, overrides) != QUICK_FLEX else None


def passed(rows: list[dict]) -> bool:
    """No row failed (skipped rows, ok None, do not count)."""
    return all(row["ok"] is not False for row in rows)


def _num(x) -> str:
    return "-" if x is None else f"{x:.1e}"


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table: each error beside its bound (max(4 x SDPA's, floor))."""
    lines = ["| attention | dtype | N | out err | out bound | grad err | grad bound | ok | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        note = r["error"] or r["note"] or ""
        lines.append(f"| {r['label'] or r['variant']} | {r['dtype']} | {r['seq_len']} | {_num(r['out_err'])} | "
                     f"{_num(r['out_tol'])} | {_num(r['grad_err'])} | {_num(r['grad_tol'])} | "
                     f"{ {True: 'yes', False: 'NO', None: 'skip'}[r['ok']]} | {note.replace('|', '/')} |")
    return "\n".join(lines)


def write(rows: list[dict], out_dir, device: torch.device, shape: dict) -> None:
    out_dir = Path(out_dir)
    env = environment()
    rule = (f"error <= max({SDPA_FACTOR:g} x SDPA's error, floor {FLOOR}); error = max |kernel - float64 reference| "
            f"/ max |reference|")
    write_json_atomic(out_dir / "kernel_check.json",
                      {"schema": SCHEMA, "kind": "kernel_check", "device": device_name(device),
                       "torch": torch.__version__, "env": env, "shape": shape, "rule": rule, "passed": passed(rows),
                       "rows": rows})
    header = (f"# Kernel check: {device_name(device)}, torch {torch.__version__}\n\n"
              f"Shape {shape}; last row's last 10% padded. Pass: {rule}.\n\n")
    (out_dir / "kernel_check.md").write_text(header + table(rows) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsgbench.kernel_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda | cuda:1 ...")
    parser.add_argument("--out", default="outputs/kernel_check", help="where kernel_check.json and .md go")
    parser.add_argument("--quick", action="store_true",
                        help=f"N={QUICK_SEQ_LEN} and flex for one configuration only (the CPU dry run)")
    parser.add_argument("--seq-len", type=int, default=None, help=f"N (default {SEQ_LEN}, --quick {QUICK_SEQ_LEN})")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    shape = {"batch": args.batch, "heads": args.heads, "seq_len": args.seq_len or (QUICK_SEQ_LEN if args.quick else
             SEQ_LEN), "head_dim": args.head_dim}

    def progress(row):
        outcome = {True: "ok", None: "skipped"}.get(row["ok"], row["error"] or "FAILED")
        print(f"  {row['label'] or row['variant']} {row['dtype']}: out {_num(row['out_err'])} grad "
              f"{_num(row['grad_err'])} ({row['seconds']} s) {outcome}", file=sys.stderr, flush=True)

    rows = check_kernels(device=device, seed=args.seed, skip=quick_skip if args.quick else None, progress=progress,
                         **shape)
    write(rows, args.out, device, shape)
    print(table(rows))
    failed, skipped = sum(r["ok"] is False for r in rows), sum(r["ok"] is None for r in rows)
    print(f"\n{len(rows) - failed - skipped} rows pass, {failed} fail, {skipped} not run; wrote "
          f"{Path(args.out) / 'kernel_check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
