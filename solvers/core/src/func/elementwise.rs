//! Separable functions `f(x) = Σᵢ φᵢ(xᵢ)` with scalar proxes.

use super::{check_arg, check_prox_args, set_tol, Function, Properties, Prox, Smooth};
use crate::error::{Error, Result};
use crate::linalg::{check_len, check_nonnegative, Real};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

/// A scalar parameter shared by all coordinates or one per coordinate.
#[derive(Clone, Debug)]
pub(crate) enum Param<T> {
    Scalar(T),
    PerCoord(Array1<T>),
}

impl<T: Real> Param<T> {
    #[inline]
    fn at(&self, i: usize) -> T {
        match self {
            Param::Scalar(v) => *v,
            Param::PerCoord(a) => a[i],
        }
    }
    fn dim(&self) -> Option<usize> {
        match self {
            Param::Scalar(_) => None,
            Param::PerCoord(a) => Some(a.len()),
        }
    }
    fn check(&self, name: &str, ok: impl Fn(T) -> bool, hint: &str) -> Result<()> {
        let bad = match self {
            Param::Scalar(v) => (!ok(*v)).then_some(*v),
            Param::PerCoord(a) => a.iter().copied().find(|&v| !ok(v)),
        };
        match bad {
            Some(v) => Err(Error::param(name, v, hint)),
            None => Ok(()),
        }
    }
}

/// The scalar pieces of a separable function.
pub(crate) trait ScalarKernel<T: Real>: Send + Sync {
    /// `φᵢ(x)`.
    fn phi(&self, i: usize, x: T) -> T;
    /// `prox_{γφᵢ}(x)`.
    fn prox1(&self, i: usize, x: T, gamma: T) -> T;
    /// Derivative of `x ↦ prox_{γφᵢ}(x)` (a.e.).
    fn dprox1(&self, i: usize, x: T, gamma: T) -> T;
    /// `φᵢ*(y)` if the function is convex and the conjugate is known.
    fn conj1(&self, _i: usize, _y: T) -> Option<T> {
        None
    }
}

macro_rules! separable {
    ($ty:ident, $props:expr) => {
        impl<T: Real> Function<T> for $ty<T> {
            fn name(&self) -> String {
                stringify!($ty).into()
            }
            fn dim(&self) -> Option<usize> {
                self.dim_()
            }
            fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
                check_arg(stringify!($ty), "x", self.dim_(), x)?;
                Ok(x.iter().enumerate().map(|(i, &v)| self.phi(i, v)).sum())
            }
            fn properties(&self) -> Properties {
                $props(self)
            }
            fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
                check_arg(stringify!($ty), "y", self.dim_(), y)?;
                let mut s = T::zero();
                for (i, &v) in y.iter().enumerate() {
                    match self.conj1(i, v) {
                        Some(c) => s += c,
                        None => {
                            return Err(Error::unsupported(
                                "the convex conjugate value",
                                stringify!($ty),
                            ))
                        }
                    }
                }
                Ok(s)
            }
        }
        impl<T: Real> Prox<T> for $ty<T> {
            fn prox_into(
                &self,
                mut out: ArrayViewMut1<'_, T>,
                x: ArrayView1<'_, T>,
                gamma: T,
            ) -> Result<()> {
                check_prox_args(stringify!($ty), self.dim_(), out.len(), x, gamma)?;
                for (i, (o, &v)) in out.iter_mut().zip(x.iter()).enumerate() {
                    *o = self.prox1(i, v, gamma);
                }
                Ok(())
            }
            fn prox_jvp_into(
                &self,
                mut out: ArrayViewMut1<'_, T>,
                x: ArrayView1<'_, T>,
                gamma: T,
                v: ArrayView1<'_, T>,
            ) -> Result<()> {
                check_prox_args(stringify!($ty), self.dim_(), out.len(), x, gamma)?;
                check_len(stringify!($ty), "v", x.len(), v.len())?;
                for i in 0..x.len() {
                    out[i] = self.dprox1(i, x[i], gamma) * v[i];
                }
                Ok(())
            }
        }
    };
}

fn sign<T: Real>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

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
    if x > t {
        x - t
    } else if x < -t {
        x + t
    } else {
        T::zero()
    }
}

impl<T: Real> ScalarKernel<T> for NormL1<T> {
    fn phi(&self, i: usize, x: T) -> T {
        self.w.at(i) * x.abs()
    }
    fn prox1(&self, i: usize, x: T, g: T) -> T {
        soft_threshold(x, g * self.w.at(i))
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

/// `f(x) = λ‖x‖₀` (number of nonzeros), nonconvex.
/// `prox_{γf}(x)ᵢ = xᵢ·1{|xᵢ| > √(2γλ)}` (hard thresholding; at `|xᵢ| = √(2γλ)` both 0 and
/// `xᵢ` are minimizers and 0 is returned).
///
/// # References
/// T. Blumensath, M. E. Davies, "Iterative thresholding for sparse approximations",
/// J. Fourier Anal. Appl. 14 (2008).
#[derive(Clone, Debug)]
pub struct NormL0<T: Real> {
    lambda: T,
}

impl<T: Real> NormL0<T> {
    /// `λ‖x‖₀`, `λ ≥ 0`.
    pub fn new(lambda: T) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        Ok(Self { lambda })
    }
    fn dim_(&self) -> Option<usize> {
        None
    }
}

impl<T: Real> ScalarKernel<T> for NormL0<T> {
    fn phi(&self, _: usize, x: T) -> T {
        if x != T::zero() {
            self.lambda
        } else {
            T::zero()
        }
    }
    fn prox1(&self, _: usize, x: T, g: T) -> T {
        if x.abs() > (T::c(2.0) * g * self.lambda).sqrt() {
            x
        } else {
            T::zero()
        }
    }
    fn dprox1(&self, _: usize, x: T, g: T) -> T {
        if x.abs() > (T::c(2.0) * g * self.lambda).sqrt() {
            T::one()
        } else {
            T::zero()
        }
    }
}
separable!(NormL0, |_s: &NormL0<T>| Properties {
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

// ---------------------------------------------------------------------------------------------

/// Indicator of the box `{x : loᵢ ≤ xᵢ ≤ hiᵢ}` (bounds may be ±∞). The prox is the clamp;
/// `f*(y) = Σ max(loᵢyᵢ, hiᵢyᵢ)` (the support function).
///
/// # References
/// N. Parikh, S. Boyd, "Proximal algorithms", Found. Trends Optim. 1 (2014), §6.2.
#[derive(Clone, Debug)]
pub struct IndBox<T: Real> {
    lo: Param<T>,
    hi: Param<T>,
}

impl<T: Real> IndBox<T> {
    /// Same bounds `[lo, hi]` for every coordinate, `lo ≤ hi`.
    pub fn new(lo: T, hi: T) -> Result<Self> {
        Self::build(Param::Scalar(lo), Param::Scalar(hi))
    }
    /// Per-coordinate bounds (equal lengths, `loᵢ ≤ hiᵢ`).
    pub fn per_coordinate(lo: Array1<T>, hi: Array1<T>) -> Result<Self> {
        check_len("IndBox::per_coordinate", "hi", lo.len(), hi.len())?;
        Self::build(Param::PerCoord(lo), Param::PerCoord(hi))
    }
    fn build(lo: Param<T>, hi: Param<T>) -> Result<Self> {
        let n = lo.dim().unwrap_or(1);
        for i in 0..n {
            let (l, h) = (lo.at(i), hi.at(i));
            if l.is_nan() || h.is_nan() || l > h {
                return Err(Error::param(
                    format!("bounds[{i}]"),
                    format!("[{l}, {h}]"),
                    "need lo <= hi (no NaN); swap the bounds",
                ));
            }
        }
        Ok(Self { lo, hi })
    }
    fn dim_(&self) -> Option<usize> {
        self.lo.dim()
    }
}

impl<T: Real> ScalarKernel<T> for IndBox<T> {
    fn phi(&self, i: usize, x: T) -> T {
        let (l, h) = (self.lo.at(i), self.hi.at(i));
        if x >= l - set_tol(l) && x <= h + set_tol(h) {
            T::zero()
        } else {
            T::infinity()
        }
    }
    fn prox1(&self, i: usize, x: T, _: T) -> T {
        x.max(self.lo.at(i)).min(self.hi.at(i))
    }
    fn dprox1(&self, i: usize, x: T, _: T) -> T {
        if x > self.lo.at(i) && x < self.hi.at(i) {
            T::one()
        } else {
            T::zero()
        }
    }
    fn conj1(&self, i: usize, y: T) -> Option<T> {
        let (l, h) = (self.lo.at(i), self.hi.at(i));
        Some(if y > T::zero() {
            h * y
        } else if y < T::zero() {
            l * y
        } else {
            T::zero()
        })
    }
}
separable!(IndBox, |_s: &IndBox<T>| Properties {
    convex: true,
    separable: true,
    indicator: true,
    exact_prox: true,
    ..Default::default()
});

/// Indicator of the nonnegative orthant; prox `max(x, 0)`; `f*(y) = ι{y ≤ 0}`.
///
/// # References
/// N. Parikh, S. Boyd, "Proximal algorithms", Found. Trends Optim. 1 (2014), §6.2.
#[derive(Clone, Debug, Default)]
pub struct IndNonnegative<T: Real> {
    _t: std::marker::PhantomData<T>,
}

impl<T: Real> IndNonnegative<T> {
    /// `ι{x ≥ 0}`.
    pub fn new() -> Self {
        Self {
            _t: std::marker::PhantomData,
        }
    }
    fn dim_(&self) -> Option<usize> {
        None
    }
}

impl<T: Real> ScalarKernel<T> for IndNonnegative<T> {
    fn phi(&self, _: usize, x: T) -> T {
        if x >= -set_tol(T::zero()) {
            T::zero()
        } else {
            T::infinity()
        }
    }
    fn prox1(&self, _: usize, x: T, _: T) -> T {
        x.max(T::zero())
    }
    fn dprox1(&self, _: usize, x: T, _: T) -> T {
        if x > T::zero() {
            T::one()
        } else {
            T::zero()
        }
    }
    fn conj1(&self, _: usize, y: T) -> Option<T> {
        Some(if y <= set_tol(T::zero()) {
            T::zero()
        } else {
            T::infinity()
        })
    }
}
separable!(IndNonnegative, |_s: &IndNonnegative<T>| Properties {
    convex: true,
    separable: true,
    indicator: true,
    exact_prox: true,
    ..Default::default()
});

// ---------------------------------------------------------------------------------------------

/// Scalar prox of `μ|t|^p` (`p ∈ (0, 2]`, `μ ≥ 0`) by safeguarded Newton on the optimality
/// condition `t − a + μ p t^{p−1} = 0` (`a = |x|`), with the global comparison against `t = 0`
/// for `p < 1`. Returns the prox and its derivative.
fn prox_power<T: Real>(x: T, mu: T, p: T) -> (T, T) {
    let a = x.abs();
    let one = T::one();
    let two = T::c(2.0);
    if a == T::zero() || mu == T::zero() {
        return (x, one);
    }
    if p == one {
        let t = soft_threshold(x, mu);
        return (t, if t != T::zero() { one } else { T::zero() });
    }
    if p == two {
        return (x / (one + two * mu), one / (one + two * mu));
    }
    let g = |t: T| t - a + mu * p * t.powf(p - one);
    let dg = |t: T| one + mu * p * (p - one) * t.powf(p - two);
    let (mut lo, mut hi) = if p > one {
        (T::zero(), a)
    } else {
        // g is convex on (0, ∞) with minimum at t*; a root exists iff g(t*) ≤ 0.
        let ts = (mu * p * (one - p)).powf(one / (two - p));
        if ts >= a || g(ts) > T::zero() {
            return (T::zero(), T::zero());
        }
        (ts, a)
    };
    let mut t = hi;
    for _ in 0..200 {
        let gt = g(t);
        if gt > T::zero() {
            hi = t;
        } else {
            lo = t;
        }
        let step = gt / dg(t);
        let mut tn = t - step;
        if !(tn > lo && tn < hi && tn.is_finite()) {
            tn = T::c(0.5) * (lo + hi);
        }
        if (tn - t).abs() <= T::c(4.0) * T::epsilon() * t.max(T::min_positive_value()) {
            t = tn;
            break;
        }
        t = tn;
    }
    if p < one {
        let obj_t = T::c(0.5) * (t - a) * (t - a) + mu * t.powf(p);
        if obj_t >= T::c(0.5) * a * a {
            return (T::zero(), T::zero());
        }
    }
    let d = one / dg(t);
    (sign(x) * t, d)
}

/// `f(x) = λ Σ |xᵢ|^p`, the generalized-Gaussian (power) penalty, `p ∈ (0, 2]`, `λ ≥ 0`.
///
/// Convex for `p ≥ 1`, nonconvex (a thresholding prox) for `p < 1`. The prox solves the scalar
/// optimality condition `t − |x| + γλ p t^{p−1} = 0` by safeguarded Newton (closed forms for
/// `p ∈ {1, 2}`; see [`NormLq`] for the closed forms at `p = 1/2, 2/3`); for `p < 1` the root is
/// compared against 0, which gives the global minimizer. For `p > 1`,
/// `f*(y) = (1 − 1/p)·|y|·(|y|/(λp))^{1/(p−1)}` per coordinate.
///
/// # References
/// C. Chaux, P. L. Combettes, J.-C. Pesquet, V. R. Wajs, "A variational formulation for
/// frame-based inverse problems", Inverse Problems 23 (2007) (p ≥ 1);
/// G. Marjanovic, V. Solo, "On ℓq optimization and matrix completion", IEEE TSP 60 (2012) (p < 1).
#[derive(Clone, Debug)]
pub struct GeneralizedGaussian<T: Real> {
    lambda: T,
    p: T,
}

impl<T: Real> GeneralizedGaussian<T> {
    /// `λ Σ |xᵢ|^p`.
    pub fn new(lambda: T, p: T) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        if !(p > T::zero() && p <= T::c(2.0)) {
            return Err(Error::param("p", p, "the exponent must lie in (0, 2]"));
        }
        Ok(Self { lambda, p })
    }
    fn dim_(&self) -> Option<usize> {
        None
    }
}

impl<T: Real> ScalarKernel<T> for GeneralizedGaussian<T> {
    fn phi(&self, _: usize, x: T) -> T {
        if x == T::zero() {
            T::zero()
        } else {
            self.lambda * x.abs().powf(self.p)
        }
    }
    fn prox1(&self, _: usize, x: T, g: T) -> T {
        prox_power(x, g * self.lambda, self.p).0
    }
    fn dprox1(&self, _: usize, x: T, g: T) -> T {
        prox_power(x, g * self.lambda, self.p).1
    }
    fn conj1(&self, _: usize, y: T) -> Option<T> {
        let (l, p) = (self.lambda, self.p);
        if p < T::one() {
            return None;
        }
        if p == T::one() {
            return Some(if y.abs() <= l + set_tol(l) {
                T::zero()
            } else {
                T::infinity()
            });
        }
        if l == T::zero() {
            return Some(if y == T::zero() {
                T::zero()
            } else {
                T::infinity()
            });
        }
        let t = (y.abs() / (l * p)).powf(T::one() / (p - T::one()));
        Some((T::one() - T::one() / p) * y.abs() * t)
    }
}
separable!(GeneralizedGaussian, |s: &GeneralizedGaussian<T>| {
    Properties {
        convex: s.p >= T::one(),
        separable: true,
        exact_prox: true,
        ..Default::default()
    }
});

// ---------------------------------------------------------------------------------------------

/// Which closed-form ℓq prox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LqExponent {
    Half,
    TwoThirds,
}

/// `f(x) = λ Σ |xᵢ|^q` for `q = 1/2` or `q = 2/3`, nonconvex, with the closed-form
/// (thresholding) proxes.
///
/// With `μ = γλ` and `a = |x|`: the prox is 0 below the threshold
/// `τ = (2−q)/(2−2q)·(2μ(1−q))^{1/(2−q)}` (`1.5 μ^{2/3}` for `q = 1/2`, `2(2μ/3)^{3/4}` for
/// `q = 2/3`) and otherwise `sign(x)·t(a)` with
/// * `q = 1/2`: `t = s²`, `s = 2√(a/3)·cos(⅓ arccos(−(3μ/(4a))·√(3/a)))` (largest root of
///   `s³ − as + μ/2 = 0`), the half-thresholding formula;
/// * `q = 2/3`: `t = s³`, `s = (A + √(2a/A − A²))/2`, `A = √(2m)`,
///   `m = 2√(c/3)·cosh(⅓ arccosh((3a²/(16c))·√(3/c)))`, `c = 2μ/3` (Ferrari's solution of
///   `s⁴ − as + c = 0`).
///
/// # References
/// Z. Xu, X. Chang, F. Xu, H. Zhang, "L1/2 regularization: a thresholding representation theory
/// and a fast solver", IEEE TNNLS 23 (2012); W. Cao, J. Sun, Z. Xu, "Fast image deconvolution
/// using closed-form thresholding formulas of Lq (q = 1/2, 2/3) regularization", J. Vis. Commun.
/// Image Represent. 24 (2013).
#[derive(Clone, Debug)]
pub struct NormLq<T: Real> {
    lambda: T,
    q: LqExponent,
}

impl<T: Real> NormLq<T> {
    /// `λ Σ |xᵢ|^{1/2}`.
    pub fn half(lambda: T) -> Result<Self> {
        Self::new(lambda, T::c(0.5))
    }
    /// `λ Σ |xᵢ|^{2/3}`.
    pub fn two_thirds(lambda: T) -> Result<Self> {
        Self::new(lambda, T::c(2.0 / 3.0))
    }
    /// `λ Σ |xᵢ|^q` with `q ∈ {1/2, 2/3}` (use [`GeneralizedGaussian`] for other exponents).
    pub fn new(lambda: T, q: T) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        let q = if (q - T::c(0.5)).abs() < T::c(1e-6) {
            LqExponent::Half
        } else if (q - T::c(2.0 / 3.0)).abs() < T::c(1e-6) {
            LqExponent::TwoThirds
        } else {
            return Err(Error::param(
                "q",
                q,
                "closed forms exist for q = 1/2 and q = 2/3; use GeneralizedGaussian for other exponents",
            ));
        };
        Ok(Self { lambda, q })
    }
    fn dim_(&self) -> Option<usize> {
        None
    }
    fn qv(&self) -> T {
        match self.q {
            LqExponent::Half => T::c(0.5),
            LqExponent::TwoThirds => T::c(2.0 / 3.0),
        }
    }
    fn threshold(&self, mu: T) -> T {
        match self.q {
            LqExponent::Half => T::c(1.5) * mu.powf(T::c(2.0 / 3.0)),
            LqExponent::TwoThirds => T::c(2.0) * (T::c(2.0 / 3.0) * mu).powf(T::c(0.75)),
        }
    }
    /// Magnitude of the prox for `a = |x| > threshold`.
    fn magnitude(&self, a: T, mu: T) -> T {
        match self.q {
            LqExponent::Half => {
                let arg = -(T::c(3.0) * mu / (T::c(4.0) * a)) * (T::c(3.0) / a).sqrt();
                let arg = arg.max(-T::one()).min(T::one());
                let s = T::c(2.0) * (a / T::c(3.0)).sqrt() * (arg.acos() / T::c(3.0)).cos();
                s * s
            }
            LqExponent::TwoThirds => {
                let c = T::c(2.0 / 3.0) * mu;
                let arg = (T::c(3.0) * a * a / (T::c(16.0) * c)) * (T::c(3.0) / c).sqrt();
                let arg = arg.max(T::one());
                let m = T::c(2.0) * (c / T::c(3.0)).sqrt() * (arg.acosh() / T::c(3.0)).cosh();
                let aa = (T::c(2.0) * m).sqrt();
                let s = T::c(0.5) * (aa + (T::c(2.0) * a / aa - aa * aa).max(T::zero()).sqrt());
                s * s * s
            }
        }
    }
}

impl<T: Real> ScalarKernel<T> for NormLq<T> {
    fn phi(&self, _: usize, x: T) -> T {
        if x == T::zero() {
            T::zero()
        } else {
            self.lambda * x.abs().powf(self.qv())
        }
    }
    fn prox1(&self, _: usize, x: T, g: T) -> T {
        let mu = g * self.lambda;
        let a = x.abs();
        if mu == T::zero() {
            return x;
        }
        if a <= self.threshold(mu) {
            T::zero()
        } else {
            sign(x) * self.magnitude(a, mu)
        }
    }
    fn dprox1(&self, i: usize, x: T, g: T) -> T {
        let t = self.prox1(i, x, g).abs();
        if t == T::zero() {
            return if g * self.lambda == T::zero() {
                T::one()
            } else {
                T::zero()
            };
        }
        let q = self.qv();
        T::one() / (T::one() + g * self.lambda * q * (q - T::one()) * t.powf(q - T::c(2.0)))
    }
}
separable!(NormLq, |_s: &NormLq<T>| Properties {
    separable: true,
    exact_prox: true,
    ..Default::default()
});

// ---------------------------------------------------------------------------------------------

/// The continuous exact ℓ0 penalty (CEL0), nonconvex:
/// `Φ(x) = Σᵢ λ − (aᵢ²/2)(|xᵢ| − √(2λ)/aᵢ)²·1{|xᵢ| ≤ √(2λ)/aᵢ}`, with `aᵢ = ‖A_{:,i}‖ > 0` the
/// column norms of the forward operator of `½‖Ax − y‖² + λ‖x‖₀`, whose global minimizers it
/// preserves.
///
/// Prox for `γaᵢ² < 1`: `sign(x)·min(|x|, max(|x| − γaᵢ√(2λ), 0)/(1 − γaᵢ²))`; for `γaᵢ² ≥ 1`
/// the minimizer is `0` or `sign(x)·max(|x|, √(2λ)/aᵢ)`, whichever has the lower objective.
///
/// # References
/// E. Soubies, L. Blanc-Féraud, G. Aubert, "A continuous exact ℓ0 penalty (CEL0) for least
/// squares regularized problem", SIAM J. Imaging Sci. 8 (2015).
#[derive(Clone, Debug)]
pub struct Cel0<T: Real> {
    lambda: T,
    a: Param<T>,
}

impl<T: Real> Cel0<T> {
    /// CEL0 with one column norm `a` for every coordinate.
    pub fn new(lambda: T, a: T) -> Result<Self> {
        Self::build(lambda, Param::Scalar(a))
    }
    /// CEL0 with per-coordinate column norms `aᵢ > 0`.
    pub fn with_column_norms(lambda: T, a: Array1<T>) -> Result<Self> {
        Self::build(lambda, Param::PerCoord(a))
    }
    fn build(lambda: T, a: Param<T>) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        a.check(
            "column norm a",
            |v| v > T::zero() && v.is_finite(),
            "column norms must be finite and > 0 (drop zero columns of A)",
        )?;
        Ok(Self { lambda, a })
    }
    fn dim_(&self) -> Option<usize> {
        self.a.dim()
    }
    fn tau(&self, i: usize) -> T {
        (T::c(2.0) * self.lambda).sqrt() / self.a.at(i)
    }
    /// Returns (prox, derivative).
    fn prox_d(&self, i: usize, x: T, g: T) -> (T, T) {
        let a = self.a.at(i);
        let u = x.abs();
        let ga2 = g * a * a;
        let tau = self.tau(i);
        if ga2 < T::one() {
            let shr =
                (u - g * a * (T::c(2.0) * self.lambda).sqrt()).max(T::zero()) / (T::one() - ga2);
            if u >= tau {
                (x, T::one())
            } else if shr > T::zero() {
                (sign(x) * shr, T::one() / (T::one() - ga2))
            } else {
                (T::zero(), T::zero())
            }
        } else {
            let big = u.max(tau);
            let obj_big = T::c(0.5) * (big - u) * (big - u) + g * self.lambda;
            if obj_big < T::c(0.5) * u * u {
                (sign(x) * big, if u > tau { T::one() } else { T::zero() })
            } else {
                (T::zero(), T::zero())
            }
        }
    }
}

impl<T: Real> ScalarKernel<T> for Cel0<T> {
    fn phi(&self, i: usize, x: T) -> T {
        let a = self.a.at(i);
        let tau = self.tau(i);
        let u = x.abs();
        if u <= tau {
            self.lambda - T::c(0.5) * a * a * (u - tau) * (u - tau)
        } else {
            self.lambda
        }
    }
    fn prox1(&self, i: usize, x: T, g: T) -> T {
        self.prox_d(i, x, g).0
    }
    fn dprox1(&self, i: usize, x: T, g: T) -> T {
        self.prox_d(i, x, g).1
    }
}
separable!(Cel0, |_s: &Cel0<T>| Properties {
    separable: true,
    exact_prox: true,
    ..Default::default()
});
