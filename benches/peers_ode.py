#!/usr/bin/env python3
"""ODE solves against their peers in one run (issue 14): diffsol (through `hyperprox ode solve`)
against SciPy's LSODA and BDF and diffrax, on Robertson (stiff) and Lotka-Volterra (non-stiff).

Settings: Robertson y(0) = (1, 0, 0), output at 0 and 0.4·10^k, k = 0..10 (to t = 4e9),
rtol 1e-6, atol 1e-10; Lotka-Volterra (a, b, c, d) = (1.5, 1, 3, 1), u0 = (1, 1), 101 outputs
on [0, 10], rtol = atol = 1e-8. Every solver gets the analytic Jacobian where it takes one
(SciPy's `jac`; diffrax differentiates the right-hand side itself). Wall time is the best of
`--repeat` runs of the solve alone: the hyperprox report's `time_s` (in-process, no start-up),
SciPy's `solve_ivp` call, diffrax's jitted call after a warm-up (compilation excluded).
Accuracy: the largest relative error at the output times against a reference (SciPy Radau at
rtol 1e-12 for Robertson, DOP853 at 1e-13 for LV), each species relative to its own maximum.

Usage (a local venv; CI does not need it):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy scipy jax diffrax
    /tmp/venv/bin/python benches/peers_ode.py [--bin target/release/hyperprox] [--repeat 5]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
from scipy.integrate import solve_ivp

ROB_K = (0.04, 1e4, 3e7)
LV_P = (1.5, 1.0, 3.0, 1.0)


def rob_f(t, y):
    k1, k2, k3 = ROB_K
    a, b, c = k1 * y[0], k2 * y[1] * y[2], k3 * y[1] ** 2
    return np.array([-a + b, a - b - c, c])


def rob_jac(t, y):
    k1, k2, k3 = ROB_K
    return np.array([
        [-k1, k2 * y[2], k2 * y[1]],
        [k1, -k2 * y[2] - 2 * k3 * y[1], -k2 * y[1]],
        [0.0, 2 * k3 * y[1], 0.0],
    ])


def lv_f(t, u):
    a, b, c, d = LV_P
    return np.array([a * u[0] - b * u[0] * u[1], -c * u[1] + d * u[0] * u[1]])


def lv_jac(t, u):
    a, b, c, d = LV_P
    return np.array([[a - b * u[1], -b * u[0]], [d * u[1], -c + d * u[0]]])


def rel_err(y, ref):
    scale = np.abs(ref).max(axis=0)
    return float((np.abs(y - ref) / scale).max())


def best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def hyperprox(bin_, model, method, t, rtol, atol, repeat, tmp):
    tp, yp, rp = (os.path.join(tmp, f) for f in ("t.npy", "y.npy", "r.json"))
    np.save(tp, t)
    args = [bin_, "ode", "solve", model, "--method", method, "--rtol", str(rtol), "--atol",
            str(atol), "--times", tp, "--out", yp, "--report", rp]
    if model == "lotka-volterra":
        args += ["--params", ",".join(map(str, LV_P)), "--u0", "1,1"]
    best_t, rep = float("inf"), None
    for _ in range(repeat):
        subprocess.run(args, check=True, capture_output=True)
        rep = json.load(open(rp))
        best_t = min(best_t, rep["time_s"])
    return best_t, np.load(yp), rep


def scipy_run(f, jac, y0, t, method, rtol, atol, repeat):
    def go():
        return solve_ivp(f, (t[0], t[-1]), y0, method=method, t_eval=t, rtol=rtol, atol=atol,
                         jac=jac if method != "RK45" else None)
    wall, sol = best(go, repeat)
    assert sol.success, sol.message
    return wall, sol.y.T, {"steps": None, "rhs_evals": int(sol.nfev), "jac_evals": int(sol.njev),
                           "lu": int(sol.nlu)}


def diffrax_run(model, t, rtol, atol, repeat):
    import jax
    jax.config.update("jax_enable_x64", True)
    import diffrax
    import jax.numpy as jnp

    if model == "robertson":
        def f(t, y, args):
            k1, k2, k3 = ROB_K
            a, b, c = k1 * y[0], k2 * y[1] * y[2], k3 * y[1] ** 2
            return jnp.stack([-a + b, a - b - c, c])
        solver, y0 = diffrax.Kvaerno5(), jnp.array([1.0, 0.0, 0.0])
    else:
        def f(t, u, args):
            a, b, c, d = LV_P
            return jnp.stack([a * u[0] - b * u[0] * u[1], -c * u[1] + d * u[0] * u[1]])
        solver, y0 = diffrax.Tsit5(), jnp.array([1.0, 1.0])
    ts = jnp.array(t)

    @jax.jit
    def go():
        return diffrax.diffeqsolve(
            diffrax.ODETerm(f), solver, t0=ts[0], t1=ts[-1], dt0=None, y0=y0,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=1_000_000)

    sol = go()
    jax.block_until_ready(sol.ys)
    wall, sol = best(lambda: jax.block_until_ready(go()), repeat)
    st = sol.stats
    return wall, np.asarray(sol.ys), {"steps": int(st["num_accepted_steps"]),
                                      "rejected": int(st["num_rejected_steps"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/hyperprox")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # Robertson
        t = np.concatenate([[0.0], 0.4 * 10.0 ** np.arange(0, 11)])
        rtol, atol = 1e-6, 1e-10
        ref = solve_ivp(rob_f, (0, t[-1]), [1.0, 0.0, 0.0], method="Radau", t_eval=t,
                        rtol=1e-12, atol=1e-16, jac=rob_jac).y.T
        for m in ("bdf", "esdirk34", "tr-bdf2"):
            w, y, r = hyperprox(a.bin, "robertson", m, t, rtol, atol, a.repeat, tmp)
            rows.append(("robertson", f"diffsol {m}", w, r["steps"], r["rhs_evals"],
                         r["jac_products"], rel_err(y, ref)))
        for m in ("LSODA", "BDF"):
            w, y, r = scipy_run(rob_f, rob_jac, [1.0, 0.0, 0.0], t, m, rtol, atol, a.repeat)
            rows.append(("robertson", f"scipy {m}", w, None, r["rhs_evals"], r["jac_evals"],
                         rel_err(y, ref)))
        try:
            w, y, r = diffrax_run("robertson", t, rtol, atol, a.repeat)
            rows.append(("robertson", "diffrax Kvaerno5", w, r["steps"], None, None,
                         rel_err(y, ref)))
        except Exception as e:  # noqa: BLE001
            print("diffrax robertson failed:", e)
        # Lotka-Volterra
        t = np.linspace(0.0, 10.0, 101)
        rtol = atol = 1e-8
        ref = solve_ivp(lv_f, (0, 10), [1.0, 1.0], method="DOP853", t_eval=t, rtol=1e-13,
                        atol=1e-13).y.T
        for m in ("tsit45", "bdf"):
            w, y, r = hyperprox(a.bin, "lotka-volterra", m, t, rtol, atol, a.repeat, tmp)
            rows.append(("lotka-volterra", f"diffsol {m}", w, r["steps"], r["rhs_evals"],
                         r["jac_products"], rel_err(y, ref)))
        for m in ("LSODA", "BDF", "RK45"):
            w, y, r = scipy_run(lv_f, lv_jac, [1.0, 1.0], t, m, rtol, atol, a.repeat)
            rows.append(("lotka-volterra", f"scipy {m}", w, None, r["rhs_evals"],
                         r["jac_evals"], rel_err(y, ref)))
        try:
            w, y, r = diffrax_run("lotka-volterra", t, rtol, atol, a.repeat)
            rows.append(("lotka-volterra", "diffrax Tsit5", w, r["steps"], None, None,
                         rel_err(y, ref)))
        except Exception as e:  # noqa: BLE001
            print("diffrax lotka-volterra failed:", e)
    base = {}
    print("| problem | solver | wall (ms) | × diffsol first row | steps | RHS evals | Jacobian evals/products | max rel. error |")
    print("|---|---|---|---|---|---|---|---|")
    for p, s, w, steps, nf, nj, err in rows:
        base.setdefault(p, w)
        f = lambda v: "–" if v is None else str(v)
        print(f"| {p} | {s} | {w * 1e3:.3f} | {w / base[p]:.1f} | {f(steps)} | {f(nf)} | {f(nj)} | {err:.1e} |")


if __name__ == "__main__":
    main()
