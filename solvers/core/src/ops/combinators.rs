//! Combinators: composition, sum, scaling, vertical stacking, diagonal, identity, transpose.

use super::LinearOperator;
use crate::error::{Error, Result};
use crate::linalg::{check_finite, Real};
use ndarray::{s, Array1, ArrayView1, ArrayViewMut1, Zip};
use std::marker::PhantomData;
use std::sync::Mutex;

/// Scratch buffer reused across calls (falls back to a fresh one if another thread holds it).
#[derive(Debug)]
pub(crate) struct Scratch<T>(Mutex<Array1<T>>);

impl<T: Real> Scratch<T> {
    pub(crate) fn new(n: usize) -> Self {
        Self(Mutex::new(Array1::zeros(n)))
    }
    /// Runs `f` with a buffer of length `n`.
    pub(crate) fn with<R>(&self, n: usize, f: impl FnOnce(&mut Array1<T>) -> R) -> R {
        match self.0.try_lock() {
            Ok(mut g) => f(&mut g),
            Err(_) => f(&mut Array1::zeros(n)),
        }
    }
}

/// `A ∘ B`: `x ↦ A(Bx)`, adjoint `Bᵀ Aᵀ`.
pub struct Compose<T: Real, A, B> {
    a: A,
    b: B,
    tmp: Scratch<T>,
}

impl<T: Real, A: LinearOperator<T>, B: LinearOperator<T>> Compose<T, A, B> {
    /// `A ∘ B`; requires the domain of `A` to equal the range of `B`.
    pub fn new(a: A, b: B) -> Result<Self> {
        if a.shape().1 != b.shape().0 {
            return Err(Error::shape(
                "Compose::new",
                "operators with dom(A) = range(B)",
                format!("dom(A) = {}", a.shape().1),
                format!("range(B) = {}", b.shape().0),
            ));
        }
        let k = b.shape().0;
        Ok(Self {
            a,
            b,
            tmp: Scratch::new(k),
        })
    }
}

impl<T: Real, A: LinearOperator<T>, B: LinearOperator<T>> LinearOperator<T> for Compose<T, A, B> {
    fn shape(&self) -> (usize, usize) {
        (self.a.shape().0, self.b.shape().1)
    }
    fn name(&self) -> String {
        format!("Compose({}, {})", self.a.name(), self.b.name())
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        let k = self.b.shape().0;
        self.tmp.with(k, |t| {
            self.b.apply_unchecked(t.view_mut(), x);
            self.a.apply_unchecked(out, t.view());
        });
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        let k = self.b.shape().0;
        self.tmp.with(k, |t| {
            self.a.adjoint_unchecked(t.view_mut(), y);
            self.b.adjoint_unchecked(out, t.view());
        });
    }
}

/// `A + B` (same shapes).
pub struct Sum<T: Real, A, B> {
    a: A,
    b: B,
    tmp: Scratch<T>,
}

impl<T: Real, A: LinearOperator<T>, B: LinearOperator<T>> Sum<T, A, B> {
    /// `A + B`; the shapes must agree.
    pub fn new(a: A, b: B) -> Result<Self> {
        if a.shape() != b.shape() {
            return Err(Error::shape(
                "Sum::new",
                "operators of equal shape",
                format!("{:?}", a.shape()),
                format!("{:?}", b.shape()),
            ));
        }
        let n = a.shape().0.max(a.shape().1);
        Ok(Self {
            a,
            b,
            tmp: Scratch::new(n),
        })
    }
}

impl<T: Real, A: LinearOperator<T>, B: LinearOperator<T>> LinearOperator<T> for Sum<T, A, B> {
    fn shape(&self) -> (usize, usize) {
        self.a.shape()
    }
    fn name(&self) -> String {
        format!("Sum({}, {})", self.a.name(), self.b.name())
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        let m = self.shape().0;
        self.tmp.with(m.max(self.shape().1), |t| {
            let mut t = t.slice_mut(s![..m]);
            self.b.apply_unchecked(t.view_mut(), x);
            self.a.apply_unchecked(out.view_mut(), x);
            out += &t;
        });
    }
    fn adjoint_unchecked(&self, mut out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        let n = self.shape().1;
        self.tmp.with(n.max(self.shape().0), |t| {
            let mut t = t.slice_mut(s![..n]);
            self.b.adjoint_unchecked(t.view_mut(), y);
            self.a.adjoint_unchecked(out.view_mut(), y);
            out += &t;
        });
    }
}

/// `α A`.
pub struct Scaled<T: Real, A> {
    alpha: T,
    a: A,
}

impl<T: Real, A: LinearOperator<T>> Scaled<T, A> {
    /// `α A`; `α` must be finite.
    pub fn new(alpha: T, a: A) -> Result<Self> {
        if !alpha.is_finite() {
            return Err(Error::param("alpha", alpha, "the scale must be finite"));
        }
        Ok(Self { alpha, a })
    }
}

impl<T: Real, A: LinearOperator<T>> LinearOperator<T> for Scaled<T, A> {
    fn shape(&self) -> (usize, usize) {
        self.a.shape()
    }
    fn name(&self) -> String {
        format!("Scaled({}, {})", self.alpha, self.a.name())
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        self.a.apply_unchecked(out.view_mut(), x);
        out.mapv_inplace(|v| v * self.alpha);
    }
    fn adjoint_unchecked(&self, mut out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        self.a.adjoint_unchecked(out.view_mut(), y);
        out.mapv_inplace(|v| v * self.alpha);
    }
}

/// Vertical stack `[A; B]`: `x ↦ (Ax, Bx)`, adjoint `(u, v) ↦ Aᵀu + Bᵀv`.
pub struct Stack<T: Real, A, B> {
    a: A,
    b: B,
    tmp: Scratch<T>,
}

impl<T: Real, A: LinearOperator<T>, B: LinearOperator<T>> Stack<T, A, B> {
    /// `[A; B]`; the domains must agree.
    pub fn new(a: A, b: B) -> Result<Self> {
        if a.shape().1 != b.shape().1 {
            return Err(Error::shape(
                "Stack::new",
                "operators with the same domain",
                format!("dom(A) = {}", a.shape().1),
                format!("dom(B) = {}", b.shape().1),
            ));
        }
        let n = a.shape().1;
        Ok(Self {
            a,
            b,
            tmp: Scratch::new(n),
        })
    }
}

impl<T: Real, A: LinearOperator<T>, B: LinearOperator<T>> LinearOperator<T> for Stack<T, A, B> {
    fn shape(&self) -> (usize, usize) {
        (self.a.shape().0 + self.b.shape().0, self.a.shape().1)
    }
    fn name(&self) -> String {
        format!("Stack({}, {})", self.a.name(), self.b.name())
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        let ma = self.a.shape().0;
        let (oa, ob) = out.view_mut().split_at(ndarray::Axis(0), ma);
        self.a.apply_unchecked(oa, x);
        self.b.apply_unchecked(ob, x);
    }
    fn adjoint_unchecked(&self, mut out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        let ma = self.a.shape().0;
        let n = self.shape().1;
        self.tmp.with(n, |t| {
            self.b.adjoint_unchecked(t.view_mut(), y.slice(s![ma..]));
            self.a.adjoint_unchecked(out.view_mut(), y.slice(s![..ma]));
            out += &*t;
        });
    }
}

/// Diagonal operator `x ↦ d ⊙ x` (self-adjoint).
#[derive(Clone, Debug)]
pub struct Diagonal<T: Real> {
    d: Array1<T>,
}

impl<T: Real> Diagonal<T> {
    /// `diag(d)`; `d` must be finite.
    pub fn new(d: Array1<T>) -> Result<Self> {
        check_finite("Diagonal::new d", d.view())?;
        Ok(Self { d })
    }
    /// The diagonal.
    pub fn diag(&self) -> ArrayView1<'_, T> {
        self.d.view()
    }
}

impl<T: Real> LinearOperator<T> for Diagonal<T> {
    fn shape(&self) -> (usize, usize) {
        (self.d.len(), self.d.len())
    }
    fn name(&self) -> String {
        "Diagonal".into()
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        Zip::from(out)
            .and(x)
            .and(&self.d)
            .for_each(|o, &xi, &di| *o = di * xi);
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        self.apply_unchecked(out, y)
    }
}

/// Identity on ℝⁿ.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    n: usize,
}

impl Identity {
    /// Identity on ℝⁿ.
    pub fn new(n: usize) -> Self {
        Self { n }
    }
}

impl<T: Real> LinearOperator<T> for Identity {
    fn shape(&self) -> (usize, usize) {
        (self.n, self.n)
    }
    fn name(&self) -> String {
        "Identity".into()
    }
    fn apply_unchecked(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        out.assign(&x);
    }
    fn adjoint_unchecked(&self, mut out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        out.assign(&y);
    }
}

/// The adjoint `Aᵀ` as an operator.
pub struct Transpose<T: Real, A> {
    a: A,
    _t: PhantomData<T>,
}

impl<T: Real, A: LinearOperator<T>> Transpose<T, A> {
    /// `Aᵀ`.
    pub fn new(a: A) -> Self {
        Self { a, _t: PhantomData }
    }
}

impl<T: Real, A: LinearOperator<T>> LinearOperator<T> for Transpose<T, A> {
    fn shape(&self) -> (usize, usize) {
        let (m, n) = self.a.shape();
        (n, m)
    }
    fn name(&self) -> String {
        format!("Transpose({})", self.a.name())
    }
    fn apply_unchecked(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) {
        self.a.adjoint_unchecked(out, x)
    }
    fn adjoint_unchecked(&self, out: ArrayViewMut1<'_, T>, y: ArrayView1<'_, T>) {
        self.a.apply_unchecked(out, y)
    }
}
