//! Nonconvex separable penalties: ℓ0, the generalized Gaussian `|x|^p`, `ℓq` (`q = ½, ⅔`)
//! and CEL0.

use super::norms::soft_threshold;
use super::separable::{separable, sign, Param, ScalarKernel};
use super::{check_arg, check_prox_args, set_tol, Function, Properties, Prox};
use crate::error::{Error, Result};
use crate::linalg::{check_len, check_nonnegative, Real};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

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
    /// `λ`.
    pub fn lambda(&self) -> T {
        self.lambda
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
    fn prox_slice(&self, out: &mut [T], x: &[T], g: T) {
        let th = (T::c(2.0) * g * self.lambda).sqrt();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = if v.abs() > th { v } else { T::zero() };
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
