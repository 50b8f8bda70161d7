//! Ridge regression with its penalty as the hyperparameter, `θ = ln λ`:
//!
//! ```text
//! h(w, θ) = ½‖Xw − y‖²/n + ½e^θ‖w‖²,     g(w) = ½‖X_v w − y_v‖²/n_v.
//! ```
//!
//! `H = XᵀX/n + λI`, `J(w)ᵀq = λ⟨w, q⟩`; the constants are exact: `μ`, `L` the extreme
//! eigenvalues of `XᵀX/n` plus λ, `L_g` the largest of `X_vᵀX_v/n_v`, `‖J(w)‖ = λ‖w‖`,
//! `L_J = λ`, `L_{H⁻¹} = 0` (H does not depend on w): the error bound is certified. The same
//! problem is tuned by the self-tuning network of `hyperprox-stn`, so the two bilevel families
//! meet on it.

use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::{check_len, Real};
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1, Zip};

/// The ridge bilevel problem (see the module docs).
#[derive(Clone, Debug)]
pub struct RidgeProblem {
    x: Array2<f64>,
    y: Array1<f64>,
    xv: Array2<f64>,
    yv: Array1<f64>,
    eig: (f64, f64),
    l_g: f64,
    theta0: f64,
}

fn extreme_eigenvalues(gram: &Array2<f64>) -> Result<(f64, f64)> {
    let (_, s, _) = f64::thin_svd(gram.view())?;
    let max = s.iter().copied().fold(0.0, f64::max);
    let min = s.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((min, max))
}

impl RidgeProblem {
    /// The problem on training `(x, y)` and validation `(xv, yv)`, starting at `λ = lambda0`.
    /// `Err` on mismatched shapes, empty sets or a non-positive `lambda0`.
    pub fn new(
        x: Array2<f64>,
        y: Array1<f64>,
        xv: Array2<f64>,
        yv: Array1<f64>,
        lambda0: f64,
    ) -> Result<Self> {
        if x.nrows() == 0 || xv.nrows() == 0 || x.ncols() == 0 {
            return Err(Error::param("data", "empty", "need samples and features"));
        }
        check_len("RidgeProblem", "training targets", x.nrows(), y.len())?;
        check_len("RidgeProblem", "validation targets", xv.nrows(), yv.len())?;
        check_len("RidgeProblem", "validation features", x.ncols(), xv.ncols())?;
        if !(lambda0 > 0.0 && lambda0.is_finite()) {
            return Err(Error::param("lambda0", lambda0, "must be positive"));
        }
        let eig = extreme_eigenvalues(&(x.t().dot(&x) / x.nrows() as f64))?;
        let l_g = extreme_eigenvalues(&(xv.t().dot(&xv) / xv.nrows() as f64))?.1;
        Ok(Self {
            x,
            y,
            xv,
            yv,
            eig,
            l_g,
            theta0: lambda0.ln(),
        })
    }

    fn n(&self) -> f64 {
        self.x.nrows() as f64
    }
}

impl BilevelProblem for RidgeProblem {
    fn name(&self) -> &str {
        "ridge"
    }
    fn dim_x(&self) -> usize {
        self.x.ncols()
    }
    fn dim_theta(&self) -> usize {
        1
    }
    fn x_start(&self) -> Array1<f64> {
        Array1::zeros(self.x.ncols())
    }
    fn theta_start(&self) -> Array1<f64> {
        Array1::from_elem(1, self.theta0)
    }
    fn lower_value(&self, w: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let r = self.x.dot(&w) - &self.y;
        Ok(0.5 * r.dot(&r) / self.n() + 0.5 * theta[0].exp() * w.dot(&w))
    }
    fn lower_grad_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        w: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let r = self.x.dot(&w) - &self.y;
        let g = self.x.t().dot(&r) / self.n();
        let l = theta[0].exp();
        Zip::from(&mut out)
            .and(&g)
            .and(&w)
            .for_each(|o, &g, &w| *o = g + l * w);
        Ok(())
    }
    fn lower_hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        _w: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let hv = self.x.t().dot(&self.x.dot(&v)) / self.n();
        let l = theta[0].exp();
        Zip::from(&mut out)
            .and(&hv)
            .and(&v)
            .for_each(|o, &h, &v| *o = h + l * v);
        Ok(())
    }
    fn cross_jt_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        w: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()> {
        out[0] = theta[0].exp() * w.dot(&q);
        Ok(())
    }
    fn upper_value(&self, w: ArrayView1<'_, f64>) -> Result<f64> {
        let r = self.xv.dot(&w) - &self.yv;
        Ok(0.5 * r.dot(&r) / self.xv.nrows() as f64)
    }
    fn upper_grad_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        w: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let r = self.xv.dot(&w) - &self.yv;
        out.assign(&(self.xv.t().dot(&r) / self.xv.nrows() as f64));
        Ok(())
    }
    fn upper_convex(&self) -> bool {
        true
    }
    fn constants(&self, w: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        let l = theta[0].exp();
        Ok(Constants {
            mu: self.eig.0 + l,
            lipschitz: self.eig.1 + l,
            l_g: self.l_g,
            j_norm: Constant::Known(l * w.dot(&w).sqrt()),
            l_j: Constant::Known(l),
            l_hinv: Constant::Known(0.0),
        })
    }
}
