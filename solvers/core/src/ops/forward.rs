//! Nonlinear forward maps `F: ℝⁿ → ℝᵐ` with Jacobian-vector and vector-Jacobian products.

use super::LinearOperator;
use crate::error::Result;
use crate::linalg::{check_len, Real};
use ndarray::{Array1, ArrayView1, ArrayViewMut1, Zip};
use std::marker::PhantomData;

/// A differentiable (possibly nonlinear) forward model `F: ℝⁿ → ℝᵐ`.
///
/// `jvp_into(out, x, v)` computes `F'(x) v`; `vjp_into(out, x, w)` computes `F'(x)ᵀ w`.
/// Both are checked against finite differences by the test kit.
pub trait ForwardMap<T: Real>: Send + Sync {
    /// `(m, n)`.
    fn shape(&self) -> (usize, usize);
    /// `out ← F(x)`.
    fn apply_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()>;
    /// `out ← F'(x) v`.
    fn jvp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()>;
    /// `out ← F'(x)ᵀ w`.
    fn vjp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        w: ArrayView1<'_, T>,
    ) -> Result<()>;
}

/// A linear operator seen as a forward map (`F'(x) = A`).
pub struct Linear<T: Real, A> {
    a: A,
    _t: PhantomData<T>,
}

impl<T: Real, A: LinearOperator<T>> Linear<T, A> {
    /// Wraps `A`.
    pub fn new(a: A) -> Self {
        Self { a, _t: PhantomData }
    }
}

impl<T: Real, A: LinearOperator<T>> ForwardMap<T> for Linear<T, A> {
    fn shape(&self) -> (usize, usize) {
        self.a.shape()
    }
    fn apply_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        self.a.apply_into(out, x)
    }
    fn jvp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_len("Linear::jvp", "x", self.a.shape().1, x.len())?;
        self.a.apply_into(out, v)
    }
    fn vjp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        w: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_len("Linear::vjp", "x", self.a.shape().1, x.len())?;
        self.a.adjoint_into(out, w)
    }
}

/// Intensity measurements `F(x) = (A x)²` (entrywise), the forward model of phase retrieval
/// with a real sensing operator. `F'(x) v = 2 (Ax) ⊙ (Av)`, `F'(x)ᵀ w = 2 Aᵀ((Ax) ⊙ w)`.
pub struct SquaredModulus<T: Real, A> {
    a: A,
    _t: PhantomData<T>,
}

impl<T: Real, A: LinearOperator<T>> SquaredModulus<T, A> {
    /// `x ↦ (Ax)²`.
    pub fn new(a: A) -> Self {
        Self { a, _t: PhantomData }
    }
}

impl<T: Real, A: LinearOperator<T>> ForwardMap<T> for SquaredModulus<T, A> {
    fn shape(&self) -> (usize, usize) {
        self.a.shape()
    }
    fn apply_into(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        self.a.apply_into(out.view_mut(), x)?;
        out.mapv_inplace(|v| v * v);
        Ok(())
    }
    fn jvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        let ax = self.a.apply(x)?;
        self.a.apply_into(out.view_mut(), v)?;
        Zip::from(&mut out)
            .and(&ax)
            .for_each(|o, &a| *o = T::c(2.0) * a * *o);
        Ok(())
    }
    fn vjp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        w: ArrayView1<'_, T>,
    ) -> Result<()> {
        let mut t: Array1<T> = self.a.apply(x)?;
        check_len("SquaredModulus::vjp", "w", t.len(), w.len())?;
        Zip::from(&mut t)
            .and(&w)
            .for_each(|a, &wi| *a = T::c(2.0) * *a * wi);
        self.a.adjoint_into(out, t.view())
    }
}
