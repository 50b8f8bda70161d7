//! Matrix functions: the nuclear norm and the SORSA orthonormality regularizer.
//!
//! Matrices are stored row-major in flat vectors (`x[i·n + j] = X[i, j]`).

use super::{check_arg, check_prox_args, set_tol, Function, Properties, Prox, Smooth};
use crate::error::{Error, Result};
use crate::linalg::{check_len, check_nonnegative, Real};
use ndarray::{Array2, ArrayView1, ArrayViewMut1};

fn to_matrix<T: Real>(x: ArrayView1<'_, T>, m: usize, n: usize) -> Array2<T> {
    Array2::from_shape_fn((m, n), |(i, j)| x[i * n + j])
}

fn write_matrix<T: Real>(mut out: ArrayViewMut1<'_, T>, a: &Array2<T>) {
    for (o, &v) in out.iter_mut().zip(a.iter()) {
        *o = v;
    }
}

/// Nuclear norm `f(X) = λ Σᵢ σᵢ(X)` of an `m × n` matrix. The prox is singular-value
/// thresholding `U diag(max(σ − γλ, 0)) Vᵀ` (faer thin SVD); `f*(Y) = ι{σ_max(Y) ≤ λ}`.
///
/// # References
/// J.-F. Cai, E. J. Candès, Z. Shen, "A singular value thresholding algorithm for matrix
/// completion", SIAM J. Optim. 20 (2010).
#[derive(Clone, Debug)]
pub struct NuclearNorm<T: Real> {
    m: usize,
    n: usize,
    lambda: T,
}

impl<T: Real> NuclearNorm<T> {
    /// `λ‖X‖_*` on `m × n` matrices.
    pub fn new(m: usize, n: usize, lambda: T) -> Result<Self> {
        if m == 0 || n == 0 {
            return Err(Error::param(
                "shape",
                format!("{m}x{n}"),
                "the matrix must be non-empty",
            ));
        }
        check_nonnegative("lambda", lambda)?;
        Ok(Self { m, n, lambda })
    }
}

impl<T: Real> Function<T> for NuclearNorm<T> {
    fn name(&self) -> String {
        format!("NuclearNorm({}x{})", self.m, self.n)
    }
    fn dim(&self) -> Option<usize> {
        Some(self.m * self.n)
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("NuclearNorm", "x", self.dim(), x)?;
        let (_, s, _) = T::thin_svd(to_matrix(x, self.m, self.n).view())?;
        Ok(self.lambda * s.sum())
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: true,
            exact_prox: true,
            ..Default::default()
        }
    }
    fn conj_value(&self, y: ArrayView1<'_, T>) -> Result<T> {
        check_arg("NuclearNorm", "y", self.dim(), y)?;
        let (_, s, _) = T::thin_svd(to_matrix(y, self.m, self.n).view())?;
        Ok(if s[0] <= self.lambda + set_tol(self.lambda) {
            T::zero()
        } else {
            T::infinity()
        })
    }
}

impl<T: Real> Prox<T> for NuclearNorm<T> {
    fn prox_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>, gamma: T) -> Result<()> {
        check_prox_args("NuclearNorm", self.dim(), out.len(), x, gamma)?;
        let (u, s, v) = T::thin_svd(to_matrix(x, self.m, self.n).view())?;
        let st = s.mapv(|si| (si - gamma * self.lambda).max(T::zero()));
        let us = &u * &st;
        let mut p = Array2::zeros((self.m, self.n));
        T::gemm(p.view_mut(), us.view(), v.t(), T::one(), false);
        write_matrix(out, &p);
        Ok(())
    }
}

/// The SORSA orthonormality regularizer `f(U) = λ‖UᵀU − I‖²_F` of an `m × r` matrix `U`
/// (smooth, nonconvex): `∇f = 4λ U(UᵀU − I)`,
/// `∇²f[V] = 4λ (V(UᵀU − I) + U(VᵀU + UᵀV))`. Its gradient is not globally Lipschitz
/// (quartic growth), so [`Smooth::lipschitz`] is `None`.
///
/// # References
/// Y. Cao, "SORSA: Singular values and orthonormal regularized singular vectors adaptation of
/// large language models", arXiv:2409.00055 (2024).
#[derive(Clone, Debug)]
pub struct SorsaOrthonormality<T: Real> {
    m: usize,
    r: usize,
    lambda: T,
}

impl<T: Real> SorsaOrthonormality<T> {
    /// `λ‖UᵀU − I‖²_F` on `m × r` matrices.
    pub fn new(m: usize, r: usize, lambda: T) -> Result<Self> {
        if m == 0 || r == 0 {
            return Err(Error::param(
                "shape",
                format!("{m}x{r}"),
                "the matrix must be non-empty",
            ));
        }
        check_nonnegative("lambda", lambda)?;
        Ok(Self { m, r, lambda })
    }
    /// `UᵀU − I`.
    fn gram_minus_i(&self, u: &Array2<T>) -> Array2<T> {
        let mut g = Array2::zeros((self.r, self.r));
        T::gemm(g.view_mut(), u.t(), u.view(), T::one(), false);
        for i in 0..self.r {
            g[(i, i)] -= T::one();
        }
        g
    }
}

impl<T: Real> Function<T> for SorsaOrthonormality<T> {
    fn name(&self) -> String {
        format!("SorsaOrthonormality({}x{})", self.m, self.r)
    }
    fn dim(&self) -> Option<usize> {
        Some(self.m * self.r)
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("SorsaOrthonormality", "U", self.dim(), x)?;
        let g = self.gram_minus_i(&to_matrix(x, self.m, self.r));
        Ok(self.lambda * g.iter().map(|&v| v * v).sum::<T>())
    }
    fn properties(&self) -> Properties {
        Properties {
            smooth: true,
            ..Default::default()
        }
    }
}

impl<T: Real> Smooth<T> for SorsaOrthonormality<T> {
    fn gradient_into(&self, out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        check_arg("SorsaOrthonormality::gradient", "U", self.dim(), x)?;
        check_len("SorsaOrthonormality::gradient", "out", x.len(), out.len())?;
        let u = to_matrix(x, self.m, self.r);
        let g = self.gram_minus_i(&u);
        let mut gr = Array2::zeros((self.m, self.r));
        T::gemm(
            gr.view_mut(),
            u.view(),
            g.view(),
            T::c(4.0) * self.lambda,
            false,
        );
        write_matrix(out, &gr);
        Ok(())
    }
    fn hvp_into(
        &self,
        out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_arg("SorsaOrthonormality::hvp", "U", self.dim(), x)?;
        check_arg("SorsaOrthonormality::hvp", "V", self.dim(), v)?;
        check_len("SorsaOrthonormality::hvp", "out", x.len(), out.len())?;
        let u = to_matrix(x, self.m, self.r);
        let vm = to_matrix(v, self.m, self.r);
        let g = self.gram_minus_i(&u);
        // S = VᵀU + UᵀV
        let mut s = Array2::zeros((self.r, self.r));
        T::gemm(s.view_mut(), vm.t(), u.view(), T::one(), false);
        let st = s.t().to_owned();
        s += &st;
        let c = T::c(4.0) * self.lambda;
        let mut h = Array2::zeros((self.m, self.r));
        T::gemm(h.view_mut(), vm.view(), g.view(), c, false);
        T::gemm(h.view_mut(), u.view(), s.view(), c, true);
        write_matrix(out, &h);
        Ok(())
    }
    fn lipschitz(&self) -> Option<T> {
        None
    }
}
