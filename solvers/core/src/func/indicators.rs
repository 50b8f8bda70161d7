//! Indicators: boxes, the nonnegative orthant (separable), the simplex and ℓ2 / ℓ1 balls.

use super::separable::{separable, Param, ScalarKernel};
use super::{check_arg, check_prox_args, set_tol, Function, Properties, Prox};
use crate::error::{Error, Result};
use crate::linalg::{check_len, norm1, norm2, norm_inf, Real};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};

fn check_radius<T: Real>(r: T) -> Result<()> {
    if !(r >= T::zero() && r.is_finite()) {
        return Err(Error::param("radius", r, "must be finite and >= 0"));
    }
    Ok(())
}

/// Threshold `θ` of the projection of `a` onto `{p ≥ 0, Σp = r}`: `p = max(a − θ, 0)`
/// (sort-based, `O(n log n)`).
fn simplex_threshold<T: Real>(a: impl Iterator<Item = T>, r: T) -> T {
    let mut s: Vec<T> = a.collect();
    s.sort_by(|x, y| y.partial_cmp(x).unwrap_or(std::cmp::Ordering::Equal));
    let mut cum = T::zero();
    let mut theta = T::zero();
    for (k, &v) in s.iter().enumerate() {
        cum += v;
        let t = (cum - r) / T::c((k + 1) as f64);
        if v - t > T::zero() {
            theta = t;
        } else {
            break;
        }
    }
    theta
}

/// Indicator of the scaled simplex `Δ_r = {x ≥ 0, Σxᵢ = r}`, `r > 0`.
/// The prox is the Euclidean projection `max(x − θ, 0)`; `f*(y) = r·maxᵢ yᵢ`.
///
/// # References
/// J. Duchi, S. Shalev-Shwartz, Y. Singer, T. Chandra, "Efficient projections onto the ℓ1-ball
/// for learning in high dimensions", ICML 2008.
#[derive(Clone, Debug)]
pub struct IndSimplex<T: Real> {
    r: T,
}

impl<T: Real> IndSimplex<T> {
    /// `Δ_r`, `r > 0`.
    pub fn new(r: T) -> Result<Self> {
        if !(r > T::zero() && r.is_finite()) {
            return Err(Error::param(
                "radius",
                r,
                "the simplex needs a finite r > 0",
            ));
        }
        Ok(Self { r })
    }
}

impl<T: Real> Function<T> for IndSimplex<T> {
    fn name(&self) -> String {
        "IndSimplex".into()
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("IndSimplex", "x", None, x)?;
        let tol = set_tol(self.r) * T::c(x.len().max(1) as f64);
        let ok = x.iter().all(|&v| v >= -tol) && (x.sum() - self.r).abs() <= tol;
        Ok(if ok { T::zero() } else { T::infinity() })
    }
    fn properties(&self) -> Properties {
        Properties::convex_indicator()
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        check_arg("IndSimplex", "y", None, y)?;
        if y.is_empty() {
            return Err(Error::param(
                "y",
                "empty",
                "the simplex needs at least one coordinate",
            ));
        }
        Ok(self.r * y.iter().copied().fold(T::neg_infinity(), T::max))
    }
}

impl<T: Real> Prox<T> for IndSimplex<T> {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_prox_args("IndSimplex", None, out.len(), x, gamma)?;
        if x.is_empty() {
            return Err(Error::param(
                "x",
                "empty",
                "the simplex needs at least one coordinate",
            ));
        }
        let theta = simplex_threshold(x.iter().copied(), self.r);
        out.zip_mut_with(&x, |o, &v| *o = (v - theta).max(T::zero()));
        Ok(())
    }
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_len("IndSimplex::prox_jvp", "v", x.len(), v.len())?;
        self.prox_into(out.view_mut(), x, gamma)?;
        // J = I_S − 1_S 1_Sᵀ/|S| on the support S of the projection.
        let (mut k, mut s) = (0usize, T::zero());
        for (o, &vi) in out.iter().zip(v.iter()) {
            if *o > T::zero() {
                k += 1;
                s += vi;
            }
        }
        let mean = s / T::c(k.max(1) as f64);
        for i in 0..x.len() {
            out[i] = if out[i] > T::zero() {
                v[i] - mean
            } else {
                T::zero()
            };
        }
        Ok(())
    }
}

/// Indicator of the Euclidean ball `{‖x‖ ≤ r}`; prox `x·min(1, r/‖x‖)`; `f*(y) = r‖y‖`.
///
/// # References
/// N. Parikh, S. Boyd, "Proximal algorithms", Found. Trends Optim. 1 (2014), §6.5.
#[derive(Clone, Debug)]
pub struct IndBallL2<T: Real> {
    r: T,
}

impl<T: Real> IndBallL2<T> {
    /// Ball of radius `r ≥ 0` centred at 0.
    pub fn new(r: T) -> Result<Self> {
        check_radius(r)?;
        Ok(Self { r })
    }
    /// The radius.
    pub fn radius(&self) -> T {
        self.r
    }
}

impl<T: Real> Function<T> for IndBallL2<T> {
    fn name(&self) -> String {
        "IndBallL2".into()
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("IndBallL2", "x", None, x)?;
        Ok(if norm2(x) <= self.r + set_tol(self.r) {
            T::zero()
        } else {
            T::infinity()
        })
    }
    fn properties(&self) -> Properties {
        Properties::convex_indicator()
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        check_arg("IndBallL2", "y", None, y)?;
        Ok(self.r * norm2(y))
    }
}

impl<T: Real> Prox<T> for IndBallL2<T> {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_prox_args("IndBallL2", None, out.len(), x, gamma)?;
        let n = norm2(x);
        let s = if n > self.r { self.r / n } else { T::one() };
        out.zip_mut_with(&x, |o, &v| *o = s * v);
        Ok(())
    }
    fn prox_jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_prox_args("IndBallL2", None, out.len(), x, gamma)?;
        check_len("IndBallL2::prox_jvp", "v", x.len(), v.len())?;
        let n = norm2(x);
        if n <= self.r {
            out.assign(&v);
        } else {
            // (r/‖x‖)(I − x xᵀ/‖x‖²) v
            let c = x.dot(&v) / (n * n);
            let s = self.r / n;
            for i in 0..x.len() {
                out[i] = s * (v[i] - c * x[i]);
            }
        }
        Ok(())
    }
}

/// Indicator of the ℓ1 ball `{‖x‖₁ ≤ r}`; prox by soft thresholding at the level that projects
/// `|x|` onto the simplex; `f*(y) = r‖y‖∞`.
///
/// # References
/// J. Duchi et al., ICML 2008 (as for [`IndSimplex`]).
#[derive(Clone, Debug)]
pub struct IndBallL1<T: Real> {
    r: T,
}

impl<T: Real> IndBallL1<T> {
    /// Ball of radius `r ≥ 0`.
    pub fn new(r: T) -> Result<Self> {
        check_radius(r)?;
        Ok(Self { r })
    }
    fn theta(&self, x: ArrayView1<'_, T>) -> Option<T> {
        if norm1(x) <= self.r {
            None
        } else {
            Some(simplex_threshold(x.iter().map(|v| v.abs()), self.r).max(T::zero()))
        }
    }
}

impl<T: Real> Function<T> for IndBallL1<T> {
    fn name(&self) -> String {
        "IndBallL1".into()
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("IndBallL1", "x", None, x)?;
        let tol = set_tol(self.r) * T::c(x.len().max(1) as f64);
        Ok(if norm1(x) <= self.r + tol {
            T::zero()
        } else {
            T::infinity()
        })
    }
    fn properties(&self) -> Properties {
        Properties::convex_indicator()
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        check_arg("IndBallL1", "y", None, y)?;
        Ok(self.r * norm_inf(y))
    }
}

impl<T: Real> Prox<T> for IndBallL1<T> {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_prox_args("IndBallL1", None, out.len(), x, gamma)?;
        match self.theta(x) {
            None => out.assign(&x),
            Some(t) => out.zip_mut_with(&x, |o, &v| *o = super::norms::soft_threshold(v, t)),
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
        check_prox_args("IndBallL1", None, out.len(), x, gamma)?;
        check_len("IndBallL1::prox_jvp", "v", x.len(), v.len())?;
        match self.theta(x) {
            None => out.assign(&v),
            Some(t) => {
                // On the support S: δᵢⱼ − sᵢsⱼ/|S| with s = sign(x).
                let (mut k, mut s) = (0usize, T::zero());
                for i in 0..x.len() {
                    if x[i].abs() > t {
                        k += 1;
                        s += x[i].signum() * v[i];
                    }
                }
                let m = s / T::c(k.max(1) as f64);
                for i in 0..x.len() {
                    out[i] = if x[i].abs() > t {
                        v[i] - x[i].signum() * m
                    } else {
                        T::zero()
                    };
                }
            }
        }
        Ok(())
    }
}

// Separable indicators.

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
    /// `(lo, hi)` when the bounds are the same for every coordinate.
    pub fn scalar_bounds(&self) -> Option<(T, T)> {
        match (&self.lo, &self.hi) {
            (Param::Scalar(l), Param::Scalar(h)) => Some((*l, *h)),
            _ => None,
        }
    }
    /// The bounds per coordinate `(l, h)` when at least one of them is given per coordinate
    /// (a scalar bound repeated), `None` when both are scalars.
    pub fn coordinate_bounds(&self) -> Option<(Vec<T>, Vec<T>)> {
        let n = self.lo.dim().or(self.hi.dim())?;
        Some((
            (0..n).map(|i| self.lo.at(i)).collect(),
            (0..n).map(|i| self.hi.at(i)).collect(),
        ))
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
