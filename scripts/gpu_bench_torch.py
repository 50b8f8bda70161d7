#!/usr/bin/env python3
"""The PyTorch side of `hyperprox bench --device cuda`: the same iterations written with torch
tensor operations, timed on the same card in the same run, printed as JSON lines.

* copy: torch's device-to-device copy rate (1 GiB, read + write bytes per second);
* tv-step-N: one FGP iteration of the ROF dual (x = v - grad^T r, g = grad x,
  q+ = Proj_mu(r + g/8), r+ = q+ + beta (q+ - q)), isotropic, forward differences with a
  Neumann boundary, the layout [d_h; d_v] of hyperprox; float32 and float64, eager and (where
  it works) torch.compile;
* gemv-MxN-f32: torch.mv with the same matrix shape (A x and A^T y);
* du-ista-T16-NxM-batchB-pass: DU-ISTA's supervised training pass (T layers
  x = S_{a_t lam}(x + a_t A^T(y - A x)), loss mean_b ||x_T - x*||^2, backward by autograd) in
  float64, as hyperprox's `...-pass` lines, minibatches of 64 and 1024.

Usage: gpu_bench_torch.py --sizes 1024,2048,4096 --lasso 20000x50000 --unfold 500x250x16
"""
import argparse
import json
import time

import torch


def timed(fn, reps):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def grad(x):
    gh = torch.zeros_like(x)
    gv = torch.zeros_like(x)
    gh[:, :-1] = x[:, 1:] - x[:, :-1]
    gv[:-1, :] = x[1:, :] - x[:-1, :]
    return gh, gv


def grad_t(ph, pv):
    """The adjoint of grad (minus the divergence)."""
    out = torch.zeros_like(ph)
    out[:, :-1] -= ph[:, :-1]
    out[:, 1:] += ph[:, :-1]
    out[:-1, :] -= pv[:-1, :]
    out[1:, :] += pv[:-1, :]
    return out


def fgp_step(v, mu, beta, qh, qv, rh, rv):
    x = v - grad_t(rh, rv)
    gh, gv = grad(x)
    a = rh + 0.125 * gh
    c = rv + 0.125 * gv
    s = torch.clamp(mu / torch.sqrt(a * a + c * c), max=1.0)
    a = a * s
    c = c * s
    rh_new = a + beta * (a - qh)
    rv_new = c + beta * (c - qv)
    return a, c, rh_new, rv_new


def tv(size, dtype, iters, compiled):
    g = torch.Generator(device="cuda").manual_seed(0)
    v = torch.rand((size, size), device="cuda", dtype=dtype, generator=g)
    qh, qv, rh, rv = (torch.zeros_like(v) for _ in range(4))
    step = torch.compile(fgp_step) if compiled else fgp_step
    state = [qh, qv, rh, rv]

    def one():
        state[0], state[1], state[2], state[3] = step(v, 0.1, 0.5, *state)

    for _ in range(5):
        one()
    t = timed(one, iters)
    nbytes = 9 * size * size * v.element_size()
    return {
        "case": f"tv-step-{size}",
        "solver": "torch-compile" if compiled else "torch-eager",
        "precision": str(dtype).replace("torch.", ""),
        "time_per_iter_s": t,
        "bytes_per_iter_minimum": nbytes,
        "gbytes_per_s_at_minimum_traffic": nbytes / t / 1e9,
    }


def du_ista_pass(n, m, layers, batch, reps, lam=0.1):
    g = torch.Generator(device="cuda").manual_seed(1)
    a = torch.randn((m, n), device="cuda", dtype=torch.float64, generator=g) / m ** 0.5
    lip = torch.linalg.matrix_norm(a, ord=2) ** 2
    alpha = torch.full((layers,), float(1.0 / lip), device="cuda", dtype=torch.float64,
                       requires_grad=True)
    xs = torch.randn((batch, n), device="cuda", dtype=torch.float64, generator=g)
    xs = xs * (torch.rand((batch, n), device="cuda", dtype=torch.float64, generator=g) < 0.1)
    y = xs @ a.t()

    def one():
        x = torch.zeros_like(xs)
        for t in range(layers):
            u = x + alpha[t] * ((y - x @ a.t()) @ a)
            th = alpha[t] * lam
            x = torch.sign(u) * torch.clamp(u.abs() - th, min=0.0)
        loss = ((x - xs) ** 2).sum() / batch
        (ga,) = torch.autograd.grad(loss, alpha)
        return loss.item(), ga

    one()
    t = timed(one, reps)
    return {"case": f"du-ista-T{layers}-{n}x{m}-batch{batch}-pass", "solver": "torch-autograd",
            "precision": "float64", "time_s": t, "samples_per_s": batch / t, "reps": reps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1024,2048,4096")
    ap.add_argument("--lasso", default="20000x50000")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--unfold", default="")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device")
    n = 1 << 28
    src = torch.empty(n, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), 20)
    print(json.dumps({"case": "copy", "solver": "torch-copy", "bytes": 4 * n, "time_s": t,
                      "gbytes_per_s": 2 * 4 * n / t / 1e9,
                      "device": torch.cuda.get_device_name(0), "torch": torch.__version__}),
          flush=True)
    del src, dst
    for size in (int(s) for s in args.sizes.split(",")):
        for dtype in (torch.float32, torch.float64):
            for compiled in (False, True):
                try:
                    print(json.dumps(tv(size, dtype, args.iters, compiled)), flush=True)
                except Exception as e:  # torch.compile may be unavailable (no Triton)
                    print(json.dumps({"case": f"tv-step-{size}", "solver": "torch-compile",
                                      "skipped": str(e).splitlines()[0][:200]}), flush=True)
    m, k = (int(s) for s in args.lasso.split("x"))
    a = torch.randn((m, k), device="cuda", dtype=torch.float32) / m ** 0.5
    x = torch.randn(k, device="cuda", dtype=torch.float32)
    y = torch.randn(m, device="cuda", dtype=torch.float32)
    t_ax = timed(lambda: torch.mv(a, x), 10)
    t_aty = timed(lambda: torch.mv(a.t(), y), 10)
    print(json.dumps({"case": f"gemv-{m}x{k}-f32", "solver": "torch-mv", "time_ax_s": t_ax,
                      "time_atx_s": t_aty, "gbytes_per_s_ax": 4 * m * k / t_ax / 1e9,
                      "gbytes_per_s_atx": 4 * m * k / t_aty / 1e9}), flush=True)
    del a
    if args.unfold:
        n, m, layers = (int(s) for s in args.unfold.split("x"))
        for batch in (64, 1024):
            print(json.dumps(du_ista_pass(n, m, layers, batch, 20)), flush=True)


if __name__ == "__main__":
    main()
