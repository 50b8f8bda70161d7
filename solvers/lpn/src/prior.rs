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
        // Newton direction by CG on ∇²ψ(y) p = −∇Φ (inexact: relative residual 1e-3).
        let yr = row(y.view());
        let hess = net.hessian_at(yr.view())?;
        let mut p = Array1::<f64>::zeros(d);
        let mut r = -&gr;
        let mut dir = r.clone();
        let mut rr = r.dot(&r);
        for _ in 0..(2 * d).max(10) {
            if rr.sqrt() <= 1e-3 * gn {
                break;
            }
            let hd = hess(row(dir.view()).view()).row(0).to_owned();
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
        if p.iter().all(|v| *v == 0.0) || !(p.dot(&gr) < 0.0) {
            p = -&gr;
        }
        // Armijo backtracking; if rounding hides the decrease, accept a step that reduces ‖∇Φ‖.
        let slope = gr.dot(&p);
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let yt = &y + &(&p * t);
            let (v2, g2) = phi(net, x, yt.view())?;
            if v2 <= val + 1e-4 * t * slope
                || (v2 <= val + 1e-12 * val.abs().max(1.0) && g2.dot(&g2) < gr.dot(&gr))
            {
                accepted = Some((yt, v2, g2));
                break;
            }
            t *= 0.5;
        }
        match accepted {
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
