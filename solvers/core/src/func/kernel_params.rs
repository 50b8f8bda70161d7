//! The parameters of the separable functions' device kernels (see [`SeparableKernel`]).

use super::{set_tol, ElasticNet, IndBox, IndNonnegative, NormL0, NormL1};
use crate::error::{Error, Result};
use crate::linalg::Real;

/// A separable function `f(x) = Σ φ(xᵢ)` with the same `φ` for every coordinate, as the
/// device kernels see it: `kind` selects `φ` in the GPU backend's `kernels.cu`
/// (`hp_sep_prox`, `hp_sep_value`: 0 ℓ1, 1 ℓ0, 2 box, 3 nonnegativity, 4 elastic net) and
/// two or three numbers parametrize it.
pub trait SeparableKernel<T: Real>: Send + Sync {
    /// Name for errors.
    fn gpu_name(&self) -> String;
    /// `(kind, p1, p2)` of `prox_{γφ}`, or `Err` where the parameters are per coordinate.
    fn prox_params(&self, gamma: T) -> Result<(i32, T, T)>;
    /// `(kind, p1, p2, p3)` of `φ`.
    fn value_params(&self) -> Result<(i32, T, T, T)>;
    /// `(kind, p1, p2, p3)` of the convex conjugate `φ*` (`hp_sep_conj_value`), with the
    /// CPU's membership tolerances; `Err(Unsupported)` where `φ` is not convex (ℓ0) or the
    /// parameters are per coordinate.
    fn conj_params(&self) -> Result<(i32, T, T, T)> {
        Err(Error::unsupported(
            "the convex conjugate value",
            self.gpu_name(),
        ))
    }
    /// The per-coordinate parameters, for the functions that have them (weighted ℓ1, a box
    /// with per-coordinate bounds); `None` otherwise (one value for every coordinate: the
    /// scalar kernels).
    fn coord_params(&self) -> Option<CoordParams<T>> {
        None
    }
}

/// Per-coordinate parameters of a separable function for the GPU's `_pc` kernels (the device
/// type `cuda::GpuSeparable` uploads them once): `kind` 0 is the weighted ℓ1 norm
/// (`p1 = w`, `v2 = w + set_tol(w)`, the conjugate's tolerant bound), `kind` 2 the box
/// (`p1 = l`, `p2 = h`, `v1 = l − set_tol(l)`, `v2 = h + set_tol(h)`, the value's tolerant
/// bounds, as the CPU's membership test).
#[derive(Clone, Debug, PartialEq)]
pub struct CoordParams<T> {
    /// 0 weighted ℓ1, 2 box.
    pub kind: i32,
    /// First parameter per coordinate.
    pub p1: Vec<T>,
    /// Second parameter per coordinate.
    pub p2: Vec<T>,
    /// Lower tolerant bound per coordinate (box).
    pub v1: Vec<T>,
    /// Upper tolerant bound per coordinate.
    pub v2: Vec<T>,
}

fn per_coordinate<T>(name: &str) -> Result<T> {
    Err(Error::unsupported(
        "per-coordinate parameters in the scalar GPU kernels",
        format!(
            "{name} (wrap it in cuda::GpuSeparable, which uploads them once, or use --device cpu)"
        ),
    ))
}

impl<T: Real> SeparableKernel<T> for NormL1<T> {
    fn gpu_name(&self) -> String {
        "NormL1".into()
    }
    fn prox_params(&self, gamma: T) -> Result<(i32, T, T)> {
        match self.scalar_weight() {
            Some(l) => Ok((0, gamma * l, T::zero())),
            None => per_coordinate("NormL1"),
        }
    }
    fn value_params(&self) -> Result<(i32, T, T, T)> {
        match self.scalar_weight() {
            Some(l) => Ok((0, l, T::zero(), T::zero())),
            None => per_coordinate("NormL1"),
        }
    }
    /// The indicator of `|y| ≤ w` (tolerance `set_tol(w)`).
    fn conj_params(&self) -> Result<(i32, T, T, T)> {
        match self.scalar_weight() {
            Some(l) => Ok((0, l, T::zero(), set_tol(l))),
            None => per_coordinate("NormL1"),
        }
    }
    fn coord_params(&self) -> Option<CoordParams<T>> {
        let w = self.weights()?.to_vec();
        let n = w.len();
        Some(CoordParams {
            kind: 0,
            v2: w.iter().map(|&v| v + set_tol(v)).collect(),
            p1: w,
            p2: vec![T::zero(); n],
            v1: vec![T::zero(); n],
        })
    }
}

impl<T: Real> SeparableKernel<T> for NormL0<T> {
    fn gpu_name(&self) -> String {
        "NormL0".into()
    }
    fn prox_params(&self, gamma: T) -> Result<(i32, T, T)> {
        Ok((1, (T::c(2.0) * gamma * self.lambda()).sqrt(), T::zero()))
    }
    fn value_params(&self) -> Result<(i32, T, T, T)> {
        Ok((1, self.lambda(), T::zero(), T::zero()))
    }
}

impl<T: Real> SeparableKernel<T> for IndBox<T> {
    fn gpu_name(&self) -> String {
        "IndBox".into()
    }
    fn prox_params(&self, _gamma: T) -> Result<(i32, T, T)> {
        match self.scalar_bounds() {
            Some((l, h)) => Ok((2, l, h)),
            None => per_coordinate("IndBox"),
        }
    }
    /// The membership tolerance is the CPU's `set_tol` of the larger bound in magnitude.
    fn value_params(&self) -> Result<(i32, T, T, T)> {
        match self.scalar_bounds() {
            Some((l, h)) => Ok((2, l, h, set_tol(l.abs().max(h.abs())))),
            None => per_coordinate("IndBox"),
        }
    }
    /// The support function `h·y` (`y > 0`), `l·y` (`y < 0`).
    fn conj_params(&self) -> Result<(i32, T, T, T)> {
        match self.scalar_bounds() {
            Some((l, h)) => Ok((2, l, h, T::zero())),
            None => per_coordinate("IndBox"),
        }
    }
    fn coord_params(&self) -> Option<CoordParams<T>> {
        let (l, h) = self.coordinate_bounds()?;
        Some(CoordParams {
            kind: 2,
            v1: l.iter().map(|&v| v - set_tol(v)).collect(),
            v2: h.iter().map(|&v| v + set_tol(v)).collect(),
            p1: l,
            p2: h,
        })
    }
}

impl<T: Real> SeparableKernel<T> for IndNonnegative<T> {
    fn gpu_name(&self) -> String {
        "IndNonnegative".into()
    }
    fn prox_params(&self, _gamma: T) -> Result<(i32, T, T)> {
        Ok((3, T::zero(), T::zero()))
    }
    fn value_params(&self) -> Result<(i32, T, T, T)> {
        Ok((3, T::zero(), T::zero(), set_tol(T::zero())))
    }
    /// The indicator of `y ≤ 0` (tolerance `set_tol(0)`).
    fn conj_params(&self) -> Result<(i32, T, T, T)> {
        Ok((3, T::zero(), T::zero(), set_tol(T::zero())))
    }
}

impl<T: Real> SeparableKernel<T> for ElasticNet<T> {
    fn gpu_name(&self) -> String {
        "ElasticNet".into()
    }
    fn prox_params(&self, gamma: T) -> Result<(i32, T, T)> {
        let (l, a) = self.params();
        Ok((4, gamma * l * a, T::one() + gamma * l * (T::one() - a)))
    }
    fn value_params(&self) -> Result<(i32, T, T, T)> {
        let (l, a) = self.params();
        Ok((4, l * a, T::c(0.5) * l * (T::one() - a), T::zero()))
    }
    /// `max(|y| − λα, 0)²/(2λ(1 − α))`, or the indicator of `|y| ≤ λα` when `α = 1`.
    fn conj_params(&self) -> Result<(i32, T, T, T)> {
        let (l, a) = self.params();
        let t = l * a;
        Ok((4, t, l * (T::one() - a), set_tol(t)))
    }
}
