//! Multinomial logistic regression with one weight-decay hyperparameter per weight
//! (MAID paper §4.4).
//!
//! Weights `x ∈ ℝ^{d×K}` (stored row-major, feature-major), training features `A ∈ ℝ^{n×d}`
//! and labels, validation `A_v`, labels:
//!
//! ```text
//! h(x, θ) = CE_train(x) + ½ Σ_{ij} e^{θᵢⱼ} xᵢⱼ²,     g(x) = CE_val(x),
//! CE(x) = (1/n) Σ_s [ log Σ_c exp(a_sᵀx_{:,c}) − a_sᵀx_{:,y_s} ].
//! ```
//!
//! With the shipped 8×8 digits: `d = 64`, `K = 10`, 640 hyperparameters (the paper used MNIST
//! at 12×12, 1440). `θ₀ = −3`, `x₀ = 0`.
//!
//! **Constants (all proven: the bound is certified).** `μ = min e^θ` (cross-entropy is
//! convex), `L = ‖A‖²/(2n) + max e^θ` (Böhning's bound `∇²CE ⪯ ½‖A‖²/n`), `L_g = ‖A_v‖²/(2n_v)`,
//! `J = diag(e^θ ⊙ x)` so `‖J‖ = max|e^θ ⊙ x|` and `L_J = max e^θ`, and
//! `L_{H⁻¹} ≤ L_H/μ²` with `L_H = (1/√2)(1/n)Σ_s‖a_s‖³` (the third derivative of log-sum-exp
//! is bounded by `(max − min)·Var ≤ √2·½` on unit vectors).

use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::Real;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, CowArray, Ix1, Ix2};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The multinomial-logistic bilevel problem (see the module docs).
#[derive(Clone, Debug)]
pub struct MultinomialLogistic {
    a_tr: Array2<f64>,
    y_tr: Vec<usize>,
    a_val: Array2<f64>,
    y_val: Vec<usize>,
    k: usize,
    a_norm2: f64,
    a_val_norm2: f64,
    l_h: f64,
}

fn spectral_norm2(a: &Array2<f64>) -> Result<f64> {
    let (_, s, _) = f64::thin_svd(a.view())?;
    Ok(s.iter().cloned().fold(0.0, f64::max).powi(2))
}

/// Softmax probabilities `P` (n×K) of the logits `A X`.
fn probs(a: ArrayView2<'_, f64>, x: ArrayView2<'_, f64>) -> Array2<f64> {
    let mut z = a.dot(&x);
    for mut row in z.rows_mut() {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    z
}

/// Mean cross-entropy.
fn cross_entropy(a: ArrayView2<'_, f64>, y: &[usize], x: ArrayView2<'_, f64>) -> f64 {
    let z = a.dot(&x);
    let mut total = 0.0;
    for (row, &c) in z.rows().into_iter().zip(y) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += lse - row[c];
    }
    total / y.len() as f64
}

/// `∇CE = Aᵀ(P − Y)/n`.
fn ce_grad(a: ArrayView2<'_, f64>, y: &[usize], x: ArrayView2<'_, f64>) -> Array2<f64> {
    let mut p = probs(a, x);
    for (mut row, &c) in p.rows_mut().into_iter().zip(y) {
        row[c] -= 1.0;
    }
    a.t().dot(&p) / y.len() as f64
}

impl MultinomialLogistic {
    /// From training and validation data (`labels < classes`, equal feature counts).
    pub fn new(
        a_tr: Array2<f64>,
        y_tr: Vec<usize>,
        a_val: Array2<f64>,
        y_val: Vec<usize>,
        classes: usize,
    ) -> Result<Self> {
        if a_tr.nrows() == 0 || a_val.nrows() == 0 || classes < 2 {
            return Err(Error::param(
                "data",
                format!(
                    "{} training, {} validation rows, {classes} classes",
                    a_tr.nrows(),
                    a_val.nrows()
                ),
                "need non-empty training and validation sets and at least 2 classes",
            ));
        }
        if a_tr.ncols() != a_val.ncols() {
            return Err(Error::shape(
                "multinomial logistic",
                "validation features",
                format!("{} columns", a_tr.ncols()),
                format!("{} columns", a_val.ncols()),
            ));
        }
        if y_tr.len() != a_tr.nrows() || y_val.len() != a_val.nrows() {
            return Err(Error::shape(
                "multinomial logistic",
                "labels",
                "one per row",
                format!("{} and {}", y_tr.len(), y_val.len()),
            ));
        }
        if let Some(&c) = y_tr.iter().chain(&y_val).find(|&&c| c >= classes) {
            return Err(Error::param(
                "label",
                c,
                format!("labels must be < {classes}"),
            ));
        }
        for (what, a) in [
            ("training features", &a_tr),
            ("validation features", &a_val),
        ] {
            if let Some(v) = a.iter().find(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: what.into(),
                    index: 0,
                    value: v.to_string(),
                });
            }
        }
        let n = a_tr.nrows() as f64;
        let l_h = std::f64::consts::FRAC_1_SQRT_2
            * a_tr
                .rows()
                .into_iter()
                .map(|r| r.dot(&r).powf(1.5))
                .sum::<f64>()
            / n;
        Ok(Self {
            a_norm2: spectral_norm2(&a_tr)?,
            a_val_norm2: spectral_norm2(&a_val)?,
            a_tr,
            y_tr,
            a_val,
            y_val,
            k: classes,
            l_h,
        })
    }

    /// The shipped digits: a seeded random split into `n_train` training and the rest
    /// validation samples.
    pub fn from_digits(path: &std::path::Path, n_train: usize, seed: u64) -> Result<Self> {
        let (a, y) = crate::data::load_digits(path)?;
        if n_train == 0 || n_train >= a.nrows() {
            return Err(Error::param(
                "n_train",
                n_train,
                format!("must lie in 1..{}", a.nrows()),
            ));
        }
        let mut idx: Vec<usize> = (0..a.nrows()).collect();
        idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let take = |ids: &[usize]| {
            (
                Array2::from_shape_fn((ids.len(), a.ncols()), |(i, j)| a[[ids[i], j]]),
                ids.iter().map(|&i| y[i]).collect::<Vec<_>>(),
            )
        };
        let (atr, ytr) = take(&idx[..n_train]);
        let (av, yv) = take(&idx[n_train..]);
        let classes = y.iter().max().map_or(0, |m| m + 1);
        Self::new(atr, ytr, av, yv, classes)
    }

    /// `x` as the `d × K` weight matrix (a strided `x` is copied; a wrong length is `Err`).
    fn as_mat<'a>(&self, x: ArrayView1<'a, f64>) -> Result<CowArray<'a, f64, Ix2>> {
        let (d, k) = (self.a_tr.ncols(), self.k);
        let n = x.len();
        let c: CowArray<'a, f64, Ix1> = if x.is_standard_layout() {
            CowArray::from(x)
        } else {
            CowArray::from(x.to_owned())
        };
        c.into_shape_with_order((d, k))
            .map_err(|_| Error::shape("multinomial logistic weights", "x", d * k, n))
    }

    /// Validation accuracy of the weights `x`.
    pub fn val_accuracy(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        let z = self.a_val.dot(&self.as_mat(x)?);
        let hits = z
            .rows()
            .into_iter()
            .zip(&self.y_val)
            .filter(|(r, &c)| {
                let best = r
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    );
                best.0 == c
            })
            .count();
        Ok(hits as f64 / self.y_val.len() as f64)
    }

    /// `(training samples, validation samples, features, classes)`.
    pub fn shape(&self) -> (usize, usize, usize, usize) {
        (
            self.a_tr.nrows(),
            self.a_val.nrows(),
            self.a_tr.ncols(),
            self.k,
        )
    }
}

impl BilevelProblem for MultinomialLogistic {
    fn name(&self) -> &str {
        "multinomial-logistic"
    }
    fn dim_x(&self) -> usize {
        self.a_tr.ncols() * self.k
    }
    fn dim_theta(&self) -> usize {
        self.dim_x()
    }
    fn x_start(&self) -> Array1<f64> {
        Array1::zeros(self.dim_x())
    }
    fn theta_start(&self) -> Array1<f64> {
        Array1::from_elem(self.dim_x(), -3.0)
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let reg: f64 = x
            .iter()
            .zip(theta)
            .map(|(v, t)| 0.5 * t.exp() * v * v)
            .sum();
        Ok(cross_entropy(self.a_tr.view(), &self.y_tr, self.as_mat(x)?.view()) + reg)
    }
    fn lower_grad_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let g = ce_grad(self.a_tr.view(), &self.y_tr, self.as_mat(x)?.view());
        for (((o, gi), xi), ti) in out.iter_mut().zip(g.iter()).zip(x).zip(theta) {
            *o = gi + ti.exp() * xi;
        }
        Ok(())
    }
    fn lower_hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let p = probs(self.a_tr.view(), self.as_mat(x)?.view());
        let mut zv = self.a_tr.dot(&self.as_mat(v)?);
        for (mut r, pr) in zv.rows_mut().into_iter().zip(p.rows()) {
            let m = r.dot(&pr);
            r.zip_mut_with(&pr, |a, &b| *a = b * (*a - m));
        }
        let hv = self.a_tr.t().dot(&zv) / self.y_tr.len() as f64;
        for (((o, h), vi), ti) in out.iter_mut().zip(hv.iter()).zip(v).zip(theta) {
            *o = h + ti.exp() * vi;
        }
        Ok(())
    }
    fn cross_jt_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()> {
        for (((o, xi), ti), qi) in out.iter_mut().zip(x).zip(theta).zip(q) {
            *o = ti.exp() * xi * qi;
        }
        Ok(())
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        Ok(cross_entropy(
            self.a_val.view(),
            &self.y_val,
            self.as_mat(x)?.view(),
        ))
    }
    fn upper_grad_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let g = ce_grad(self.a_val.view(), &self.y_val, self.as_mat(x)?.view());
        out.iter_mut().zip(g.iter()).for_each(|(o, v)| *o = *v);
        Ok(())
    }
    /// Convex: the validation cross-entropy, convex in the weights (log-sum-exp of linear functions minus a linear term).
    fn upper_convex(&self) -> bool {
        true
    }
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        let (emin, emax) = theta.iter().fold((f64::INFINITY, 0.0f64), |(a, b), t| {
            (a.min(t.exp()), b.max(t.exp()))
        });
        let j = x
            .iter()
            .zip(theta)
            .fold(0.0f64, |m, (v, t)| m.max((t.exp() * v).abs()));
        let mu = emin;
        Ok(Constants {
            mu,
            lipschitz: self.a_norm2 / (2.0 * self.y_tr.len() as f64) + emax,
            l_g: self.a_val_norm2 / (2.0 * self.y_val.len() as f64),
            j_norm: Constant::Known(j),
            l_j: Constant::Known(emax),
            l_hinv: Constant::Known(self.l_h / (mu * mu)),
        })
    }
}
