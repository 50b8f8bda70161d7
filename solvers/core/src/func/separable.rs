//! Separable functions `f(x) = Σᵢ φᵢ(xᵢ)` with scalar proxes: the shared machinery (a
//! scalar kernel per coordinate and the macro that turns it into `Function` and `Prox`).

use crate::error::{Error, Result};
use crate::linalg::Real;
use ndarray::Array1;

/// A scalar parameter shared by all coordinates or one per coordinate.
#[derive(Clone, Debug)]
pub(crate) enum Param<T> {
    Scalar(T),
    PerCoord(Array1<T>),
}

impl<T: Real> Param<T> {
    #[inline]
    pub(crate) fn at(&self, i: usize) -> T {
        match self {
            Param::Scalar(v) => *v,
            Param::PerCoord(a) => a[i],
        }
    }
    pub(crate) fn dim(&self) -> Option<usize> {
        match self {
            Param::Scalar(_) => None,
            Param::PerCoord(a) => Some(a.len()),
        }
    }
    pub(crate) fn check(&self, name: &str, ok: impl Fn(T) -> bool, hint: &str) -> Result<()> {
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
    /// `outᵢ = prox_{γφᵢ}(xᵢ)` on contiguous slices (default: [`ScalarKernel::prox1`] per
    /// entry). Kernels override it to hoist what does not depend on `i` (a scalar weight, a
    /// threshold's square root) out of the loop, which then vectorizes; the results are the
    /// same numbers.
    fn prox_slice(&self, out: &mut [T], x: &[T], gamma: T) {
        for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
            *o = self.prox1(i, v, gamma);
        }
    }
}

macro_rules! separable_impl {
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
                if let (Some(o), Some(xs)) = (out.as_slice_mut(), x.as_slice()) {
                    self.prox_slice(o, xs, gamma);
                    return Ok(());
                }
                for (i, (o, &v)) in out.iter_mut().zip(x.iter()).enumerate() {
                    *o = self.prox1(i, v, gamma);
                }
                Ok(())
            }
            /// Moreau's identity coordinate by coordinate (no temporary):
            /// `prox_{γf*}(x)ᵢ = xᵢ − γ·prox_{φᵢ/γ}(xᵢ/γ)`.
            fn conj_prox_into(
                &self,
                mut out: ArrayViewMut1<'_, T>,
                x: ArrayView1<'_, T>,
                gamma: T,
            ) -> Result<()> {
                crate::linalg::check_positive("gamma", gamma)?;
                check_prox_args(stringify!($ty), self.dim_(), out.len(), x, gamma)?;
                let inv = T::one() / gamma;
                for (i, (o, &v)) in out.iter_mut().zip(x.iter()).enumerate() {
                    *o = v - gamma * self.prox1(i, v / gamma, inv);
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

pub(crate) fn sign<T: Real>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

pub(crate) use separable_impl as separable;
