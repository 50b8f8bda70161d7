//! An LPN as a [`Prox`] of the core crate, so it plugs into the classical solvers unchanged.
//!
//! `f_θ` is *exactly* `prox_{R_θ}` (γ = 1). Plugged into proximal gradient with step 1,
//! `x_{k+1} = f_θ(x_k − ∇h(x_k))` is proximal gradient on `F = h + R_θ`, so with `L_h ≤ 1`
//! `F(x_k)` is non-increasing; put the trade-off into `h` (e.g. `h = (λ/2)‖Ax − y‖²` with
//! `λ‖A‖² ≤ 1`). In ADMM the z-update is `prox_{R_θ/ρ}`, so use `ρ = 1` and scale the data
//! term the same way. Other `γ` are refused with an error (an LPN is the prox of one fixed
//! function, not of its multiples).
//!
//! Two modes: a 1-D model applied to every entry (the separable prior `Σᵢ R_θ(xᵢ)`), or a
//! model on the whole vector (`dim = n`, e.g. an 8×8 image).

use crate::icnn::Icnn;
use crate::prior::{regularizer_from, InvertParams};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::func::{Function, Properties, Prox};
use ndarray::{Array2, ArrayView1, ArrayViewMut1, Axis};
use std::sync::Mutex;

/// The LPN `f_θ = prox_{R_θ}` as a core [`Prox`] (see the module docs).
///
/// The last prox call's input and output are cached: evaluating `R_θ` at that output (what a
/// solver does to report its objective) starts the inversion at the known preimage, so it
/// costs one network evaluation instead of a Newton solve.
#[derive(Debug)]
pub struct LpnProx {
    net: Icnn,
    separable: bool,
    last: Mutex<Option<(Array2<f64>, Array2<f64>)>>,
    /// Inversion settings for evaluating `R_θ`.
    pub invert: InvertParams,
    /// Relative inversion residual above which `x` is taken to be outside the range of `f`
    /// (then `R_θ(x) = +∞`).
    pub range_tol: f64,
}

impl LpnProx {
    /// A 1-D model applied to each entry.
    pub fn separable(net: Icnn) -> Result<Self> {
        if net.config().dim != 1 {
            return Err(Error::param(
                "dim",
                net.config().dim,
                "a separable LPN prior needs a 1-D model",
            ));
        }
        Ok(Self {
            net,
            separable: true,
            last: Mutex::new(None),
            invert: InvertParams::default(),
            range_tol: 1e-6,
        })
    }

    /// A model on the whole vector.
    pub fn vector(net: Icnn) -> Self {
        Self {
            net,
            separable: false,
            last: Mutex::new(None),
            invert: InvertParams::default(),
            range_tol: 1e-6,
        }
    }

    /// Another prior with the same network (fresh cache).
    pub fn duplicate(&self) -> Self {
        Self {
            net: self.net.clone(),
            separable: self.separable,
            last: Mutex::new(None),
            invert: self.invert,
            range_tol: self.range_tol,
        }
    }

    /// The network.
    pub fn net(&self) -> &Icnn {
        &self.net
    }

    fn rows<'a>(&self, x: ArrayView1<'a, f64>) -> Result<Array2<f64>> {
        if self.separable {
            Ok(x.to_owned().insert_axis(Axis(1)))
        } else {
            hyperprox_core::linalg::check_len("LPN prox", "x", self.net.config().dim, x.len())?;
            Ok(x.to_owned().insert_axis(Axis(0)))
        }
    }

    fn check_gamma(&self, gamma: f64) -> Result<()> {
        if (gamma - 1.0).abs() > 1e-12 {
            return Err(Error::Unsupported {
                what: format!("the prox of γ·R_θ with γ = {gamma}"),
                by: "an LPN".into(),
                hint: "; an LPN is exactly prox_{R_θ} (γ = 1): use step 1 (proximal gradient) or ρ = 1 (ADMM) and scale the data term instead".into(),
            });
        }
        Ok(())
    }
}

impl Function<f64> for LpnProx {
    fn name(&self) -> String {
        if self.separable {
            "LPN prior (separable)".into()
        } else {
            "LPN prior".into()
        }
    }
    fn dim(&self) -> Option<usize> {
        (!self.separable).then(|| self.net.config().dim)
    }
    /// `R_θ(x)` (summed over entries in separable mode) by inverting `f`; `+∞` where the
    /// inversion residual exceeds `range_tol·max(‖x‖, 1)` (x outside the range of `f`).
    fn value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        let rows = self.rows(x)?;
        let starts = match &*self.last.lock().expect("not poisoned") {
            Some((out, inp)) if *out == rows => inp.clone(),
            _ => rows.clone(),
        };
        let mut total = 0.0;
        for (r, y0) in rows.rows().into_iter().zip(starts.rows()) {
            let (v, inv) = regularizer_from(&self.net, r, y0, self.invert)?;
            if inv.residual > self.range_tol * r.dot(&r).sqrt().max(1.0) {
                return Ok(f64::INFINITY);
            }
            total += v;
        }
        Ok(total)
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: false,
            separable: self.separable,
            indicator: false,
            smooth: false,
            exact_prox: true,
        }
    }
}

impl Prox<f64> for LpnProx {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        gamma: f64,
    ) -> Result<()> {
        self.check_gamma(gamma)?;
        hyperprox_core::linalg::check_len("LPN prox", "out", x.len(), out.len())?;
        let inp = self.rows(x)?;
        let f = self.net.prox(inp.view())?;
        out.assign(&ndarray::Array1::from_iter(f.iter().cloned()));
        *self.last.lock().expect("not poisoned") = Some((f, inp));
        Ok(())
    }
    /// `∇²ψ_θ(x) v` (the Jacobian of `f = ∇ψ` is the Hessian of `ψ`, symmetric).
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        gamma: f64,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        self.check_gamma(gamma)?;
        hyperprox_core::linalg::check_len("LPN prox Jacobian", "v", x.len(), v.len())?;
        let h = self.net.hvp(self.rows(x)?.view(), self.rows(v)?.view())?;
        out.assign(&ndarray::Array1::from_iter(h.iter().cloned()));
        Ok(())
    }
}
