//! Recovering the regularizer of an LPN.
//!
//! Since `f = ∇ψ` with `ψ` convex, `f` is the proximal operator of
//! `R(x) = ⟨x, y⟩ − ½‖x‖² − ψ(y)` with `y ∈ f⁻¹(x)` (Gribonval & Nikolova 2020; `R = +∞` off
//! the range of `f`). The inverse is the minimizer of the convex function
//! `Φ(y) = ψ(y) − ⟨x, y⟩` (`∇Φ = f(y) − x`, `∇²Φ = ∇²ψ`), found here by Newton-CG with the
//! network's Hessian-vector products and an Armijo line search, started at `y = x`. The
//! inversion residual `‖f(y) − x‖` is reported with every value.
//!
//! # References
//! R. Gribonval, M. Nikolova, "A characterization of proximity operators", J. Math. Imaging
//! Vis. 62 (2020); Fang, Buchanan & Sulam (2024).

use crate::icnn::Icnn;
use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

/// Result of inverting `f` at `x`.
#[derive(Clone, Debug)]
pub struct Inversion {
    /// `y` with `f(y) ≈ x`.
    pub y: Array1<f64>,
    /// `‖f(y) − x‖`.
    pub residual: f64,
    /// Newton iterations.
    pub iterations: usize,
}

/// Settings of the inversion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InvertParams {
    /// Stop when `‖f(y) − x‖ ≤ tol·max(‖x‖, 1)`.
    pub tol: f64,
    /// Newton-iteration cap.
    pub max_iters: usize,
}

impl Default for InvertParams {
    fn default() -> Self {
        Self {
            tol: 1e-9,
            max_iters: 200,
        }
    }
}

fn row(v: ArrayView1<'_, f64>) -> ndarray::Array2<f64> {
    v.to_owned().insert_axis(Axis(0))
}

/// `(Φ(y), ∇Φ(y))` with `Φ(y) = ψ(y) − ⟨x, y⟩`.
fn phi(net: &Icnn, x: ArrayView1<'_, f64>, y: ArrayView1<'_, f64>) -> Result<(f64, Array1<f64>)> {
    let yr = row(y);
    let (psi, f) = net.psi_and_prox(yr.view())?;
    Ok((psi[0] - x.dot(&y), &f.row(0) - &x))
}

/// Solves `f(y) = x` (see the module docs), starting at `y = x`.
pub fn invert(net: &Icnn, x: ArrayView1<'_, f64>, params: InvertParams) -> Result<Inversion> {
    invert_from(net, x, x, params)
}

/// Solves `f(y) = x` starting at `y0` (e.g. the input of the prox call that produced `x`).
pub fn invert_from(
    net: &Icnn,
    x: ArrayView1<'_, f64>,
    y0: ArrayView1<'_, f64>,
    params: InvertParams,
) -> Result<Inversion> {
    let d = net.config().dim;
    hyperprox_core::linalg::check_len("LPN inversion", "x", d, x.len())?;
    hyperprox_core::linalg::check_len("LPN inversion", "y0", d, y0.len())?;
    hyperprox_core::linalg::check_finite("x", x)?;
    hyperprox_core::linalg::check_finite("y0", y0)?;
    let scale = x.dot(&x).sqrt().max(1.0);
    let mut y = y0.to_owned();
    let (mut val, mut gr) = phi(net, x, y.view())?;
    for it in 0..=params.max_iters {
        let gn = gr.dot(&gr).sqrt();
        if gn <= params.tol * scale || it == params.max_iters {
            return Ok(Inversion {
                y,
                residual: gn,
                iterations: it,
            });
        }
        let yr = row(y.view());
        let hess = net.hessian_at(yr.view())?;
        let p = newton_direction(|v| hess(row(v.view()).view()).row(0).to_owned(), &gr);
        match armijo(|yt| phi(net, x, yt.view()), &y, val, &gr, &p)? {
            Some((yt, v2, g2)) => {
                y = yt;
                val = v2;
                gr = g2;
            }
            None => {
                return Ok(Inversion {
                    y,
                    residual: gn,
                    iterations: it,
                });
            }
        }
    }
    unreachable!("the loop returns")
}

/// The inexact Newton direction: CG on `H p = −g` from `p = 0`, stopped when the residual is
/// at most `10⁻³‖g‖`, after `max(2d, 10)` products (a cap for rounding, which can keep CG
/// from converging in `d` steps), or at a direction of curvature `dᵀHd ≤ 10⁻¹⁴‖d‖²` (a
/// singular `∇²ψ`, possible when `α = 0`). When what CG built is not a descent direction
/// (`pᵀg ≥ 0`, which includes `p = 0` from a first direction of no curvature) it is replaced
/// by `−g`. (A CG of its own rather than faer's: the truncation at non-positive curvature is
/// part of the method.)
fn newton_direction(hvp: impl Fn(&Array1<f64>) -> Array1<f64>, g: &Array1<f64>) -> Array1<f64> {
    let d = g.len();
    let gn = g.dot(g).sqrt();
    let mut p = Array1::<f64>::zeros(d);
    let mut r = -g;
    let mut dir = r.clone();
    let mut rr = r.dot(&r);
    for _ in 0..(2 * d).max(10) {
        if rr.sqrt() <= 1e-3 * gn {
            break;
        }
        let hd = hvp(&dir);
        let curv = dir.dot(&hd);
        if !(curv > 1e-14 * dir.dot(&dir)) {
            break;
        }
        let a = rr / curv;
        p.scaled_add(a, &dir);
        r.scaled_add(-a, &hd);
        let rr2 = r.dot(&r);
        dir = &r + &(&dir * (rr2 / rr));
        rr = rr2;
    }
    if !(p.dot(g) < 0.0) {
        p = -g;
    }
    p
}

/// Backtracking from `t = 1`, halving up to 60 times, on `Φ` given as `y ↦ (Φ(y), ∇Φ(y))`:
/// accepts `y + t p` under Armijo's condition `Φ(y + tp) ≤ Φ(y) + 10⁻⁴ t ∇Φ(y)ᵀp`, or, where
/// rounding hides the decrease, when `Φ` grows by at most `10⁻¹²·max(|Φ(y)|, 1)` and `‖∇Φ‖`
/// shrinks. `None` when no trial is accepted.
#[allow(clippy::type_complexity)]
fn armijo(
    phi: impl Fn(&Array1<f64>) -> Result<(f64, Array1<f64>)>,
    y: &Array1<f64>,
    val: f64,
    g: &Array1<f64>,
    p: &Array1<f64>,
) -> Result<Option<(Array1<f64>, f64, Array1<f64>)>> {
    let slope = g.dot(p);
    let gg = g.dot(g);
    let mut t = 1.0;
    for _ in 0..60 {
        let yt = y + &(p * t);
        let (v2, g2) = phi(&yt)?;
        if v2 <= val + 1e-4 * t * slope
            || (v2 <= val + 1e-12 * val.abs().max(1.0) && g2.dot(&g2) < gg)
        {
            return Ok(Some((yt, v2, g2)));
        }
        t *= 0.5;
    }
    Ok(None)
}

/// `R(x) = ⟨x, y⟩ − ½‖x‖² − ψ(y)` with `y = f⁻¹(x)`; returns `(R(x), inversion)`.
pub fn regularizer(
    net: &Icnn,
    x: ArrayView1<'_, f64>,
    params: InvertParams,
) -> Result<(f64, Inversion)> {
    regularizer_from(net, x, x, params)
}

/// [`regularizer`] with the inversion started at `y0`.
pub fn regularizer_from(
    net: &Icnn,
    x: ArrayView1<'_, f64>,
    y0: ArrayView1<'_, f64>,
    params: InvertParams,
) -> Result<(f64, Inversion)> {
    let inv = invert_from(net, x, y0, params)?;
    let psi = net.psi(row(inv.y.view()).view())?[0];
    Ok((x.dot(&inv.y) - 0.5 * x.dot(&x) - psi, inv))
}

/// `R` at each row of `xs` (in parallel); returns values and inversion residuals.
pub fn regularizer_rows(
    net: &Icnn,
    xs: ArrayView2<'_, f64>,
    params: InvertParams,
) -> Result<(Array1<f64>, Array1<f64>)> {
    if xs.ncols() != net.config().dim {
        return Err(Error::shape(
            "LPN prior",
            "input",
            format!("{} columns", net.config().dim),
            format!("{} columns", xs.ncols()),
        ));
    }
    let res: Vec<Result<(f64, f64)>> = (0..xs.nrows())
        .into_par_iter()
        .map(|i| regularizer(net, xs.row(i), params).map(|(v, inv)| (v, inv.residual)))
        .collect();
    let mut vals = Array1::zeros(xs.nrows());
    let mut resid = Array1::zeros(xs.nrows());
    for (i, r) in res.into_iter().enumerate() {
        let (v, e) = r?;
        vals[i] = v;
        resid[i] = e;
    }
    Ok((vals, resid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};
    use std::cell::Cell;

    /// `v ↦ H v`, counting the products.
    fn counted<'a>(
        h: &Array2<f64>,
        n: &'a Cell<usize>,
    ) -> impl Fn(&Array1<f64>) -> Array1<f64> + 'a {
        let h = h.clone();
        move |v: &Array1<f64>| {
            n.set(n.get() + 1);
            h.dot(v)
        }
    }

    /// Textbook CG on `H p = −g` from 0, `k` steps: returns `p` and `‖H p + g‖`.
    fn cg_steps(h: &Array2<f64>, g: &Array1<f64>, k: usize) -> (Array1<f64>, f64) {
        let mut p = Array1::zeros(g.len());
        let mut r = -g;
        let mut d = r.clone();
        for _ in 0..k {
            let hd = h.dot(&d);
            let a = r.dot(&r) / d.dot(&hd);
            p = p + &d * a;
            let r2 = &r - &(&hd * a);
            d = &r2 + &(&d * (r2.dot(&r2) / r.dot(&r)));
            r = r2;
        }
        let res = h.dot(&p) + g;
        (p, res.dot(&res).sqrt())
    }

    #[test]
    fn newton_direction_is_cg_stopped_at_a_relative_residual_of_1e_3() {
        // An SPD matrix with eigenvalues evenly spread over [1, 4], where CG needs 7 steps for
        // 10⁻³, 5 for 10⁻² and 9 for 10⁻⁴ (checked below).
        let d = 12;
        let q = {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let a = Array2::from_shape_fn((d, d), |_| rng.random::<f64>() - 0.5);
            let (u, _, _) = <f64 as hyperprox_core::linalg::Real>::thin_svd(a.view()).unwrap();
            u
        };
        let ev = Array1::from_shape_fn(d, |i| 1.0 + 3.0 * i as f64 / (d - 1) as f64);
        let h = q.dot(&Array2::from_diag(&ev)).dot(&q.t());
        let g = Array1::from_shape_fn(d, |i| (i as f64 * 0.7).sin() + 0.1);
        let gn = g.dot(&g).sqrt();
        let first_within = |tol: f64| {
            (0..=d)
                .find(|&k| cg_steps(&h, &g, k).1 <= tol * gn)
                .unwrap()
        };
        let k = first_within(1e-3);
        assert!(
            k != first_within(1e-2) && k != first_within(1e-4) && k < d,
            "k = {k}"
        );
        let n = Cell::new(0);
        let p = newton_direction(counted(&h, &n), &g);
        let (pk, _) = cg_steps(&h, &g, k);
        let err = (&p - &pk).mapv(f64::abs).fold(0.0, |a: f64, &b| a.max(b));
        assert!(err <= 1e-10 * pk.dot(&pk).sqrt(), "{p} against {pk}");
        assert_eq!(n.get(), k, "one product per CG step");
    }

    #[test]
    fn newton_direction_stops_at_its_cap_of_max_2d_10_products() {
        // A non-symmetric matrix with positive curvature everywhere (I + skew): CG does not
        // converge on it, so only the cap stops it.
        for d in [2usize, 3, 8] {
            let h = Array2::from_shape_fn((d, d), |(i, j)| {
                if i == j {
                    1.0
                } else if i < j {
                    30.0 + (i + j) as f64
                } else {
                    -30.0 - (i + j) as f64
                }
            });
            let g = Array1::from_shape_fn(d, |i| 1.0 + i as f64);
            let n = Cell::new(0);
            let p = newton_direction(counted(&h, &n), &g);
            assert_eq!(n.get(), (2 * d).max(10), "d = {d}");
            assert!(p.iter().all(|v| v.is_finite()) && p.dot(&g) < 0.0);
        }
    }

    #[test]
    fn newton_direction_truncates_at_no_curvature_and_falls_back_to_the_gradient() {
        // diag(1, 10⁻¹⁵), g = (1, 1): the first step is p = (−2, −2) (a = 2); the second CG
        // direction (0, −2) has curvature 4·10⁻¹⁵ ≤ 10⁻¹⁴·‖d‖², so CG stops there.
        let g = array![1.0, 1.0];
        for tiny in [0.0, 1e-15] {
            let h = Array2::from_diag(&array![1.0, tiny]);
            let n = Cell::new(0);
            let p = newton_direction(counted(&h, &n), &g);
            assert!((&p + 2.0).iter().all(|e| e.abs() < 1e-12), "{p}");
            assert_eq!(n.get(), 2);
        }
        // Negative curvature at once: p = 0, replaced by −g.
        let n = Cell::new(0);
        let h = -Array2::<f64>::eye(2);
        assert_eq!(newton_direction(counted(&h, &n), &g), -&g);
        assert_eq!(n.get(), 1);
        // At g = 0 the residual test stops CG before any product (p = 0 = −g).
        let n = Cell::new(0);
        let z = Array1::zeros(2);
        assert_eq!(newton_direction(counted(&Array2::eye(2), &n), &z), z);
        assert_eq!(n.get(), 0);
    }

    /// `Φ(y) = ½(y₁² + K y₂²)`.
    fn quad(k: f64) -> impl Fn(&Array1<f64>) -> Result<(f64, Array1<f64>)> {
        move |y: &Array1<f64>| {
            Ok((
                0.5 * (y[0] * y[0] + k * y[1] * y[1]),
                array![y[0], k * y[1]],
            ))
        }
    }

    #[test]
    fn armijo_requires_a_fraction_1e_4_of_the_predicted_decrease() {
        // From y = (1, 0) along p = (−(2 − δ), ε) on K = 10 with δ = 10⁻³, ½Kε² = 9·10⁻⁴: the
        // full step decreases Φ by about 10⁻⁴ (less than 10⁻⁴·|∇Φᵀp| ≈ 2·10⁻⁴) and the
        // gradient grows, so it is rejected; half the step is accepted. With ½Kε² = 8·10⁻⁴
        // (decrease 2·10⁻⁴ + …) the full step is accepted.
        let y = array![1.0, 0.0];
        let (val, g) = quad(10.0)(&y).unwrap();
        for (half_k_eps2, t) in [(9e-4, 0.5), (7.9e-4, 1.0)] {
            let p = array![-(2.0 - 1e-3), (2.0 * half_k_eps2 / 10.0f64).sqrt()];
            let (yt, v2, g2) = armijo(quad(10.0), &y, val, &g, &p).unwrap().unwrap();
            assert_eq!(yt, &y + &(&p * t), "½Kε² = {half_k_eps2}");
            assert_eq!((v2, g2), quad(10.0)(&yt).unwrap());
        }
        // The fraction is of the decrease predicted for the step tried: from p = (−(4 − δ),
        // 2e) with δ = 2·10⁻³, ½Ke² = 5·10⁻⁴, the full step overshoots (Φ ≈ 4.5); the half
        // step decreases Φ by 5·10⁻⁴ with a growing gradient, which is accepted against
        // 10⁻⁴·½·|∇Φᵀp| ≈ 2·10⁻⁴ (and would not be against 10⁻⁴·2·|∇Φᵀp|).
        let p = array![-(4.0 - 2e-3), 0.02];
        let (yt, _, g2) = armijo(quad(10.0), &y, val, &g, &p).unwrap().unwrap();
        assert_eq!(yt, &y + &(&p * 0.5));
        assert!(g2.dot(&g2) > g.dot(&g), "the gradient grows: {g2}");
        // A step 4× too long is halved twice (Φ at t = 1, ½ is 4.5 and 0.5 against 0.5).
        let g1 = array![1.0, 0.0];
        let (yt, _, _) = armijo(quad(10.0), &y, 0.5, &g1, &array![-4.0, 0.0])
            .unwrap()
            .unwrap();
        assert_eq!(yt, array![0.0, 0.0]);
    }

    #[test]
    fn armijo_accepts_rounding_sized_increases_only_with_a_smaller_gradient() {
        let y = array![1.0, 2.0];
        let g = array![3.0, 4.0];
        let p = array![-1.0, -1.0];
        // Φ reported at every trial as `val + rise`, with a gradient scaled by `shrink`.
        let calls = Cell::new(0);
        let fake = |val: f64, rise: f64, shrink: f64| {
            let calls = &calls;
            let g = g.clone();
            move |_: &Array1<f64>| {
                calls.set(calls.get() + 1);
                Ok((val + rise, &g * shrink))
            }
        };
        // (val, rise, shrink, accepted at t = 1): the allowance is 10⁻¹²·max(|val|, 1).
        for (val, rise, shrink, ok) in [
            (1e3, 5e-10, 0.5, true),
            (-1e3, 5e-10, 0.5, true),
            (1e3, 2e-9, 0.5, false),
            (1e-3, 5e-13, 0.5, true),
            (1e-3, 2e-12, 0.5, false),
            (1e3, 5e-10, 1.0, false),
        ] {
            calls.set(0);
            let out = armijo(fake(val, rise, shrink), &y, val, &g, &p).unwrap();
            match out {
                Some((yt, _, _)) => {
                    assert!(ok, "{val} {rise} {shrink}");
                    assert_eq!((yt, calls.get()), (&y + &p, 1));
                }
                None => {
                    assert!(!ok, "{val} {rise} {shrink}");
                    assert_eq!(calls.get(), 60, "60 trials before giving up");
                }
            }
        }
    }
}
