//! Convex separable penalties: the squared ℓ2 norm, the (weighted) ℓ1 norm with soft
//! thresholding, the elastic net and the Huber function.

use super::separable::{separable, sign, Param, ScalarKernel};
use super::{check_arg, check_prox_args, set_tol, Function, Properties, Prox, Smooth};
use crate::error::{Error, Result};
use crate::linalg::{check_len, check_nonnegative, Real};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

// ---------------------------------------------------------------------------------------------

/// `f(x) = (λ/2)‖x‖²`, `λ ≥ 0`. Smooth (`∇f = λx`, `L = λ`); `prox_{γf}(x) = x/(1 + γλ)`;
/// `f*(y) = ‖y‖²/(2λ)`.
///
/// # References
/// N. Parikh, S. Boyd, "Proximal algorithms", Found. Trends Optim. 1 (2014), §6.1.
#[derive(Clone, Debug)]
pub struct SqrNormL2<T: Real> {
    lambda: T,
}

impl<T: Real> SqrNormL2<T> {
    /// `(λ/2)‖x‖²`.
    pub fn new(lambda: T) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        Ok(Self { lambda })
    }
    fn dim_(&self) -> Option<usize> {
        None
    }
}

impl<T: Real> ScalarKernel<T> for SqrNormL2<T> {
    fn phi(&self, _: usize, x: T) -> T {
        T::c(0.5) * self.lambda * x * x
    }
    fn prox1(&self, _: usize, x: T, g: T) -> T {
        x / (T::one() + g * self.lambda)
    }
    fn dprox1(&self, _: usize, _: T, g: T) -> T {
        T::one() / (T::one() + g * self.lambda)
    }
    fn conj1(&self, _: usize, y: T) -> Option<T> {
        Some(if self.lambda > T::zero() {
            y * y / (T::c(2.0) * self.lambda)
        } else if y == T::zero() {
            T::zero()
        } else {
            T::infinity()
        })
    }
}
separable!(SqrNormL2, |_s: &SqrNormL2<T>| Properties {
    convex: true,
    separable: true,
    smooth: true,
    exact_prox: true,
    ..Default::default()
});

impl<T: Real> Smooth<T> for SqrNormL2<T> {
    fn gradient_into(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        check_len("SqrNormL2::gradient", "out", x.len(), out.len())?;
        out.zip_mut_with(&x, |o, &v| *o = self.lambda * v);
        Ok(())
    }
    fn hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_len("SqrNormL2::hvp", "v", x.len(), v.len())?;
        check_len("SqrNormL2::hvp", "out", x.len(), out.len())?;
        out.zip_mut_with(&v, |o, &vi| *o = self.lambda * vi);
        Ok(())
    }
    fn lipschitz(&self) -> Option<T> {
        Some(self.lambda)
    }
}

// ---------------------------------------------------------------------------------------------

/// `f(x) = Σᵢ wᵢ|xᵢ|` (`wᵢ = λ` for the plain ℓ1 norm `λ‖x‖₁`), weights `≥ 0`.
/// `prox_{γf}(x)ᵢ = sign(xᵢ)·max(|xᵢ| − γwᵢ, 0)` (soft thresholding);
/// `f*(y) = ι{|yᵢ| ≤ wᵢ ∀i}`.
///
/// # References
/// D. L. Donoho, "De-noising by soft-thresholding", IEEE Trans. Inf. Theory 41 (1995);
/// R. Tibshirani, "Regression shrinkage and selection via the lasso", J. R. Stat. Soc. B 58 (1996).
#[derive(Clone, Debug)]
pub struct NormL1<T: Real> {
    w: Param<T>,
}

impl<T: Real> NormL1<T> {
    /// `λ‖x‖₁`.
    pub fn new(lambda: T) -> Result<Self> {
        let w = Param::Scalar(lambda);
        w.check(
            "lambda",
            |v| v >= T::zero() && v.is_finite(),
            "must be finite and >= 0",
        )?;
        Ok(Self { w })
    }
    /// `λ` when one weight is shared by every coordinate.
    pub fn scalar_weight(&self) -> Option<T> {
        match &self.w {
            Param::Scalar(w) => Some(*w),
            Param::PerCoord(_) => None,
        }
    }
    /// The per-coordinate weights (`None` for one weight for every coordinate).
    pub fn weights(&self) -> Option<&Array1<T>> {
        match &self.w {
            Param::Scalar(_) => None,
            Param::PerCoord(w) => Some(w),
        }
    }
    /// `Σ wᵢ|xᵢ|` with per-coordinate weights.
    pub fn weighted(w: Array1<T>) -> Result<Self> {
        let w = Param::PerCoord(w);
        w.check(
            "weights",
            |v| v >= T::zero() && v.is_finite(),
            "weights must be finite and >= 0",
        )?;
        Ok(Self { w })
    }
    fn dim_(&self) -> Option<usize> {
        self.w.dim()
    }
}

/// Soft thresholding `sign(x)·max(|x| − t, 0)`.
#[inline]
pub fn soft_threshold<T: Real>(x: T, t: T) -> T {
    // Branch-free (vectorizes): sign(x)·max(|x| − t, 0) equals x − t, x + t or 0 exactly.
    x.signum() * (x.abs() - t).max(T::zero())
}

impl<T: Real> ScalarKernel<T> for NormL1<T> {
    fn phi(&self, i: usize, x: T) -> T {
        self.w.at(i) * x.abs()
    }
    fn prox1(&self, i: usize, x: T, g: T) -> T {
        soft_threshold(x, g * self.w.at(i))
    }
    fn prox_slice(&self, out: &mut [T], x: &[T], g: T) {
        match &self.w {
            Param::Scalar(w) => {
                let t = g * *w;
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = soft_threshold(v, t);
                }
            }
            Param::PerCoord(w) => {
                for ((o, &v), &wi) in out.iter_mut().zip(x).zip(w.iter()) {
                    *o = soft_threshold(v, g * wi);
                }
            }
        }
    }
    fn dprox1(&self, i: usize, x: T, g: T) -> T {
        if x.abs() > g * self.w.at(i) {
            T::one()
        } else {
            T::zero()
        }
    }
    fn conj1(&self, i: usize, y: T) -> Option<T> {
        let w = self.w.at(i);
        Some(if y.abs() <= w + set_tol(w) {
            T::zero()
        } else {
            T::infinity()
        })
    }
}
separable!(NormL1, |_s: &NormL1<T>| Properties {
    convex: true,
    separable: true,
    exact_prox: true,
    ..Default::default()
});

// ---------------------------------------------------------------------------------------------

/// Elastic net `f(x) = λ(α‖x‖₁ + (1 − α)/2·‖x‖²)`, `λ ≥ 0`, `α ∈ [0, 1]`.
/// `prox_{γf}(x) = soft(x, γλα)/(1 + γλ(1 − α))`;
/// `f*(y) = Σ max(|yᵢ| − λα, 0)²/(2λ(1 − α))`.
///
/// # References
/// H. Zou, T. Hastie, "Regularization and variable selection via the elastic net",
/// J. R. Stat. Soc. B 67 (2005).
#[derive(Clone, Debug)]
pub struct ElasticNet<T: Real> {
    lambda: T,
    alpha: T,
}

impl<T: Real> ElasticNet<T> {
    /// `λ(α‖x‖₁ + (1 − α)/2‖x‖²)`.
    pub fn new(lambda: T, alpha: T) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        if !(alpha >= T::zero() && alpha <= T::one()) {
            return Err(Error::param(
                "alpha",
                alpha,
                "the l1 ratio must lie in [0, 1]",
            ));
        }
        Ok(Self { lambda, alpha })
    }
    /// `(λ, α)`.
    pub fn params(&self) -> (T, T) {
        (self.lambda, self.alpha)
    }
    fn dim_(&self) -> Option<usize> {
        None
    }
}

impl<T: Real> ScalarKernel<T> for ElasticNet<T> {
    fn phi(&self, _: usize, x: T) -> T {
        self.lambda * (self.alpha * x.abs() + T::c(0.5) * (T::one() - self.alpha) * x * x)
    }
    fn prox1(&self, _: usize, x: T, g: T) -> T {
        soft_threshold(x, g * self.lambda * self.alpha)
            / (T::one() + g * self.lambda * (T::one() - self.alpha))
    }
    fn dprox1(&self, _: usize, x: T, g: T) -> T {
        if x.abs() > g * self.lambda * self.alpha {
            T::one() / (T::one() + g * self.lambda * (T::one() - self.alpha))
        } else {
            T::zero()
        }
    }
    fn conj1(&self, _: usize, y: T) -> Option<T> {
        let t = self.lambda * self.alpha;
        let ex = (y.abs() - t).max(T::zero());
        let q = self.lambda * (T::one() - self.alpha);
        Some(if q > T::zero() {
            ex * ex / (T::c(2.0) * q)
        } else if ex <= set_tol(t) {
            T::zero()
        } else {
            T::infinity()
        })
    }
}
separable!(ElasticNet, |_s: &ElasticNet<T>| Properties {
    convex: true,
    separable: true,
    exact_prox: true,
    ..Default::default()
});

// ---------------------------------------------------------------------------------------------

/// Huber function `f(x) = λ Σ h_δ(xᵢ)`, `h_δ(t) = t²/(2δ)` for `|t| ≤ δ`, `|t| − δ/2` otherwise.
/// Smooth with `L = λ/δ`; `prox_{γf}(x)ᵢ = xᵢ δ/(δ + γλ)` if `|xᵢ| ≤ δ + γλ`, else
/// `xᵢ − γλ·sign(xᵢ)`; `f*(y) = Σ δyᵢ²/(2λ)` on `|yᵢ| ≤ λ`.
///
/// # References
/// P. J. Huber, "Robust estimation of a location parameter", Ann. Math. Stat. 35 (1964).
#[derive(Clone, Debug)]
pub struct Huber<T: Real> {
    lambda: T,
    delta: T,
}

impl<T: Real> Huber<T> {
    /// `λ Σ h_δ(xᵢ)`, `λ ≥ 0`, `δ > 0`.
    pub fn new(lambda: T, delta: T) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        if !(delta > T::zero() && delta.is_finite()) {
            return Err(Error::param("delta", delta, "must be finite and > 0"));
        }
        Ok(Self { lambda, delta })
    }
    fn dim_(&self) -> Option<usize> {
        None
    }
    fn grad1(&self, x: T) -> T {
        if x.abs() <= self.delta {
            self.lambda * x / self.delta
        } else {
            self.lambda * sign(x)
        }
    }
}

impl<T: Real> ScalarKernel<T> for Huber<T> {
    fn phi(&self, _: usize, x: T) -> T {
        let a = x.abs();
        self.lambda
            * if a <= self.delta {
                a * a / (T::c(2.0) * self.delta)
            } else {
                a - T::c(0.5) * self.delta
            }
    }
    fn prox1(&self, _: usize, x: T, g: T) -> T {
        let gl = g * self.lambda;
        if x.abs() <= self.delta + gl {
            x * self.delta / (self.delta + gl)
        } else {
            x - gl * sign(x)
        }
    }
    fn dprox1(&self, _: usize, x: T, g: T) -> T {
        let gl = g * self.lambda;
        if x.abs() <= self.delta + gl {
            self.delta / (self.delta + gl)
        } else {
            T::one()
        }
    }
    fn conj1(&self, _: usize, y: T) -> Option<T> {
        Some(if self.lambda == T::zero() {
            if y == T::zero() {
                T::zero()
            } else {
                T::infinity()
            }
        } else if y.abs() <= self.lambda + set_tol(self.lambda) {
            self.delta * y * y / (T::c(2.0) * self.lambda)
        } else {
            T::infinity()
        })
    }
}
separable!(Huber, |_s: &Huber<T>| Properties {
    convex: true,
    separable: true,
    smooth: true,
    exact_prox: true,
    ..Default::default()
});

impl<T: Real> Smooth<T> for Huber<T> {
    fn gradient_into(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        check_len("Huber::gradient", "out", x.len(), out.len())?;
        out.zip_mut_with(&x, |o, &v| *o = self.grad1(v));
        Ok(())
    }
    fn hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_len("Huber::hvp", "v", x.len(), v.len())?;
        check_len("Huber::hvp", "out", x.len(), out.len())?;
        for i in 0..x.len() {
            out[i] = if x[i].abs() <= self.delta {
                self.lambda / self.delta * v[i]
            } else {
                T::zero()
            };
        }
        Ok(())
    }
    fn lipschitz(&self) -> Option<T> {
        Some(self.lambda / self.delta)
    }
}
