#!/usr/bin/env python3
"""Lasso against its peers in one run (issue 18): the same instance for everyone, ratios only.

Instance (the issue's): A Gaussian 500×2000 with unit-norm columns, 5 % of the 2000
coefficients nonzero (±1), noise 0.01, λ = 0.1·λ_max, stop at an absolute duality gap of 1e-8
for P(x) = ‖Ax − b‖²/(2n) + λ‖x‖₁, best of 5. The peers run with one BLAS thread.

The script writes the instance as .npy (seeded), runs scikit-learn, skglm and celer (each if
installed) and the hyperprox binary (`solve lasso --solver cd`, its report's `time_s`), checks
that every solver reached the same objective, and prints time ratios to skglm.

Sparse designs: `--sparse 1e-3 --n 100000 --p 10000`: the same scipy CSC matrix for everyone
(hyperprox reads it from the .npz that scipy.sparse.save_npz writes).

Scaling study (the same instance family, one size per call):
    for s in "500 2000" "1000 5000" "2000 20000" "5000 50000"; do set -- $s
        OMP_NUM_THREADS=1 /tmp/peers/bin/python benches/peers_lasso.py --n $1 --p $2 \
            --solvers cd,cd@2 --repeat 3; done

Usage (a local venv; CI does not need it):
    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install numpy scikit-learn skglm celer jax jaxopt
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /tmp/peers/bin/python benches/peers_lasso.py \
        [--bin target/release/hyperprox] [--n 500 --p 2000] [--repeat 5]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

import numpy as np


def instance(n, p, density, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, p))
    a /= np.linalg.norm(a, axis=0)
    x = np.zeros(p)
    k = max(1, int(round(density * p)))
    x[rng.choice(p, k, replace=False)] = rng.choice([-1.0, 1.0], k)
    b = a @ x + 0.01 * rng.standard_normal(n)
    return a, b


def instance_sparse(n, p, a_density, density, seed):
    """A sparse design (scipy CSC, Gaussian values at `a_density` of the entries, nonzero
    columns scaled to unit norm) and b as in `instance`."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    a = sp.random(n, p, density=a_density, format="csc", random_state=rng,
                  data_rvs=rng.standard_normal)
    norms = np.sqrt(np.asarray(a.multiply(a).sum(axis=0))).ravel()
    a = a @ sp.diags(np.where(norms > 0, 1 / np.maximum(norms, 1e-300), 0.0))
    a = sp.csc_matrix(a)
    x = np.zeros(p)
    k = max(1, int(round(density * p)))
    x[rng.choice(p, k, replace=False)] = rng.choice([-1.0, 1.0], k)
    b = a @ x + 0.01 * rng.standard_normal(n)
    return a, b


def objective(a, b, lam, x):
    r = b - a @ x
    return r @ r / (2 * len(b)) + lam * np.abs(x).sum()


def gap(a, b, lam, x):
    n = len(b)
    r = b - a @ x
    theta = r / n
    s = min(1.0, lam / max(np.abs(a.T @ theta).max(), 1e-300))
    theta *= s
    dual = theta @ b - n / 2 * theta @ theta
    return objective(a, b, lam, x) - dual


def best_of(repeat, f):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def hyperprox_rows(args, problem, a, b, lam, extra_args=()):
    """Runs `hyperprox solve PROBLEM` for each of `--solvers` (e.g. cd, cd-no-working-sets,
    cd@2: two threads, default one) on A, b written as .npy, best of `--repeat` of its
    reported solve time: {label: (seconds, x)}."""
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        fa, fb = os.path.join(d, "a.npy"), os.path.join(d, "b.npy")
        if hasattr(a, "tocsr"):
            import scipy.sparse as sp
            fa = os.path.join(d, "a.npz")
            sp.save_npz(fa, a)  # CSC, as the peers get it
        else:
            np.save(fa, a)
        np.save(fb, b)
        for spec in args.solvers.split(","):
            spec, _, threads = spec.partition("@")
            threads = threads or "1"
            solver, extra = spec, []
            if spec.startswith("cd-"):
                extra = ["--" + spec[3:]]
                solver = "cd"
            times, x = [], None
            for _ in range(args.repeat):
                rep, out = os.path.join(d, "r.json"), os.path.join(d, "x.npy")
                subprocess.run([args.bin, "solve", problem, "--a", fa, "--b", fb,
                                "--lambda", repr(float(lam)), *extra_args,
                                "--tol", repr(args.tol), "--solver", solver, "--out", out,
                                "--report", rep, "--threads", threads, *extra],
                               check=True, stdout=subprocess.DEVNULL)
                times.append(json.load(open(rep))["time_s"])
                x = np.load(out)
            label = " ".join([solver, *extra]) + ("" if threads == "1" else f", {threads} threads")
            rows["hyperprox " + label] = (min(times), x)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/hyperprox")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--p", type=int, default=2000)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--path", type=int, default=0,
                    help="compare paths of this many λ (from λ_max down to 1e-3·λ_max) instead")
    ap.add_argument("--fista", action="store_true",
                    help="compare FISTA with jaxopt's at the same iteration count instead")
    ap.add_argument("--group", type=int, default=0,
                    help="compare the group lasso with consecutive groups of this size instead")
    ap.add_argument("--logistic", action="store_true",
                    help="compare ℓ1-logistic regression (labels sign(Ax + noise)) instead")
    ap.add_argument("--sparse", type=float, default=0.0,
                    help="a sparse design with this density of nonzeros (scipy CSC, a .npz "
                         "for hyperprox), e.g. --n 100000 --p 10000 "
                         "--sparse 1e-3")
    ap.add_argument("--peers", default="skglm,celer,scikit-learn",
                    help="peers to run on the single Lasso (comma separated)")
    ap.add_argument("--solvers", default="cd,cd@2,cd-no-working-sets",
                    help="hyperprox solvers, comma separated; @K runs with K threads (default 1)")
    args = ap.parse_args()
    if args.sparse:
        a, b = instance_sparse(args.n, args.p, args.sparse, args.density, args.seed)
    else:
        a, b = instance(args.n, args.p, args.density, args.seed)
        # Column-major (Fortran order) for everyone: coordinate descent reads columns, and
        # scikit-learn, skglm and hyperprox all use such an array without copying it
        # (hyperprox reads the .npy's fortran_order flag); a row-major A costs each of them a
        # transposed copy.
        a = np.asfortranarray(a)
    if args.path:
        return run_path(a, b, args)
    if args.fista:
        return run_fista(a, b, args)
    if args.logistic:
        return run_logistic(a, b, args)
    if args.group:
        return run_group(a, b, args)
    n = args.n
    lam = args.ratio * np.abs(a.T @ b).max() / n
    kind = f"sparse (density {args.sparse:g}, nnz {a.nnz})" if args.sparse else "dense"
    rows = {}
    peers = set(args.peers.split(","))
    try:
        if "skglm" not in peers:
            raise ImportError
        from skglm import Lasso as SkglmLasso

        def skglm_fit(tol):
            m = SkglmLasso(alpha=lam, fit_intercept=False, tol=tol, max_iter=1000)
            return m.fit(a, b).coef_

        # skglm stops on its KKT violation, not a gap: it gets the loosest tolerance (from
        # 1e-4 down) whose objective is within the gap tolerance of the optimum (a tight
        # skglm solve): the same accuracy as a certified gap of `tol`, without the proof.
        p_ref = objective(a, b, lam, skglm_fit(1e-14))
        kkt = next((t for t in 10.0 ** -np.arange(4, 15)
                    if objective(a, b, lam, skglm_fit(t)) - p_ref <= args.tol), 1e-14)
        print(f"skglm tol = {kkt:g}")
        rows["skglm"] = best_of(args.repeat, lambda: skglm_fit(kkt))
    except ImportError:
        pass
    try:
        if "celer" not in peers:
            raise ImportError
        from celer import Lasso as CelerLasso

        def celer_fit():
            # celer stops on its duality gap ≤ tol·‖b‖²/n (its objective is ours).
            m = CelerLasso(alpha=lam, fit_intercept=False, tol=args.tol * n / (b @ b),
                           max_iter=1000)
            return m.fit(a, b).coef_

        rows["celer"] = best_of(args.repeat, celer_fit)
    except ImportError:
        pass
    try:
        if "scikit-learn" not in peers:
            raise ImportError
        from sklearn.linear_model import Lasso as SkLasso

        def sk_fit():
            # scikit-learn stops on its duality gap ≤ tol·‖b‖²/n (its objective is ours).
            m = SkLasso(alpha=lam, fit_intercept=False, tol=args.tol * n / (b @ b),
                        max_iter=100000, selection="cyclic")
            return m.fit(a, b).coef_

        rows["scikit-learn"] = best_of(args.repeat, sk_fit)
    except ImportError:
        pass
    rows.update(hyperprox_rows(args, "lasso", a, b, lam))
    base = rows.get("skglm", next(iter(rows.values())))[0]
    print(f"Lasso {n}×{args.p} {kind}, λ = {args.ratio}·λ_max, gap ≤ {args.tol:g}, best of {args.repeat}"
          f" (baseline {base * 1e3:.2f} ms on this machine)")
    # The last column is the gap at the rescaled residual θ = s·r/n: a valid but loose bound
    # (each solver certifies with its own, better dual point).
    print("| solver | time / skglm | objective − min | gap at s·r/n |")
    print("|---|---|---|---|")
    objs = {k: objective(a, b, lam, x) for k, (_, x) in rows.items()}
    omin = min(objs.values())
    for k, (t, x) in rows.items():
        print(f"| {k} | {t / base:.2f} | {objs[k] - omin:.1e} | {gap(a, b, lam, x):.1e} |")


def run_fista(a, b, args):
    """FISTA: `hyperprox solve lasso --solver fista` (stops on its certified gap, checked every
    10 iterations) against jaxopt's ProximalGradient with acceleration run for the same number
    of iterations (tol 0, so it runs them all; one XLA thread; compiled before timing)."""
    import os as _os
    _os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                           "intra_op_parallelism_threads=1")
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jaxopt import ProximalGradient
    from jaxopt.prox import prox_lasso
    n = len(b)
    lam = args.ratio * np.abs(a.T @ b).max() / n
    kind = f"sparse (density {args.sparse:g}, nnz {a.nnz})" if args.sparse else "dense"
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "a.npy"), a)
        np.save(os.path.join(d, "b.npy"), b)
        for threads in ["1", "2"]:
            times, its, x = [], 0, None
            for _ in range(args.repeat):
                rep, out = os.path.join(d, "r.json"), os.path.join(d, "x.npy")
                subprocess.run([args.bin, "solve", "lasso", "--a", os.path.join(d, "a.npy"),
                                "--b", os.path.join(d, "b.npy"), "--lambda", repr(float(lam)),
                                "--tol", repr(args.tol), "--solver", "fista", "--out", out,
                                "--report", rep, "--threads", threads],
                               check=True, stdout=subprocess.DEVNULL)
                r = json.load(open(rep))
                times.append(r["time_s"])
                its = r["iterations"]
                x = np.load(out)
            rows[f"hyperprox fista, {threads} thread(s)"] = (min(times), x, its)
    aj, bj = jnp.asarray(a), jnp.asarray(b)

    def fun(w):
        r = aj @ w - bj
        return 0.5 * (r @ r) / n

    pg = ProximalGradient(fun=fun, prox=prox_lasso, maxiter=its, tol=0.0, acceleration=True,
                          jit=True)
    w0 = jnp.zeros(a.shape[1])
    pg.run(w0, hyperparams_prox=lam).params.block_until_ready()  # compile

    def jax_run():
        return np.asarray(pg.run(w0, hyperparams_prox=lam).params.block_until_ready())

    t, xj = best_of(args.repeat, jax_run)
    rows["jaxopt ProximalGradient (accelerated, backtracking)"] = (t, xj, its)
    base = t
    p_ref = min(objective(a, b, lam, v[1]) for v in rows.values())
    print(f"FISTA on the Lasso {n}×{a.shape[1]}, {its} iterations (hyperprox's count at gap "
          f"≤ {args.tol:g}), best of {args.repeat} (baseline jaxopt {base * 1e3:.1f} ms)")
    print("| solver | time / jaxopt | objective − best |")
    print("|---|---|---|")
    for k, (tt, x, _) in rows.items():
        print(f"| {k} | {tt / base:.2f} | {objective(a, b, lam, x) - p_ref:.1e} |")


def group_objective(a, b, lam, x, size):
    r = b - a @ x
    norms = np.linalg.norm(x.reshape(-1, size), axis=1)
    return r @ r / (2 * len(b)) + lam * np.sqrt(size) * norms.sum()


def run_group(a, b, args):
    """Group lasso ‖Ax − b‖²/(2n) + λ Σ_g √|g|·‖x_g‖ with consecutive groups of `--group`
    features, λ = ratio·λ_max: skglm's GroupLasso (working sets, Anderson) at its loosest
    tolerance within the gap tolerance of the optimum, and `hyperprox solve group-lasso`."""
    n, p = a.shape
    size = args.group
    assert p % size == 0, "--group must divide p"
    m = p // size
    corr = np.linalg.norm((a.T @ b / n).reshape(m, size), axis=1) / np.sqrt(size)
    lam = args.ratio * corr.max()
    rows = {}
    from skglm import GroupLasso

    def skglm_fit(tol):
        est = GroupLasso(groups=size, alpha=lam, weights=np.full(m, np.sqrt(size)), tol=tol,
                         fit_intercept=False, max_iter=1000)
        return est.fit(a, b).coef_

    p_ref = group_objective(a, b, lam, skglm_fit(1e-14), size)
    kkt = next((t for t in 10.0 ** -np.arange(4, 15)
                if group_objective(a, b, lam, skglm_fit(t), size) - p_ref <= args.tol), 1e-14)
    print(f"skglm tol = {kkt:g}")
    rows["skglm GroupLasso"] = best_of(args.repeat, lambda: skglm_fit(kkt))
    rows.update(hyperprox_rows(args, "group-lasso", a, b, lam,
                               ["--groups", ",".join([str(size)] * m)]))
    base = rows["skglm GroupLasso"][0]
    print(f"group lasso {n}×{p}, groups of {size}, λ = {args.ratio}·λ_max, gap ≤ {args.tol:g}, "
          f"best of {args.repeat} (baseline {base * 1e3:.2f} ms on this machine)")
    print("| solver | time / skglm | objective − min |")
    print("|---|---|---|")
    objs = {k: group_objective(a, b, lam, x, size) for k, (_, x) in rows.items()}
    omin = min(objs.values())
    for k, (t, x) in rows.items():
        print(f"| {k} | {t / base:.2f} | {objs[k] - omin:.1e} |")


def logistic_objective(a, y, lam, x):
    return np.logaddexp(0.0, -y * (a @ x)).mean() + lam * np.abs(x).sum()


def run_logistic(a, b, args):
    """ℓ1-logistic regression (1/n)Σ log(1 + exp(−yᵢaᵢᵀx)) + λ‖x‖₁ with yᵢ = sign(bᵢ) (b the
    Lasso instance's response) and λ = ratio·λ_max: skglm's SparseLogisticRegression (prox-Newton
    with working sets) at its loosest tolerance within the gap tolerance of the optimum,
    scikit-learn's LogisticRegression (liblinear, ℓ1; its C = 1/(nλ)), and `hyperprox solve
    logistic-l1 --solver cd` (certified gap)."""
    n = len(b)
    y = np.where(b >= 0, 1.0, -1.0)
    lam = args.ratio * np.abs(a.T @ y).max() / (2 * n)
    rows = {}
    from skglm import SparseLogisticRegression

    def skglm_fit(tol):
        m = SparseLogisticRegression(alpha=lam, fit_intercept=False, tol=tol, max_iter=1000)
        return m.fit(a, y).coef_.ravel()

    p_ref = logistic_objective(a, y, lam, skglm_fit(1e-14))
    kkt = next((t for t in 10.0 ** -np.arange(4, 15)
                if logistic_objective(a, y, lam, skglm_fit(t)) - p_ref <= args.tol), 1e-14)
    print(f"skglm tol = {kkt:g}")
    rows["skglm SparseLogisticRegression"] = best_of(args.repeat, lambda: skglm_fit(kkt))
    try:
        from celer import LogisticRegression as CelerLogistic

        def celer_fit(tol):
            # celer: Σᵢ log(1 + exp(−yᵢaᵢᵀx)) + ‖x‖₁/C, so C = 1/(nλ).
            m = CelerLogistic(C=1.0 / (n * lam), penalty="l1", fit_intercept=False, tol=tol,
                              max_iter=1000)
            return m.fit(a, y).coef_.ravel()

        tol_c = next((t for t in 10.0 ** -np.arange(4, 15)
                      if logistic_objective(a, y, lam, celer_fit(t)) - p_ref <= args.tol), 1e-14)
        rows[f"celer (tol {tol_c:g})"] = best_of(args.repeat, lambda: celer_fit(tol_c))
    except ImportError:
        pass
    try:
        from sklearn.linear_model import LogisticRegression

        def sk_fit(tol):
            m = LogisticRegression(penalty="l1", C=1.0 / (n * lam), solver="liblinear",
                                   fit_intercept=False, tol=tol, max_iter=100000)
            return m.fit(a, y).coef_.ravel()

        tol_sk = next((t for t in 10.0 ** -np.arange(4, 15)
                       if logistic_objective(a, y, lam, sk_fit(t)) - p_ref <= args.tol), 1e-14)
        rows[f"scikit-learn liblinear (tol {tol_sk:g})"] = best_of(args.repeat,
                                                                   lambda: sk_fit(tol_sk))
    except ImportError:
        pass
    rows.update(hyperprox_rows(args, "logistic-l1", a, y, lam))
    base = rows["skglm SparseLogisticRegression"][0]
    print(f"ℓ1-logistic {n}×{a.shape[1]}, λ = {args.ratio}·λ_max, gap ≤ {args.tol:g}, best of "
          f"{args.repeat} (baseline {base * 1e3:.2f} ms on this machine)")
    print("| solver | time / skglm | objective − min |")
    print("|---|---|---|")
    objs = {k: logistic_objective(a, y, lam, x) for k, (_, x) in rows.items()}
    omin = min(objs.values())
    for k, (t, x) in rows.items():
        print(f"| {k} | {t / base:.2f} | {objs[k] - omin:.1e} |")


def run_path(a, b, args):
    """λ paths: skglm (a warm-started Lasso per λ, its loosest tolerance that is within the gap
    tolerance of the optimum at every λ), scikit-learn's lasso_path (coordinate descent with
    warm starts, its own gap tolerance), and `hyperprox solve lasso --path`."""
    n = len(b)
    lmax = np.abs(a.T @ b).max() / n
    lambdas = lmax * np.geomspace(1.0, 1e-3, args.path)
    rows = {}
    from skglm import Lasso as SkglmLasso
    from sklearn.linear_model import lasso_path

    def skglm_path(tol):
        m = SkglmLasso(alpha=lambdas[0], fit_intercept=False, tol=tol, warm_start=True,
                       max_iter=1000)
        xs = []
        for lam in lambdas:
            m.alpha = lam
            xs.append(m.fit(a, b).coef_.copy())
        return np.array(xs)

    def objs(xs):
        return np.array([objective(a, b, l, x) for l, x in zip(lambdas, xs)])

    ref = objs(skglm_path(1e-14))
    kkt = next((t for t in 10.0 ** -np.arange(4, 15)
                if (objs(skglm_path(t)) - ref).max() <= args.tol), 1e-14)
    print(f"skglm tol = {kkt:g}")
    rows["skglm (warm-started fits)"] = best_of(args.repeat, lambda: skglm_path(kkt))
    rows["scikit-learn lasso_path"] = best_of(args.repeat, lambda: lasso_path(
        a, b, alphas=lambdas, tol=args.tol * n / (b @ b), max_iter=100000)[1].T)
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "a.npy"), a)
        np.save(os.path.join(d, "b.npy"), b)
        for threads in ["1", "2"]:
            times, xs = [], None
            for _ in range(args.repeat):
                rep, out = os.path.join(d, "r.json"), os.path.join(d, "x.npy")
                subprocess.run([args.bin, "solve", "lasso", "--a", os.path.join(d, "a.npy"),
                                "--b", os.path.join(d, "b.npy"), "--path", str(args.path),
                                "--lambda-min-ratio", "1e-3", "--tol", repr(args.tol),
                                "--out", out, "--report", rep, "--threads", threads],
                               check=True, stdout=subprocess.DEVNULL)
                times.append(json.load(open(rep))["time_s"])
                xs = np.load(out)
            rows[f"hyperprox --path, {threads} thread(s)"] = (min(times), xs)
    base = rows["skglm (warm-started fits)"][0]
    print(f"Lasso path {n}×{a.shape[1]}, {args.path} values of λ down to 1e-3·λ_max, "
          f"gap ≤ {args.tol:g}, best of {args.repeat} (baseline {base * 1e3:.1f} ms)")
    print("| solver | time / skglm | max over λ of objective − reference |")
    print("|---|---|---|")
    for k, (t, xs) in rows.items():
        print(f"| {k} | {t / base:.2f} | {(objs(xs) - ref).max():.1e} |")


if __name__ == "__main__":
    main()
