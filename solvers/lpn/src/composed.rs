//! A trained LPN's regularizer `R_θ` as a part of a composed bilevel problem
//! ([`hyperprox_bilevel::composed`]): learn the weight of a learned prior.
//!
//! With `f = ∇ψ` the network's prox and `y = f⁻¹(x)` ([`crate::prior`]), `R(x) = ⟨x, y⟩ −
//! ½‖x‖² − ψ(y)` has `∇R(x) = y − x` and `∇²R(x) = (∇²ψ(y))⁻¹ − I` (differentiate `f(y) = x`).
//! With the network's `α‖y‖²` term, `∇²ψ ⪰ 2αI`, so `−I ⪯ ∇²R ⪯ (1/(2α) − 1)I`: `R` is
//! smooth with `L_R = max(1, 1/(2α) − 1)` and 1-weakly convex (`μ_R = −1`), so
//! `½‖x − y‖² + w·R(x)` stays strongly convex for `w < 1` — use a bounded weight
//! (`WeightInit::Bounded(w₀, c)`, `c < 1`). How fast `∇²R` changes is not bounded, so a
//! problem with this part reports an estimated error bound. Each gradient inverts `f` by
//! Newton-CG (to `‖f(y) − x‖ ≤ 10⁻¹²·max(‖x‖, 1)`), each Hessian-vector product adds one CG
//! solve with `∇²ψ(y)` (relative residual 10⁻¹²): exact enough for the oracle, and
//! `‖f(y) − x‖` bounds the gradient's error.

use crate::icnn::Icnn;
use crate::prior::{invert, regularizer, InvertParams};
use hyperprox_bilevel::composed::{Bound, ParametricSmooth};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::{conjugate_gradient, CgParams};
use ndarray::{Array1, ArrayView1, Axis};
use std::sync::Arc;

/// `R_θ` of a trained LPN with `α > 0` (see the module docs).
#[derive(Clone)]
pub struct LpnRegularizer {
    net: Arc<Icnn>,
    invert: InvertParams,
}

impl LpnRegularizer {
    /// The regularizer of `net`; `Err` unless its `α > 0` (with `α = 0` the curvature of `R`
    /// has no bound).
    pub fn new(net: Icnn) -> Result<Self> {
        let alpha = net.config().alpha;
        if !(alpha > 0.0) {
            return Err(Error::param(
                "LPN alpha",
                alpha,
                "R_θ is smooth only when the network has α > 0 (train with --alpha, e.g. 0.01)",
            ));
        }
        let negative = net
            .constrained()
            .into_iter()
            .any(|r| net.params.slice(ndarray::s![r]).iter().any(|v| *v < 0.0));
        if negative {
            return Err(Error::param(
                "LPN weights",
                "negative constrained weights",
                "ψ is convex only with W_k, w ≥ 0: project the network (Icnn::project) first",
            ));
        }
        Ok(Self {
            net: Arc::new(net),
            invert: InvertParams {
                tol: 1e-12,
                max_iters: 200,
            },
        })
    }

    fn y(&self, z: &[f64]) -> Option<Array1<f64>> {
        invert(&self.net, ArrayView1::from(z), self.invert)
            .ok()
            .map(|i| i.y)
    }
}

impl ParametricSmooth for LpnRegularizer {
    fn name(&self) -> String {
        "lpn-prior".into()
    }
    fn dim(&self) -> Option<usize> {
        Some(self.net.config().dim)
    }
    fn value(&self, z: &[f64], _p: &[f64]) -> f64 {
        regularizer(&self.net, ArrayView1::from(z), self.invert).map_or(f64::NAN, |r| r.0)
    }
    fn grad_add(&self, z: &[f64], _p: &[f64], s: f64, out: &mut [f64]) {
        match self.y(z) {
            Some(y) => {
                for ((o, yi), zi) in out.iter_mut().zip(&y).zip(z) {
                    *o += s * (yi - zi);
                }
            }
            None => out.fill(f64::NAN),
        }
    }
    fn hvp_add(&self, z: &[f64], _p: &[f64], v: &[f64], s: f64, out: &mut [f64]) {
        let solved = self.y(z).and_then(|y| {
            let yr = y.insert_axis(Axis(0));
            let h = self.net.hessian_at(yr.view()).ok()?;
            let mut u = Array1::zeros(v.len());
            let params = CgParams {
                tol: 1e-12,
                relative: true,
                max_iters: 20 * v.len().max(5),
                require_convergence: false,
            };
            conjugate_gradient(
                |mut o, w| o.assign(&h(w.insert_axis(Axis(0))).row(0)),
                None,
                ArrayView1::from(v),
                u.view_mut(),
                &params,
            )
            .ok()?;
            Some(u)
        });
        match solved {
            Some(u) => {
                for ((o, ui), vi) in out.iter_mut().zip(&u).zip(v) {
                    *o += s * (ui - vi);
                }
            }
            None => out.fill(f64::NAN),
        }
    }
    fn curvature(&self, _p: &[f64]) -> Bound {
        Bound::proven((1.0 / (2.0 * self.net.config().alpha) - 1.0).max(1.0))
    }
    fn strong_convexity(&self, _p: &[f64]) -> f64 {
        -1.0
    }
    fn hessian_lipschitz(&self, _p: &[f64]) -> Option<Bound> {
        None
    }
}
