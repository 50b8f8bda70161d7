#!/usr/bin/env python3
"""Independent check of `hyperprox tune tv` on a user's own image pairs.

Learns the weight lambda of isotropic smoothed-TV denoising (nu fixed) on N clean/noisy pairs
with a plain implementation: the lower level

    h(x; lambda) = (1/N) sum_i [ 1/2 ||x_i - y_i||^2 + lambda sum_p sqrt(|D x_i|_p^2 + nu^2) ]

(forward differences, Neumann boundary) is solved by scipy's L-BFGS, the implicit
hypergradient dF/dlog(lambda) = -<d_{log lambda} grad_x h, H^{-1} grad g> by a hand-written
conjugate gradient on Hessian-vector products, and the upper loss
F(lambda) = (1/N) sum_i 1/2 ||x_i(lambda) - c_i||^2 is minimized over log(lambda) by scipy's
L-BFGS. Numpy and scipy only; nothing is shared with hyperprox.

    python3 scripts/byod_tv_check.py CLEAN.npy NOISY.npy NU [LAMBDA0]

prints one JSON line: the learned lambda, the upper loss, the time and the counts.
"""
import json
import sys
import time

import numpy as np
from scipy.optimize import minimize


def grad2(x):
    """Forward differences with Neumann boundary: (dh, dv), zero on the last column/row."""
    dh = np.zeros_like(x)
    dv = np.zeros_like(x)
    dh[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    dv[:, :-1, :] = x[:, 1:, :] - x[:, :-1, :]
    return dh, dv


def grad2_adj(ph, pv):
    """The adjoint of grad2."""
    out = np.zeros_like(ph)
    out[:, :, 1:] += ph[:, :, :-1]
    out[:, :, :-1] -= ph[:, :, :-1]
    out[:, 1:, :] += pv[:, :-1, :]
    out[:, :-1, :] -= pv[:, :-1, :]
    return out


def main():
    clean = np.load(sys.argv[1]).astype(np.float64)
    noisy = np.load(sys.argv[2]).astype(np.float64)
    nu = float(sys.argv[3])
    lam0 = float(sys.argv[4]) if len(sys.argv) > 4 else np.exp(-5.0)
    n = clean.shape[0]
    shape = clean.shape
    counts = {"lower_iterations": 0, "cg_iterations": 0, "outer_evaluations": 0}

    def lower(x_flat, lam):
        x = x_flat.reshape(shape)
        dh, dv = grad2(x)
        s = np.sqrt(dh**2 + dv**2 + nu**2)
        val = 0.5 * np.sum((x - noisy) ** 2) + lam * np.sum(s)
        g = (x - noisy) + lam * grad2_adj(dh / s, dv / s)
        return val / n, g.ravel() / n

    def hvp(x, lam, v):
        dh, dv = grad2(x)
        eh, ev = grad2(v)
        s = np.sqrt(dh**2 + dv**2 + nu**2)
        c = (dh * eh + dv * ev) / s**3
        return (v + lam * grad2_adj(eh / s - c * dh, ev / s - c * dv)) / n

    def cg(apply, b, tol):
        x = np.zeros_like(b)
        r = b.copy()
        p = r.copy()
        rr = r.ravel() @ r.ravel()
        for _ in range(10 * b.size):
            if np.sqrt(rr) <= tol * np.linalg.norm(b):
                break
            ap = apply(p)
            a = rr / (p.ravel() @ ap.ravel())
            x += a * p
            r -= a * ap
            counts["cg_iterations"] += 1
            rr_new = r.ravel() @ r.ravel()
            p = r + (rr_new / rr) * p
            rr = rr_new
        return x

    x_warm = noisy.ravel().copy()

    def outer(t):
        nonlocal x_warm
        lam = float(np.exp(t[0]))
        counts["outer_evaluations"] += 1
        res = minimize(lower, x_warm, args=(lam,), jac=True, method="L-BFGS-B",
                       options={"gtol": 1e-12 / n, "ftol": 0.0, "maxiter": 100000,
                                "maxcor": 20})
        counts["lower_iterations"] += res.nit
        x_warm = res.x
        x = res.x.reshape(shape)
        d = (x - clean) / n  # grad g
        loss = 0.5 * np.sum((x - clean) ** 2) / n
        q = cg(lambda v: hvp(x, lam, v), d, 1e-10)
        dh, dv = grad2(x)
        s = np.sqrt(dh**2 + dv**2 + nu**2)
        j = lam * grad2_adj(dh / s, dv / s) / n  # d_{log lambda} grad_x h
        return loss, np.array([-np.sum(j * q)])

    t0 = time.perf_counter()
    res = minimize(outer, np.array([np.log(lam0)]), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-10, "ftol": 0.0, "maxiter": 200})
    elapsed = time.perf_counter() - t0
    print(json.dumps({
        "solver": "numpy/scipy L-BFGS (lower and outer) + CG (hypergradient)",
        "images": n, "height": shape[1], "width": shape[2], "smoothing": nu,
        "lambda": float(np.exp(res.x[0])), "upper_loss": float(res.fun),
        "hypergradient": float(res.jac[0]), "outer_iterations": int(res.nit),
        "time_s": elapsed, **counts,
    }))


if __name__ == "__main__":
    main()
