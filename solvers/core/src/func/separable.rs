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
            /// One sweep: Moreau's identity per coordinate on `v = y + σ(t − z)`.
            fn pdhg_dual_update_into(
                &self,
                mut y: ArrayViewMut1<'_, T>,
                mut y_old: ArrayViewMut1<'_, T>,
                save_old: bool,
                mut t: ArrayViewMut1<'_, T>,
                sigma: T,
                shift: Option<ArrayView1<'_, T>>,
            ) -> Result<()> {
                let z = shift.as_ref().map(|z| z.as_slice());
                match (y.as_slice_mut(), y_old.as_slice_mut(), t.as_slice_mut(), z) {
                    (Some(ys), Some(yo), Some(ts), z) if z != Some(None) => {
                        if save_old {
                            yo.copy_from_slice(ys);
                        }
                        let inv = T::one() / sigma;
                        if let Some(Some(z)) = z {
                            for (t, &z) in ts.iter_mut().zip(z) {
                                *t -= z;
                            }
                        }
                        let sweep = |i0: usize, ys: &mut [T], ts: &[T]| {
                            for (k, (y, &t)) in ys.iter_mut().zip(ts).enumerate() {
                                let v = *y + sigma * t;
                                *y = v - sigma * self.prox1(i0 + k, v / sigma, inv);
                            }
                        };
                        if crate::linalg::parallel_sweep_worth_it(ys.len()) {
                            // Coordinates are independent: the same numbers in chunks.
                            use rayon::prelude::*;
                            let c_len = crate::linalg::chunk_per_thread(ys.len());
                            ys.par_chunks_mut(c_len)
                                .zip(ts.par_chunks(c_len))
                                .enumerate()
                                .for_each(|(c, (ys, ts))| sweep(c * c_len, ys, ts));
                        } else {
                            sweep(0, ys, ts);
                        }
                        Ok(())
                    }
                    _ => crate::func::pdhg_dual_generic(self, y, y_old, save_old, t, sigma, shift),
                }
            }
            /// One sweep: `x ← z + prox(x − τu − z)` per coordinate, then the extrapolation.
            fn pdhg_primal_update_into(
                &self,
                mut x: ArrayViewMut1<'_, T>,
                mut x_old: ArrayViewMut1<'_, T>,
                save_old: bool,
                mut xbar: ArrayViewMut1<'_, T>,
                u: ArrayView1<'_, T>,
                tmp: ArrayViewMut1<'_, T>,
                (tau, theta): (T, T),
                shift: Option<ArrayView1<'_, T>>,
            ) -> Result<()> {
                let z = shift.as_ref().map(|z| z.as_slice());
                match (
                    x.as_slice_mut(),
                    x_old.as_slice_mut(),
                    xbar.as_slice_mut(),
                    u.as_slice(),
                    z,
                ) {
                    (Some(xs), Some(xo), Some(xb), Some(us), z) if z != Some(None) => {
                        if save_old {
                            xo.copy_from_slice(xs);
                        }
                        let z = z.flatten();
                        let sweep = |i0: usize, xs: &mut [T], xb: &mut [T], us: &[T]| match z {
                            Some(z) => {
                                for (k, ((x, b), &u)) in
                                    xs.iter_mut().zip(xb.iter_mut()).zip(us).enumerate()
                                {
                                    let (i, prev) = (i0 + k, *x);
                                    let new = z[i] + self.prox1(i, prev - tau * u - z[i], tau);
                                    *x = new;
                                    *b = new + theta * (new - prev);
                                }
                            }
                            None => {
                                for (k, ((x, b), &u)) in
                                    xs.iter_mut().zip(xb.iter_mut()).zip(us).enumerate()
                                {
                                    let (i, prev) = (i0 + k, *x);
                                    let new = self.prox1(i, prev - tau * u, tau);
                                    *x = new;
                                    *b = new + theta * (new - prev);
                                }
                            }
                        };
                        if crate::linalg::parallel_sweep_worth_it(xs.len()) {
                            // Coordinates are independent: the same numbers in chunks.
                            use rayon::prelude::*;
                            let c_len = crate::linalg::chunk_per_thread(xs.len());
                            xs.par_chunks_mut(c_len)
                                .zip(xb.par_chunks_mut(c_len))
                                .zip(us.par_chunks(c_len))
                                .enumerate()
                                .for_each(|(c, ((xs, xb), us))| sweep(c * c_len, xs, xb, us));
                        } else {
                            sweep(0, xs, xb, us);
                        }
                        Ok(())
                    }
                    _ => crate::func::pdhg_primal_generic(
                        self,
                        x,
                        x_old,
                        save_old,
                        xbar,
                        u,
                        tmp,
                        (tau, theta),
                        shift,
                    ),
                }
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
