//! The conformance test kit (feature `testing`): numerical checks that every operator,
//! function, prox, gradient and vector-Jacobian product of hyperprox passes, and that users run
//! on their own implementations.
//!
//! | check | what it verifies |
//! |---|---|
//! | [`check_adjoint`] | `⟨Ax, y⟩ = ⟨x, Aᵀy⟩` on seeded random vectors (relative error) |
//! | [`check_batch`] | batched apply/adjoint equal the column-by-column products |
//! | [`check_prox_oracle`] | `Φ(p) = f(p) + ‖p − x‖²/(2γ)` is not beaten by a brute-force search: a dense grid for `n ≤ 2`, and dense line searches through `p` along every coordinate, every pairwise difference `eᵢ − eⱼ` and random directions |
//! | [`check_prox_optimality`] | `(x − p)/γ ∈ ∂f(p)`: one-sided directional derivatives of `Φ` at `p` are ≥ 0 in random and coordinate directions; for convex `f` the subgradient inequality `f(z) ≥ f(p) + ⟨(x−p)/γ, z − p⟩` at points `z` of `dom f`; for smooth `f` the equation `(x − p)/γ = ∇f(p)` |
//! | [`check_moreau`] | the Moreau identity in envelope form, `M_{γf}(x) + M_{f*/γ}(x/γ) = ‖x‖²/(2γ)`, with the closed-form conjugate (equivalent to the Fenchel–Young equality `f(p) + f*(u) = ⟨p, u⟩`, `u = (x − p)/γ`); where `f*` has no closed form, `∇M_{γf}(x) = (x − p)/γ` against finite differences of the envelope |
//! | [`check_gradient`], [`check_hvp`] | directional finite differences of `f` and `∇f` |
//! | [`check_prox_jacobian`] | `J v` against finite differences of the prox, and `⟨Jv, w⟩ = ⟨v, Jᵀw⟩` |
//! | [`check_forward_map`] | `F'(x)v` against finite differences, and `⟨F'(x)v, w⟩ = ⟨v, F'(x)ᵀw⟩` |
//!
//! All checks are seeded and return `Err(Error::CheckFailed)` with the measured error; the
//! `Ok` value is the measured error (for reports). Tolerances scale with the precision
//! ([`Tolerance::for_type`]). The macros [`operator_conformance!`](crate::operator_conformance),
//! [`prox_conformance!`](crate::prox_conformance) and
//! [`smooth_conformance!`](crate::smooth_conformance) stamp the suites out in `f32` and `f64`.

use crate::error::{Error, Result};
use crate::func::{Function, Prox, Smooth};
use crate::linalg::{randn, Real};
use crate::ops::{ForwardMap, LinearOperator};
use ndarray::{Array1, Array2, ArrayView1};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Tolerances of the checks for one precision.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Relative error allowed in the adjoint test.
    pub adjoint: f64,
    /// Relative error allowed in identities that hold exactly (Moreau, smooth optimality).
    pub identity: f64,
    /// Relative error allowed in finite-difference checks.
    pub fd: f64,
    /// Step of the central finite differences (relative to the scale of the point).
    pub fd_step: f64,
}

impl Tolerance {
    /// Defaults: f64 — adjoint 1e-12, identities 1e-8, FD 1e-5 with step 1e-6;
    /// f32 — adjoint 1e-5, identities 1e-3, FD 2e-2 with step 1e-3. Steps are relative to
    /// `1 + ‖x‖∞`.
    pub fn for_type<T: Real>() -> Self {
        if T::epsilon().as_f64() < 1e-10 {
            Self {
                adjoint: 1e-12,
                identity: 1e-8,
                fd: 1e-5,
                fd_step: 1e-6,
            }
        } else {
            Self {
                adjoint: 1e-5,
                identity: 1e-3,
                fd: 2e-2,
                fd_step: 1e-3,
            }
        }
    }
}

fn fail(msg: String) -> Error {
    Error::CheckFailed(msg)
}

fn dot64<T: Real>(a: ArrayView1<'_, T>, b: ArrayView1<'_, T>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| x.as_f64() * y.as_f64())
        .sum()
}

fn nrm64<T: Real>(a: ArrayView1<'_, T>) -> f64 {
    dot64(a, a).sqrt()
}

fn inf64<T: Real>(a: ArrayView1<'_, T>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.as_f64().abs()))
}

fn to64<T: Real>(a: ArrayView1<'_, T>) -> Array1<f64> {
    a.mapv(|v| v.as_f64())
}

fn from64<T: Real>(a: &Array1<f64>) -> Array1<T> {
    a.mapv(T::c)
}

/// Dot-product test `|⟨Ax, y⟩ − ⟨x, Aᵀy⟩| ≤ tol·max(‖Ax‖‖y‖, ‖x‖‖Aᵀy‖)` over 3 seeded
/// random pairs; returns the largest relative error.
pub fn check_adjoint<T: Real, O: LinearOperator<T> + ?Sized>(
    op: &O,
    seed: u64,
    tol: f64,
) -> Result<f64> {
    let (m, n) = op.shape();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut worst = 0.0f64;
    for _ in 0..3 {
        let x: Array1<T> = randn(n, &mut rng);
        let y: Array1<T> = randn(m, &mut rng);
        let ax = op.apply(x.view())?;
        let aty = op.adjoint(y.view())?;
        let lhs = dot64(ax.view(), y.view());
        let rhs = dot64(x.view(), aty.view());
        let scale = (nrm64(ax.view()) * nrm64(y.view())).max(nrm64(x.view()) * nrm64(aty.view()));
        let err = if scale > 0.0 {
            (lhs - rhs).abs() / scale
        } else {
            0.0
        };
        if !err.is_finite() {
            return Err(fail(format!(
                "adjoint test of {}: non-finite products",
                op.name()
            )));
        }
        worst = worst.max(err);
    }
    if worst > tol {
        return Err(fail(format!(
            "adjoint test of {}: relative error {worst:.3e} > {tol:.1e}",
            op.name()
        )));
    }
    Ok(worst)
}

/// Batched apply/adjoint (4 columns) agree with the column-by-column products.
pub fn check_batch<T: Real, O: LinearOperator<T> + ?Sized>(
    op: &O,
    seed: u64,
    tol: f64,
) -> Result<f64> {
    let (m, n) = op.shape();
    let b = 4;
    let mut rng = StdRng::seed_from_u64(seed);
    let x = Array2::from_shape_vec((n, b), randn::<T>(n * b, &mut rng).to_vec()).expect("shape");
    let y = Array2::from_shape_vec((m, b), randn::<T>(m * b, &mut rng).to_vec()).expect("shape");
    let mut ax = Array2::zeros((m, b));
    let mut aty = Array2::zeros((n, b));
    op.apply_batch_into(ax.view_mut(), x.view())?;
    op.adjoint_batch_into(aty.view_mut(), y.view())?;
    let mut worst = 0.0f64;
    for j in 0..b {
        let c1 = op.apply(x.column(j))?;
        let c2 = op.adjoint(y.column(j))?;
        let e1 = nrm64((&c1 - &ax.column(j)).view()) / nrm64(c1.view()).max(1e-300);
        let e2 = nrm64((&c2 - &aty.column(j)).view()) / nrm64(c2.view()).max(1e-300);
        worst = worst.max(e1).max(e2);
    }
    if worst > tol {
        return Err(fail(format!(
            "batch test of {}: relative error {worst:.3e} > {tol:.1e}",
            op.name()
        )));
    }
    Ok(worst)
}

/// `Φ(p) = f(p) + ‖p − x‖²/(2γ)` in f64 arithmetic (value of `f` from the function itself).
fn prox_objective<T: Real, F: Function<T> + ?Sized>(
    f: &F,
    p: &Array1<f64>,
    x: &Array1<f64>,
    gamma: f64,
) -> f64 {
    let pt: Array1<T> = from64(p);
    let fv = match f.value(pt.view()) {
        Ok(v) => v.as_f64(),
        Err(_) => f64::INFINITY,
    };
    // Evaluate the quadratic at the point actually passed to f (rounded to T).
    let d: f64 = pt
        .iter()
        .zip(x.iter())
        .map(|(&a, &b)| (a.as_f64() - b).powi(2))
        .sum();
    fv + d / (2.0 * gamma)
}

/// Minimizes `φ(t)` over `t ∈ [a, b]`: dense grid of `k` points, then golden-section refinement
/// around the 3 best grid points. Returns the best value.
fn line_min(phi: &dyn Fn(f64) -> f64, a: f64, b: f64, k: usize) -> f64 {
    let h = (b - a) / (k - 1) as f64;
    let vals: Vec<(f64, f64)> = (0..k)
        .map(|i| {
            let t = a + h * i as f64;
            (t, phi(t))
        })
        .collect();
    let mut idx: Vec<usize> = (0..k).filter(|&i| vals[i].1.is_finite()).collect();
    idx.sort_by(|&i, &j| {
        vals[i]
            .1
            .partial_cmp(&vals[j].1)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut best = idx.first().map(|&i| vals[i].1).unwrap_or(f64::INFINITY);
    for &i in idx.iter().take(3) {
        let (mut lo, mut hi) = (vals[i].0 - h, vals[i].0 + h);
        let g = 0.5 * (5f64.sqrt() - 1.0);
        let (mut c, mut d) = (hi - g * (hi - lo), lo + g * (hi - lo));
        let (mut fc, mut fd) = (phi(c), phi(d));
        for _ in 0..60 {
            if fc < fd {
                hi = d;
                d = c;
                fd = fc;
                c = hi - g * (hi - lo);
                fc = phi(c);
            } else {
                lo = c;
                c = d;
                fc = fd;
                d = lo + g * (hi - lo);
                fd = phi(d);
            }
        }
        best = best.min(fc).min(fd);
    }
    best
}

/// Brute-force oracle for the prox (see the module table). `x` is the input point; returns
/// the largest amount by which the oracle beat `Φ(p)` (≤ 0 when the prox is optimal), after
/// checking it is at most `tol·(1 + |Φ(p)|)`.
pub fn check_prox_oracle<T: Real, F: Prox<T> + ?Sized>(
    f: &F,
    x: ArrayView1<'_, T>,
    gamma: T,
    seed: u64,
    tol: f64,
) -> Result<f64> {
    let p = f.prox(x, gamma)?;
    let (p64, x64, g) = (to64(p.view()), to64(x), gamma.as_f64());
    let n = p64.len();
    let phi_p = prox_objective(f, &p64, &x64, g);
    if !phi_p.is_finite() {
        return Err(fail(format!(
            "prox oracle for {}: Φ(prox) = {phi_p} (prox left the domain)",
            f.name()
        )));
    }
    let scale = 1.0 + nrm64(x) + nrm64(p.view());
    let radius = 1.5 * scale;
    let mut best = f64::INFINITY;
    let mut lines = 0usize;
    let mut line = |d: &Array1<f64>| {
        let phi = |t: f64| prox_objective(f, &(&p64 + &(d * t)), &x64, g);
        best = best.min(line_min(&phi, -radius, radius, 801));
        lines += 1;
    };
    for i in 0..n {
        let mut d = Array1::zeros(n);
        d[i] = 1.0;
        line(&d);
    }
    if n <= 10 {
        for i in 0..n {
            for j in i + 1..n {
                let mut d = Array1::zeros(n);
                d[i] = 1.0;
                d[j] = -1.0;
                line(&d);
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..8 {
        let d: Array1<f64> = randn(n, &mut rng);
        let nd = d.dot(&d).sqrt();
        line(&(d / nd));
    }
    if n <= 2 {
        // Dense grid over a box around x and p, then the line refinements above.
        let k = if n == 1 { 4001 } else { 201 };
        let lo = x64
            .iter()
            .zip(&p64)
            .map(|(&a, &b)| a.min(b) - radius)
            .collect::<Vec<_>>();
        let hi = x64
            .iter()
            .zip(&p64)
            .map(|(&a, &b)| a.max(b) + radius)
            .collect::<Vec<_>>();
        let pts = |i: usize, d: usize| lo[d] + (hi[d] - lo[d]) * i as f64 / (k - 1) as f64;
        if n == 1 {
            for i in 0..k {
                best = best.min(prox_objective(f, &Array1::from(vec![pts(i, 0)]), &x64, g));
            }
        } else {
            for i in 0..k {
                for j in 0..k {
                    best = best.min(prox_objective(
                        f,
                        &Array1::from(vec![pts(i, 0), pts(j, 1)]),
                        &x64,
                        g,
                    ));
                }
            }
        }
    }
    let excess = phi_p - best;
    if excess > tol * (1.0 + phi_p.abs()) {
        return Err(fail(format!(
            "prox oracle for {} (γ = {g}): brute force found Φ = {best:.12e} below Φ(prox) = {phi_p:.12e} (by {excess:.3e})",
            f.name()
        )));
    }
    Ok(excess)
}

/// Optimality `(x − p)/γ ∈ ∂f(p)` (see the module table). Returns the worst violation.
pub fn check_prox_optimality<T: Real, F: Prox<T> + ?Sized>(
    f: &F,
    x: ArrayView1<'_, T>,
    gamma: T,
    seed: u64,
    tol: f64,
) -> Result<f64> {
    let p = f.prox(x, gamma)?;
    let (p64, x64, g) = (to64(p.view()), to64(x), gamma.as_f64());
    let n = p64.len();
    let u = (&x64 - &p64) / g;
    let scale = 1.0 + nrm64(x) + nrm64(p.view());
    let phi_p = prox_objective(f, &p64, &x64, g);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut worst = 0.0f64;
    // (1) One-sided directional derivatives of Φ at p are ≥ 0.
    let h = if T::epsilon().as_f64() < 1e-10 {
        1e-5
    } else {
        3e-2
    } * scale;
    let mut dirs: Vec<Array1<f64>> = Vec::new();
    for i in 0..n.min(16) {
        for s in [1.0, -1.0] {
            let mut d = Array1::zeros(n);
            d[i] = s;
            dirs.push(d);
        }
    }
    for _ in 0..8 {
        let d: Array1<f64> = randn(n, &mut rng);
        let nd = d.dot(&d).sqrt();
        dirs.push(d / nd);
    }
    for d in &dirs {
        let v = prox_objective(f, &(&p64 + &(d * h)), &x64, g);
        let slope = (v - phi_p) / h;
        // Allowed: the second-order term of a curved Φ and rounding.
        let allowed = tol * (1.0 + phi_p.abs()) / h + tol.sqrt() * scale;
        if slope < -allowed {
            return Err(fail(format!(
                "prox optimality of {} (γ = {g}): Φ decreases from p along a direction (slope {slope:.3e})",
                f.name()
            )));
        }
        worst = worst.max(-slope);
    }
    let props = f.properties();
    // (2) Subgradient inequality at points of dom f (convex f).
    if props.convex {
        let fp = f.value(p.view())?.as_f64();
        let mut zs: Vec<Array1<f64>> = vec![x64.clone(), Array1::zeros(n)];
        for s in [0.1, 0.5, 2.0, 8.0] {
            let r: Array1<T> = randn::<T>(n, &mut rng).mapv(|v| v * T::c(2.0 * scale));
            zs.push(to64(f.prox(r.view(), T::c(s))?.view()));
            zs.push(&p64 + &(to64(randn::<T>(n, &mut rng).view()) * (s * 0.1 * scale)));
        }
        for z in &zs {
            let zt: Array1<T> = from64(z);
            let fz = f.value(zt.view())?.as_f64();
            if !fz.is_finite() {
                continue;
            }
            let lin = fp + u.dot(&(to64(zt.view()) - &p64));
            let viol = lin - fz;
            let allowed = tol * (1.0 + fz.abs() + lin.abs());
            if viol > allowed {
                return Err(fail(format!(
                    "prox optimality of {} (γ = {g}): subgradient inequality violated by {viol:.3e}",
                    f.name()
                )));
            }
            worst = worst.max(viol);
        }
    }
    Ok(worst)
}

/// Optimality for smooth `f`: `(x − p)/γ = ∇f(p)` (relative error).
pub fn check_prox_smooth_optimality<T: Real, F: Prox<T> + Smooth<T> + ?Sized>(
    f: &F,
    x: ArrayView1<'_, T>,
    gamma: T,
    tol: f64,
) -> Result<f64> {
    let p = f.prox(x, gamma)?;
    let gp = f.gradient(p.view())?;
    let u = (&to64(x) - &to64(p.view())) / gamma.as_f64();
    let err = nrm64((&u - &to64(gp.view())).view()) / (1.0 + nrm64(gp.view()));
    if err > tol {
        return Err(fail(format!(
            "prox optimality of {}: ‖(x − p)/γ − ∇f(p)‖ relative error {err:.3e} > {tol:.1e}",
            f.name()
        )));
    }
    Ok(err)
}

/// The Moreau identity (see the module table). Returns the relative error.
pub fn check_moreau<T: Real, F: Prox<T> + ?Sized>(
    f: &F,
    x: ArrayView1<'_, T>,
    gamma: T,
    tol: &Tolerance,
) -> Result<f64> {
    let p = f.prox(x, gamma)?;
    let (p64, x64, g) = (to64(p.view()), to64(x), gamma.as_f64());
    let u = (&x64 - &p64) / g;
    let ut: Array1<T> = from64(&u);
    match f.conj_value(ut.view()) {
        Ok(fs) => {
            // Envelope identity ⟺ Fenchel–Young equality f(p) + f*(u) = ⟨p, u⟩.
            let fp = f.value(p.view())?.as_f64();
            let fs = fs.as_f64();
            let m1 = fp + (&x64 - &p64).mapv(|v| v * v).sum() / (2.0 * g);
            // prox_{f*/γ}(x/γ) through the trait (Moreau-derived or overridden).
            let xs: Array1<T> = x.mapv(|v| v / gamma);
            let mut q = Array1::zeros(x.len());
            f.conj_prox_into(q.view_mut(), xs.view(), T::one() / gamma)?;
            let q64 = to64(q.view());
            let fsq = f.conj_value(q.view())?.as_f64();
            let m2 = fsq + g * 0.5 * (&q64 - &(&x64 / g)).mapv(|v| v * v).sum();
            let rhs = x64.dot(&x64) / (2.0 * g);
            let scale = 1.0 + fp.abs() + fs.abs() + rhs.abs() + m1.abs() + m2.abs();
            let err = ((m1 + m2 - rhs).abs() / scale).max((fp + fs - p64.dot(&u)).abs() / scale);
            if !(err <= tol.identity) {
                return Err(fail(format!(
                    "Moreau identity for {} (γ = {g}): M_γf(x) + M_(f*/γ)(x/γ) − ‖x‖²/(2γ) relative error {err:.3e} > {:.1e} (f(p) = {fp:.6e}, f*(u) = {fs:.6e}, ⟨p,u⟩ = {:.6e})",
                    f.name(), tol.identity, p64.dot(&u)
                )));
            }
            Ok(err)
        }
        Err(_) => {
            // ∇M_γf(x) = (x − p)/γ against central differences of the envelope.
            let env = |z: &Array1<f64>| -> Result<f64> {
                let zt: Array1<T> = from64(z);
                let pz = f.prox(zt.view(), gamma)?;
                let d = &to64(zt.view()) - &to64(pz.view());
                Ok(f.value(pz.view())?.as_f64() + d.dot(&d) / (2.0 * g))
            };
            let mut rng = StdRng::seed_from_u64(11);
            let h = T::epsilon().as_f64().cbrt() * (1.0 + inf64(x));
            let mut worst = 0.0f64;
            for _ in 0..3 {
                let d: Array1<f64> = randn(x.len(), &mut rng);
                let fd = (env(&(&x64 + &(&d * h)))? - env(&(&x64 - &(&d * h)))?) / (2.0 * h);
                let an = u.dot(&d);
                let err = (fd - an).abs() / (1.0 + an.abs());
                worst = worst.max(err);
            }
            let allowed = tol.fd;
            if worst > allowed {
                return Err(fail(format!(
                    "Moreau envelope gradient of {} (γ = {g}): relative error {worst:.3e} > {allowed:.1e}",
                    f.name()
                )));
            }
            Ok(worst)
        }
    }
}

/// Directional finite differences of `f` against `⟨∇f(x), v⟩` (3 random directions).
pub fn check_gradient<T: Real, F: Smooth<T> + ?Sized>(
    f: &F,
    x: ArrayView1<'_, T>,
    seed: u64,
    tol: &Tolerance,
) -> Result<f64> {
    let g = f.gradient(x)?;
    let mut rng = StdRng::seed_from_u64(seed);
    // Central differences of a value: step ≈ ε^(1/3) balances rounding and truncation.
    let h = T::epsilon().as_f64().cbrt() * (1.0 + inf64(x));
    let mut worst = 0.0f64;
    for _ in 0..3 {
        let v: Array1<T> = randn(x.len(), &mut rng);
        let xp: Array1<T> = &x + &v.mapv(|a| a * T::c(h));
        let xm: Array1<T> = &x - &v.mapv(|a| a * T::c(h));
        let fd = (f.value(xp.view())?.as_f64() - f.value(xm.view())?.as_f64()) / (2.0 * h);
        let an = dot64(g.view(), v.view());
        let scale = 1.0 + nrm64(g.view()) * nrm64(v.view());
        let err = (fd - an).abs() / scale;
        worst = worst.max(err);
    }
    if !(worst <= tol.fd) {
        return Err(fail(format!(
            "gradient of {}: FD relative error {worst:.3e} > {:.1e}",
            f.name(),
            tol.fd
        )));
    }
    Ok(worst)
}

/// Central differences of `∇f` against the Hessian-vector product (3 random directions).
pub fn check_hvp<T: Real, F: Smooth<T> + ?Sized>(
    f: &F,
    x: ArrayView1<'_, T>,
    seed: u64,
    tol: &Tolerance,
) -> Result<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let h = tol.fd_step * (1.0 + inf64(x));
    let mut worst = 0.0f64;
    for _ in 0..3 {
        let v: Array1<T> = randn(x.len(), &mut rng);
        let mut hv = Array1::zeros(x.len());
        f.hvp_into(hv.view_mut(), x, v.view())?;
        let xp: Array1<T> = &x + &v.mapv(|a| a * T::c(h));
        let xm: Array1<T> = &x - &v.mapv(|a| a * T::c(h));
        let fd = (&to64(f.gradient(xp.view())?.view()) - &to64(f.gradient(xm.view())?.view()))
            / (2.0 * h);
        let err = nrm64((&fd - &to64(hv.view())).view()) / (1.0 + nrm64(hv.view()));
        worst = worst.max(err);
    }
    if !(worst <= tol.fd) {
        return Err(fail(format!(
            "HVP of {}: FD relative error {worst:.3e} > {:.1e}",
            f.name(),
            tol.fd
        )));
    }
    Ok(worst)
}

/// The prox Jacobian: `J v` against central differences of the prox, and `⟨Jv, w⟩ = ⟨v, Jᵀw⟩`.
///
/// The proxes of this crate are piecewise smooth, so the Jacobian exists almost everywhere but
/// not at a threshold. A direction along which the central differences with steps `h` and
/// `h/2` disagree crosses such a point and is discarded; three smooth directions (out of at
/// most twelve tried) must pass.
pub fn check_prox_jacobian<T: Real, F: Prox<T> + ?Sized>(
    f: &F,
    x: ArrayView1<'_, T>,
    gamma: T,
    seed: u64,
    tol: &Tolerance,
) -> Result<f64> {
    let n = x.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let h = tol.fd_step * (1.0 + inf64(x));
    let fd_at = |v: &Array1<T>, h: f64| -> Result<Array1<f64>> {
        let xp: Array1<T> = &x + &v.mapv(|a| a * T::c(h));
        let xm: Array1<T> = &x - &v.mapv(|a| a * T::c(h));
        // Use the step actually taken after rounding to T.
        let hp = to64(xp.view()) - to64(xm.view());
        let hh = hp.dot(&to64(v.view())) / (2.0 * to64(v.view()).dot(&to64(v.view())));
        Ok(
            (&to64(f.prox(xp.view(), gamma)?.view()) - &to64(f.prox(xm.view(), gamma)?.view()))
                / (2.0 * hh),
        )
    };
    let mut worst = 0.0f64;
    let mut passed = 0;
    for _ in 0..12 {
        let v: Array1<T> = randn(n, &mut rng);
        let w: Array1<T> = randn(n, &mut rng);
        let mut jv = Array1::zeros(n);
        f.prox_jvp_into(jv.view_mut(), x, gamma, v.view())?;
        let mut jtw = Array1::zeros(n);
        f.prox_vjp_into(jtw.view_mut(), x, gamma, w.view())?;
        let adj = (dot64(jv.view(), w.view()) - dot64(v.view(), jtw.view())).abs()
            / (1.0 + nrm64(jv.view()) * nrm64(w.view()));
        if !(adj <= tol.identity) {
            return Err(fail(format!(
                "prox Jacobian of {} (γ = {gamma}): JVP/VJP adjointness error {adj:.3e} > {:.1e}",
                f.name(),
                tol.identity
            )));
        }
        let fd = fd_at(&v, h)?;
        let fd_half = fd_at(&v, 0.5 * h)?;
        if nrm64((&fd - &fd_half).view()) > tol.fd * (1.0 + nrm64(fd_half.view())) {
            continue; // crosses a nonsmooth point of the prox
        }
        let err = nrm64((&fd - &to64(jv.view())).view()) / (1.0 + nrm64(jv.view()));
        if !(err <= tol.fd) {
            return Err(fail(format!(
                "prox Jacobian of {} (γ = {gamma}): FD relative error {err:.3e} > {:.1e}",
                f.name(),
                tol.fd
            )));
        }
        worst = worst.max(err);
        passed += 1;
        if passed == 3 {
            return Ok(worst);
        }
    }
    Err(fail(format!(
        "prox Jacobian of {} (γ = {gamma}): only {passed} of 12 directions avoid nonsmooth points; test at another point",
        f.name()
    )))
}

/// A forward map's JVP against central differences and its VJP by adjointness.
pub fn check_forward_map<T: Real, F: ForwardMap<T> + ?Sized>(
    f: &F,
    x: ArrayView1<'_, T>,
    seed: u64,
    tol: &Tolerance,
) -> Result<f64> {
    let (m, n) = f.shape();
    let mut rng = StdRng::seed_from_u64(seed);
    let h = tol.fd_step * (1.0 + inf64(x));
    let mut worst = 0.0f64;
    for _ in 0..3 {
        let v: Array1<T> = randn(n, &mut rng);
        let w: Array1<T> = randn(m, &mut rng);
        let mut jv = Array1::zeros(m);
        f.jvp_into(jv.view_mut(), x, v.view())?;
        let mut jtw = Array1::zeros(n);
        f.vjp_into(jtw.view_mut(), x, w.view())?;
        let xp: Array1<T> = &x + &v.mapv(|a| a * T::c(h));
        let xm: Array1<T> = &x - &v.mapv(|a| a * T::c(h));
        let (mut fp, mut fm) = (Array1::zeros(m), Array1::zeros(m));
        f.apply_into(fp.view_mut(), xp.view())?;
        f.apply_into(fm.view_mut(), xm.view())?;
        let fd = (&to64(fp.view()) - &to64(fm.view())) / (2.0 * h);
        let err = nrm64((&fd - &to64(jv.view())).view()) / (1.0 + nrm64(jv.view()));
        let adj = (dot64(jv.view(), w.view()) - dot64(v.view(), jtw.view())).abs()
            / (1.0 + nrm64(jv.view()) * nrm64(w.view()));
        if !(err <= tol.fd) || !(adj <= tol.identity) {
            return Err(fail(format!(
                "forward map JVP/VJP: FD relative error {err:.3e} (tol {:.1e}), adjointness {adj:.3e} (tol {:.1e})",
                tol.fd, tol.identity
            )));
        }
        worst = worst.max(err);
    }
    Ok(worst)
}

/// Seeded test point `N(0, σ²)ⁿ` in precision `T`.
pub fn random_point<T: Real>(n: usize, sigma: f64, seed: u64) -> Array1<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    randn::<T>(n, &mut rng).mapv(|v| v * T::c(sigma))
}

/// Stamps out the adjoint and batch tests of a linear operator in `f32` and `f64`.
///
/// `operator_conformance!(name, |T| constructor_expression_using_T);`
#[macro_export]
macro_rules! operator_conformance {
    ($name:ident, |$t:ident| $ctor:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn make<$t: $crate::linalg::Real + $crate::ops::FftNum>(
            ) -> impl $crate::ops::LinearOperator<$t> {
                $ctor
            }
            fn run<T: $crate::linalg::Real + $crate::ops::FftNum>() {
                let tol = $crate::testing::Tolerance::for_type::<T>();
                let op = make::<T>();
                $crate::testing::check_adjoint(&op, 1, tol.adjoint).unwrap();
                $crate::testing::check_batch(&op, 2, tol.identity).unwrap();
            }
            #[test]
            fn adjoint_f64() {
                run::<f64>();
            }
            #[test]
            fn adjoint_f32() {
                run::<f32>();
            }
        }
    };
}

/// Stamps out the prox suite in `f32` and `f64` for several points and step sizes; `checks`
/// lists which of `prox_oracle`, `prox_optimality`, `prox_moreau` (convex functions only) and
/// `prox_jacobian` to generate (test names `name::check::f64`).
///
/// `prox_conformance!(name, |T| ctor, n = 6, gammas = [0.5, 2.0],
///     checks = [prox_oracle, prox_optimality, prox_moreau, prox_jacobian]);`
#[macro_export]
macro_rules! prox_conformance {
    ($name:ident, |$t:ident| $ctor:expr, n = $n:expr, gammas = [$($g:expr),*], checks = [$($check:ident),*]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn make<$t: $crate::linalg::Real>() -> impl $crate::func::Prox<$t> {
                $ctor
            }
            fn points<T: $crate::linalg::Real>() -> Vec<(ndarray::Array1<T>, T)> {
                let mut v = Vec::new();
                for (k, &g) in [$($g),*].iter().enumerate() {
                    for (s, sigma) in [(0u64, 0.7), (1, 2.5)] {
                        let x = $crate::testing::random_point::<T>($n, sigma, 100 * k as u64 + s);
                        v.push((x, T::c(g)));
                    }
                }
                v
            }
            #[allow(dead_code)]
            fn prox_oracle<T: $crate::linalg::Real>() {
                let f = make::<T>();
                let tol = $crate::testing::Tolerance::for_type::<T>();
                for (i, (x, g)) in points::<T>().iter().enumerate() {
                    $crate::testing::check_prox_oracle(&f, x.view(), *g, i as u64, tol.identity).unwrap();
                }
            }
            #[allow(dead_code)]
            fn prox_optimality<T: $crate::linalg::Real>() {
                let f = make::<T>();
                let tol = $crate::testing::Tolerance::for_type::<T>();
                for (i, (x, g)) in points::<T>().iter().enumerate() {
                    $crate::testing::check_prox_optimality(&f, x.view(), *g, i as u64, tol.identity).unwrap();
                }
            }
            #[allow(dead_code)]
            fn prox_moreau<T: $crate::linalg::Real>() {
                let f = make::<T>();
                let tol = $crate::testing::Tolerance::for_type::<T>();
                assert!(
                    $crate::func::Function::properties(&f).convex,
                    "the Moreau identity is a statement about convex functions"
                );
                for (x, g) in points::<T>() {
                    $crate::testing::check_moreau(&f, x.view(), g, &tol).unwrap();
                }
            }
            #[allow(dead_code)]
            fn prox_jacobian<T: $crate::linalg::Real>() {
                let f = make::<T>();
                let tol = $crate::testing::Tolerance::for_type::<T>();
                for (i, (x, g)) in points::<T>().iter().enumerate() {
                    $crate::testing::check_prox_jacobian(&f, x.view(), *g, i as u64, &tol).unwrap();
                }
            }
            $(
                mod $check {
                    #[test]
                    fn f64() {
                        super::$check::<f64>();
                    }
                    #[test]
                    fn f32() {
                        super::$check::<f32>();
                    }
                }
            )*
        }
    };
}

/// Stamps out gradient and HVP finite-difference checks of a smooth function in `f32` and
/// `f64`: `smooth_conformance!(name, |T| ctor, n = 12);`
#[macro_export]
macro_rules! smooth_conformance {
    ($name:ident, |$t:ident| $ctor:expr, n = $n:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn make<$t: $crate::linalg::Real>() -> impl $crate::func::Smooth<$t> {
                $ctor
            }
            fn grad<T: $crate::linalg::Real>() {
                let f = make::<T>();
                let tol = $crate::testing::Tolerance::for_type::<T>();
                for s in 0..3u64 {
                    let x = $crate::testing::random_point::<T>($n, 1.0, 7 + s);
                    $crate::testing::check_gradient(&f, x.view(), s, &tol).unwrap();
                }
            }
            fn hvp<T: $crate::linalg::Real>() {
                let f = make::<T>();
                let tol = $crate::testing::Tolerance::for_type::<T>();
                for s in 0..3u64 {
                    let x = $crate::testing::random_point::<T>($n, 1.0, 7 + s);
                    $crate::testing::check_hvp(&f, x.view(), s, &tol).unwrap();
                }
            }
            #[test]
            fn gradient_f64() {
                grad::<f64>();
            }
            #[test]
            fn gradient_f32() {
                grad::<f32>();
            }
            #[test]
            fn hvp_f64() {
                hvp::<f64>();
            }
            #[test]
            fn hvp_f32() {
                hvp::<f32>();
            }
        }
    };
}

/// A global allocator that counts the bytes it hands out, for tests that a hot loop allocates
/// nothing. Install it in a test crate with
/// `#[global_allocator] static A: CountingAllocator = CountingAllocator;` and measure with
/// [`allocated_by`].
pub struct CountingAllocator;

static ALLOCATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the same arguments; only a counter
// is added.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

/// Bytes that [`CountingAllocator`] handed out while `f` ran (on any thread: run one
/// measurement at a time).
pub fn allocated_by(f: impl FnOnce()) -> usize {
    let before = ALLOCATED.load(std::sync::atomic::Ordering::SeqCst);
    f();
    ALLOCATED.load(std::sync::atomic::Ordering::SeqCst) - before
}

/// A vector type that is not ndarray (a plain `Vec`), standing in for a device buffer in tests
/// of code written over [`Vector`](crate::Vector) (see [`crate::backend`]). It implements only
/// the required operations, so the fused updates run through the trait's default
/// implementations; the reductions use the same functions as [`Array1`] (`dot` through
/// ndarray, `norm2`/`norm_inf` from [`linalg`](crate::linalg)), so a solver run on it gives
/// the [`Array1`] iterates bit for bit.
#[derive(Clone, Debug, PartialEq)]
pub struct HostVector<T>(pub Vec<T>);

impl<T: Real> HostVector<T> {
    /// A view of the entries.
    pub fn view(&self) -> ArrayView1<'_, T> {
        ArrayView1::from(&self.0[..])
    }
    /// A copy as an [`Array1`].
    pub fn to_array(&self) -> Array1<T> {
        Array1::from(self.0.clone())
    }
    /// Overwrites the entries with those of `a` (same length).
    pub fn assign(&mut self, a: ArrayView1<'_, T>) {
        self.0.iter_mut().zip(a.iter()).for_each(|(o, &v)| *o = v);
    }
}

impl<T: Real> crate::Vector<T> for HostVector<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn dot(&self, o: &Self) -> T {
        self.view().dot(&o.view())
    }
    fn norm2(&self) -> T {
        crate::linalg::norm2(self.view())
    }
    fn norm1(&self) -> T {
        crate::linalg::norm1(self.view())
    }
    fn norm_inf(&self) -> T {
        crate::linalg::norm_inf(self.view())
    }
    fn axpy(&mut self, a: T, x: &Self) {
        self.0.iter_mut().zip(&x.0).for_each(|(y, &x)| *y += a * x);
    }
    fn scale(&mut self, a: T) {
        self.0.iter_mut().for_each(|v| *v *= a);
    }
    fn copy_from(&mut self, x: &Self) {
        self.0.copy_from_slice(&x.0);
    }
    fn zeros_like(&self) -> Self {
        HostVector(vec![T::zero(); self.0.len()])
    }
    fn zeros_of_len(&self, len: usize) -> Self {
        HostVector(vec![T::zero(); len])
    }
    fn fill(&mut self, a: T) {
        self.0.iter_mut().for_each(|v| *v = a);
    }
    fn all_finite(&self) -> bool {
        self.0.iter().all(|v| v.is_finite())
    }
}

/// Mutates a JSON document for fuzzing readers of models and checkpoints: each edit
/// `(path, kind)` picks a node (by `path`, modulo the number of nodes, in depth-first order)
/// and replaces a number by an awkward one (0, −1, 10³⁰⁰, −10³⁰⁰, 2⁵³ + 1, 10⁻³⁰⁰, 3.5, a
/// huge integer), replaces the node by `null`, a string, `true`, an empty array or object,
/// removes an element of an array or a key of an object, or duplicates an array's element.
/// Readers given the result must return `Ok` or `Err`, never panic.
pub fn mutate_json(v: &serde_json::Value, edits: &[(u64, u8)]) -> serde_json::Value {
    use serde_json::{json, Value};
    fn count(v: &Value) -> u64 {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    /// The `k`-th node in depth-first order.
    fn nth(v: &mut Value, k: u64) -> Option<&mut Value> {
        if k == 0 {
            return Some(v);
        }
        let mut k = k - 1;
        let children: Vec<&mut Value> = match v {
            Value::Array(a) => a.iter_mut().collect(),
            Value::Object(o) => o.values_mut().collect(),
            _ => return None,
        };
        for c in children {
            let n = count(c);
            if k < n {
                return nth(c, k);
            }
            k -= n;
        }
        None
    }
    let mut out = v.clone();
    for &(path, kind) in edits {
        let k = path % count(&out);
        let Some(node) = nth(&mut out, k) else {
            continue;
        };
        let numbers = [
            json!(0),
            json!(-1),
            json!(1e300),
            json!(-1e300),
            json!(9_007_199_254_740_993u64),
            json!(1e-300),
            json!(3.5),
            json!(u64::MAX),
        ];
        match kind % 16 {
            k @ 0..=7 => *node = numbers[k as usize].clone(),
            8 => *node = Value::Null,
            9 => *node = json!("x"),
            10 => *node = json!(true),
            11 => *node = json!([]),
            12 => *node = json!({}),
            _ => match node {
                Value::Array(a) if !a.is_empty() => {
                    let i = (path / 7) as usize % a.len();
                    if kind % 2 == 0 {
                        a.remove(i);
                    } else {
                        let e = a[i].clone();
                        a.insert(i, e);
                    }
                }
                Value::Object(o) if !o.is_empty() => {
                    let key = o.keys().nth((path / 7) as usize % o.len()).cloned();
                    if let Some(key) = key {
                        o.remove(&key);
                    }
                }
                _ => *node = Value::Null,
            },
        }
    }
    out
}

/// Cases per property of the fuzz tests: `HYPERPROX_FUZZ_CASES` (default 500, as CI runs them;
/// the full count is 10 000).
pub fn fuzz_cases() -> u32 {
    std::env::var("HYPERPROX_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}
