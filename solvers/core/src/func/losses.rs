//! Data-fit losses: least squares, logistic and multinomial logistic (softmax cross-entropy).

use super::{check_arg, check_prox_args, Function, Properties, Prox, Smooth};
use crate::error::{Error, Result};
use crate::linalg::{check_finite, check_len, conjugate_gradient, CgParams, Real};
use crate::linalg::{log1pexp, sigmoid};
use crate::ops::{LinearOperator, PowerIteration};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, Axis, Zip};
use std::sync::{Mutex, OnceLock};

/// Relative residual tolerance of the inner CG solves (prox of [`LeastSquares`] and its
/// Jacobian): `max(100ε, 1e-12)`, i.e. `1e-12` in f64 and `1.2e-5` in f32.
fn cg_tol<T: Real>() -> T {
    (T::c(100.0) * T::epsilon()).max(T::c(1e-12))
}

/// `f(x) = ½‖Ax − b‖²` for a linear operator `A`.
///
/// Smooth: `∇f = Aᵀ(Ax − b)`, `∇²f v = AᵀA v`, `L = ‖A‖²` (power iteration, computed once on
/// first use). Prox: `(I + γAᵀA) p = x + γAᵀb`, solved matrix-free by conjugate gradients to a
/// relative residual of `max(100ε, 1e-12)` (so [`Properties::exact_prox`] is `false`); the prox Jacobian is
/// `(I + γAᵀA)⁻¹`, applied by the same CG.
///
/// # References
/// N. Parikh, S. Boyd, "Proximal algorithms", Found. Trends Optim. 1 (2014), §6.1.1.
pub struct LeastSquares<T: Real, A> {
    a: A,
    b: Array1<T>,
    lip: OnceLock<T>,
    /// Scratch for `Ax − b` / `Av`, so gradients and values allocate nothing (a concurrent
    /// caller that finds it busy allocates its own).
    scratch: Mutex<Array1<T>>,
}

impl<T: Real, A: LinearOperator<T>> LeastSquares<T, A> {
    /// `½‖Ax − b‖²`; `b` must be finite and of length `m`.
    pub fn new(a: A, b: Array1<T>) -> Result<Self> {
        check_len("LeastSquares::new", "b", a.shape().0, b.len())?;
        check_finite("LeastSquares::new b", b.view())?;
        let m = b.len();
        Ok(Self {
            a,
            b,
            lip: OnceLock::new(),
            scratch: Mutex::new(Array1::zeros(m)),
        })
    }
    /// The operator.
    pub fn operator(&self) -> &A {
        &self.a
    }
    /// The data `b`.
    pub fn data(&self) -> ArrayView1<'_, T> {
        self.b.view()
    }
    /// `f(A v − s·b)` with `A v − s·b` in the scratch buffer (or a fresh one if it is busy).
    fn with_image<R>(
        &self,
        v: ArrayView1<'_, T>,
        subtract_b: bool,
        f: impl FnOnce(ArrayView1<'_, T>) -> Result<R>,
    ) -> Result<R> {
        let fill = |r: &mut Array1<T>| -> Result<()> {
            self.a.apply_into(r.view_mut(), v)?;
            if subtract_b {
                *r -= &self.b;
            }
            Ok(())
        };
        match self.scratch.try_lock() {
            Ok(mut r) => {
                fill(&mut r)?;
                f(r.view())
            }
            Err(_) => {
                let mut r = Array1::zeros(self.b.len());
                fill(&mut r)?;
                f(r.view())
            }
        }
    }
    /// `v ↦ (I + γAᵀA) v` for CG, with one reused scratch buffer.
    fn normal_apply(&self, gamma: T) -> impl Fn(ArrayViewMut1<'_, T>, ArrayView1<'_, T>) + '_ {
        let tmp = std::cell::RefCell::new(Array1::zeros(self.a.shape().0));
        move |mut out: ArrayViewMut1<'_, T>, v: ArrayView1<'_, T>| {
            let mut t = tmp.borrow_mut();
            self.a.apply_unchecked(t.view_mut(), v);
            self.a.adjoint_unchecked(out.view_mut(), t.view());
            Zip::from(&mut out)
                .and(&v)
                .for_each(|o, &vi| *o = vi + gamma * *o);
        }
    }
}

impl<T: Real, A: LinearOperator<T>> Function<T> for LeastSquares<T, A> {
    fn name(&self) -> String {
        format!("LeastSquares({})", self.a.name())
    }
    fn dim(&self) -> Option<usize> {
        Some(self.a.shape().1)
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("LeastSquares", "x", self.dim(), x)?;
        self.with_image(x, true, |r| Ok(T::c(0.5) * r.dot(&r)))
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: true,
            smooth: true,
            ..Default::default()
        }
    }
}

impl<T: Real, A: LinearOperator<T>> Smooth<T> for LeastSquares<T, A> {
    fn gradient_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        check_arg("LeastSquares::gradient", "x", self.dim(), x)?;
        self.with_image(x, true, |r| self.a.adjoint_into(out, r))
    }
    fn hvp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_len("LeastSquares::hvp", "x", self.a.shape().1, x.len())?;
        self.with_image(v, false, |av| self.a.adjoint_into(out, av))
    }
    fn lipschitz(&self) -> Option<T> {
        let l = *self.lip.get_or_init(|| {
            let s = self
                .a
                .opnorm_estimate(PowerIteration::default())
                .unwrap_or(T::infinity());
            // The power iteration approaches ‖A‖ from below; add a safety margin.
            s * s * T::c(1.0 + 1e-6)
        });
        Some(l)
    }
}

impl<T: Real, A: LinearOperator<T>> Prox<T> for LeastSquares<T, A> {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_prox_args("LeastSquares", self.dim(), out.len(), x, gamma)?;
        let mut rhs = self.a.adjoint(self.b.view())?;
        Zip::from(&mut rhs)
            .and(&x)
            .for_each(|r, &xi| *r = xi + gamma * *r);
        out.assign(&x);
        conjugate_gradient(
            self.normal_apply(gamma),
            None,
            rhs.view(),
            out,
            &CgParams::relative(cg_tol(), 10 * x.len() + 100),
        )?;
        Ok(())
    }
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_prox_args("LeastSquares", self.dim(), out.len(), x, gamma)?;
        check_len("LeastSquares::prox_jvp", "v", x.len(), v.len())?;
        out.assign(&v);
        conjugate_gradient(
            self.normal_apply(gamma),
            None,
            v,
            out,
            &CgParams::relative(cg_tol(), 10 * x.len() + 100),
        )?;
        Ok(())
    }
}

/// Binary logistic loss `f(x) = Σᵢ log(1 + exp(−yᵢ (Ax)ᵢ))` with labels `yᵢ ∈ {−1, +1}`.
/// `∇f = −Aᵀ(y ⊙ σ(−y ⊙ Ax))`, `∇²f v = Aᵀ(s ⊙ Av)` with `s = σ(z)(1 − σ(z))`, `L = ‖A‖²/4`.
///
/// # References
/// T. Hastie, R. Tibshirani, J. Friedman, *The Elements of Statistical Learning*, §4.4.
pub struct Logistic<T: Real, A> {
    a: A,
    y: Array1<T>,
    lip: OnceLock<T>,
}

impl<T: Real, A: LinearOperator<T>> Logistic<T, A> {
    /// Logistic loss of the linear model `Ax` against labels in `{−1, +1}`.
    pub fn new(a: A, y: Array1<T>) -> Result<Self> {
        check_len("Logistic::new", "labels", a.shape().0, y.len())?;
        if let Some((i, v)) = y
            .iter()
            .enumerate()
            .find(|(_, v)| **v != T::one() && **v != -T::one())
        {
            return Err(Error::param(
                format!("labels[{i}]"),
                v,
                "labels must be -1 or +1 (map {0, 1} labels with 2y - 1)",
            ));
        }
        Ok(Self {
            a,
            y,
            lip: OnceLock::new(),
        })
    }
}

impl<T: Real, A: LinearOperator<T>> Function<T> for Logistic<T, A> {
    fn name(&self) -> String {
        format!("Logistic({})", self.a.name())
    }
    fn dim(&self) -> Option<usize> {
        Some(self.a.shape().1)
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("Logistic", "x", self.dim(), x)?;
        let z = self.a.apply(x)?;
        Ok(z.iter()
            .zip(&self.y)
            .map(|(&zi, &yi)| log1pexp(-yi * zi))
            .sum())
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: true,
            smooth: true,
            ..Default::default()
        }
    }
}

impl<T: Real, A: LinearOperator<T>> Smooth<T> for Logistic<T, A> {
    fn gradient_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        check_arg("Logistic::gradient", "x", self.dim(), x)?;
        let mut z = self.a.apply(x)?;
        Zip::from(&mut z)
            .and(&self.y)
            .for_each(|zi, &yi| *zi = -yi * sigmoid(-yi * *zi));
        self.a.adjoint_into(out, z.view())
    }
    fn hvp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_arg("Logistic::hvp", "x", self.dim(), x)?;
        let z = self.a.apply(x)?;
        let mut av = self.a.apply(v)?;
        Zip::from(&mut av).and(&z).for_each(|a, &zi| {
            let s = sigmoid(zi);
            *a *= s * (T::one() - s);
        });
        self.a.adjoint_into(out, av.view())
    }
    fn lipschitz(&self) -> Option<T> {
        Some(*self.lip.get_or_init(|| {
            let s = self
                .a
                .opnorm_estimate(PowerIteration::default())
                .unwrap_or(T::infinity());
            s * s * T::c(0.25 * (1.0 + 1e-6))
        }))
    }
}

/// Multinomial logistic loss (softmax cross-entropy) of a linear classifier.
///
/// Data `X ∈ ℝ^{n×d}` (one sample a row), labels `yᵢ ∈ {0, …, K−1}`, weights `W ∈ ℝ^{d×K}`
/// stored row-major in the flat variable. With `Z = XW` and `P = softmax(Z)` (row-wise):
/// `f(W) = (1/n) Σᵢ [logsumexp(Zᵢ) − Z_{i,yᵢ}]`, `∇f = (1/n) Xᵀ(P − Y)` (`Y` one-hot),
/// `∇²f[V] = (1/n) Xᵀ(P ⊙ (XV) − P ⊙ rowsum(P ⊙ XV))`, `L = σ_max(X)²/(2n)`
/// (the softmax Hessian is bounded by ½I).
///
/// # References
/// D. Böhning, "Multinomial logistic regression algorithm", Ann. Inst. Stat. Math. 44 (1992)
/// (the Hessian bound); Hastie, Tibshirani, Friedman, *The Elements of Statistical Learning*, §4.4.
pub struct MultinomialLogistic<T: Real> {
    x: Array2<T>,
    labels: Vec<usize>,
    k: usize,
    lip: OnceLock<T>,
}

impl<T: Real> MultinomialLogistic<T> {
    /// Loss on data `x` (n × d) with labels in `0..k`.
    pub fn new(x: Array2<T>, labels: Vec<usize>, k: usize) -> Result<Self> {
        check_len(
            "MultinomialLogistic::new",
            "labels",
            x.nrows(),
            labels.len(),
        )?;
        if x.nrows() == 0 {
            return Err(Error::param(
                "data",
                "0 samples",
                "need at least one sample",
            ));
        }
        if k < 2 {
            return Err(Error::param("classes", k, "need at least 2 classes"));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= k) {
            return Err(Error::param(
                format!("labels[{i}]"),
                l,
                format!("labels must be < {k}"),
            ));
        }
        if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "MultinomialLogistic data".into(),
                index: i,
                value: format!("{v}"),
            });
        }
        Ok(Self {
            x,
            labels,
            k,
            lip: OnceLock::new(),
        })
    }
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.k
    }
    fn w_view<'a>(&self, w: ArrayView1<'a, T>) -> Result<ArrayView2<'a, T>> {
        let d = self.x.ncols();
        check_arg("MultinomialLogistic", "W", Some(d * self.k), w)?;
        let w = w.into_shape_with_order((d, self.k)).map_err(|_| {
            Error::shape(
                "MultinomialLogistic",
                "a contiguous weight vector",
                d * self.k,
                "non-contiguous view",
            )
        })?;
        Ok(w)
    }
    /// Row-wise softmax of `XW` and the per-sample log-sum-exp.
    fn probs(&self, w: ArrayView2<'_, T>) -> (Array2<T>, Array1<T>) {
        let n = self.x.nrows();
        let mut z = Array2::zeros((n, self.k));
        T::gemm(z.view_mut(), self.x.view(), w, T::one(), false);
        let mut lse = Array1::zeros(n);
        for (mut row, l) in z.axis_iter_mut(Axis(0)).zip(lse.iter_mut()) {
            let scores = row.to_owned();
            *l = crate::linalg::log_softmax_into(scores.view(), row.view_mut());
        }
        (z, lse)
    }
    fn scores(&self, w: ArrayView2<'_, T>) -> Array2<T> {
        let mut z = Array2::zeros((self.x.nrows(), self.k));
        T::gemm(z.view_mut(), self.x.view(), w, T::one(), false);
        z
    }
}

impl<T: Real> Function<T> for MultinomialLogistic<T> {
    fn name(&self) -> String {
        format!(
            "MultinomialLogistic({}x{}, {} classes)",
            self.x.nrows(),
            self.x.ncols(),
            self.k
        )
    }
    fn dim(&self) -> Option<usize> {
        Some(self.x.ncols() * self.k)
    }
    fn value(&self, w: ArrayView1<'_, T>) -> Result<T> {
        let w = self.w_view(w)?;
        let z = self.scores(w);
        let (_, lse) = self.probs(w);
        let n = self.x.nrows();
        let s: T = (0..n).map(|i| lse[i] - z[(i, self.labels[i])]).sum();
        Ok(s / T::c(n as f64))
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: true,
            smooth: true,
            ..Default::default()
        }
    }
}

impl<T: Real> Smooth<T> for MultinomialLogistic<T> {
    fn gradient_into(&self, mut out: ArrayViewMut1<'_, T>, w: ArrayView1<'_, T>) -> Result<()> {
        let wv = self.w_view(w)?;
        check_len("MultinomialLogistic::gradient", "out", w.len(), out.len())?;
        let (mut p, _) = self.probs(wv);
        for (i, &l) in self.labels.iter().enumerate() {
            p[(i, l)] -= T::one();
        }
        let n = T::c(self.x.nrows() as f64);
        let mut g = Array2::zeros((self.x.ncols(), self.k));
        T::gemm(g.view_mut(), self.x.t(), p.view(), T::one() / n, false);
        out.iter_mut().zip(g.iter()).for_each(|(o, &v)| *o = v);
        Ok(())
    }
    fn hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        w: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        let wv = self.w_view(w)?;
        let vv = self.w_view(v)?;
        check_len("MultinomialLogistic::hvp", "out", w.len(), out.len())?;
        let (p, _) = self.probs(wv);
        let mut u = self.scores(vv);
        for (mut urow, prow) in u.axis_iter_mut(Axis(0)).zip(p.axis_iter(Axis(0))) {
            let s: T = urow.iter().zip(prow.iter()).map(|(&a, &b)| a * b).sum();
            Zip::from(&mut urow)
                .and(&prow)
                .for_each(|a, &b| *a = b * (*a - s));
        }
        let n = T::c(self.x.nrows() as f64);
        let mut h = Array2::zeros((self.x.ncols(), self.k));
        T::gemm(h.view_mut(), self.x.t(), u.view(), T::one() / n, false);
        out.iter_mut().zip(h.iter()).for_each(|(o, &val)| *o = val);
        Ok(())
    }
    fn lipschitz(&self) -> Option<T> {
        Some(*self.lip.get_or_init(|| {
            let op = crate::ops::DenseMatrix::new(self.x.clone()).expect("finite data");
            let s = op
                .opnorm_estimate(PowerIteration::default())
                .unwrap_or(T::infinity());
            s * s / (T::c(2.0) * T::c(self.x.nrows() as f64)) * T::c(1.0 + 1e-6)
        }))
    }
}
