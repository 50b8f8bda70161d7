//! ADMM for `½‖Ax − b‖² + g(x)`.

use super::{check_divergence, drive, CertFn, CertificateKind, IterInfo, Observer, Solution};
use crate::error::Result;
use crate::func::Prox;
use crate::linalg::{
    check_finite, check_len, check_positive, cholesky_solve_in_place, conjugate_gradient, norm2,
    CgParams, Real,
};
use crate::ops::{DenseMatrix, LinearOperator};
use ndarray::{Array1, Array2, ArrayView1, Zip};

/// Parameters of [`Admm`] and [`DouglasRachford`](super::DouglasRachford).
#[derive(Clone, Copy, Debug)]
pub struct AdmmParams<T> {
    /// Penalty `ρ > 0` (ADMM) or step `γ > 0` (Douglas–Rachford).
    pub rho: T,
    /// Relaxation `∈ (0, 2)` of Douglas–Rachford (1: plain).
    pub relaxation: T,
    /// Stop when the certificate is `≤ tol`.
    pub tol: T,
    /// Iteration cap.
    pub max_iters: usize,
}

impl<T: Real> Default for AdmmParams<T> {
    fn default() -> Self {
        Self {
            rho: T::one(),
            relaxation: T::one(),
            tol: T::c(1e-8),
            max_iters: 100_000,
        }
    }
}

impl<T: Real> AdmmParams<T> {
    /// Sets `ρ` (or `γ`).
    pub fn with_rho(mut self, rho: T) -> Self {
        self.rho = rho;
        self
    }
    /// Sets the tolerance.
    pub fn with_tol(mut self, tol: T) -> Self {
        self.tol = tol;
        self
    }
    /// Sets the iteration cap.
    pub fn with_max_iters(mut self, n: usize) -> Self {
        self.max_iters = n;
        self
    }
}

/// How ADMM solves `(AᵀA + ρI) x = r`.
enum XSolve<T> {
    /// Cholesky of `AᵀA + ρI` (`p ≤ n`).
    Direct(Array2<T>),
    /// Woodbury with the Cholesky of `ρI + AAᵀ` (`n < p`):
    /// `(AᵀA + ρI)⁻¹ = (I − Aᵀ(ρI + AAᵀ)⁻¹A)/ρ`.
    Woodbury(Array2<T>),
    /// Conjugate gradients with operator products.
    Cg,
}

/// State of [`Admm`].
#[derive(Clone, Debug)]
pub struct AdmmState<T> {
    /// `x` iterate (least-squares block).
    pub x: Array1<T>,
    /// `z` iterate (the `g` block; the returned solution).
    pub z: Array1<T>,
    /// Scaled dual `u`.
    pub u: Array1<T>,
    /// Iterations done.
    pub iter: usize,
    /// Objective at `z`.
    pub objective: T,
    /// Current certificate.
    pub certificate: T,
}

/// ADMM (scaled form) for `min_x ½‖Ax − b‖² + g(x)` with the splitting `x = z`:
///
/// `x⁺ = (AᵀA + ρI)⁻¹(Aᵀb + ρ(z − u))`, `z⁺ = prox_{g/ρ}(x⁺ + u)`, `u⁺ = u + x⁺ − z⁺`.
///
/// The `x`-update uses a faer Cholesky factorization computed once when `A` is a
/// [`DenseMatrix`] (of `AᵀA + ρI`, or of `ρI + AAᵀ` with the Woodbury identity when `A` is
/// wide), and conjugate gradients otherwise. **Certificate**: a user-supplied one
/// ([`Admm::with_certificate`], evaluated at `z`) or `max(‖x⁺ − z⁺‖, ρ‖z⁺ − z‖)` (primal and
/// dual residuals).
///
/// # References
/// S. Boyd, N. Parikh, E. Chu, B. Peleato, J. Eckstein, "Distributed optimization and statistical
/// learning via the alternating direction method of multipliers", Found. Trends Mach. Learn. 3
/// (2011).
pub struct Admm<'a, T: Real, G: ?Sized> {
    a: &'a dyn LinearOperator<T>,
    b: Array1<T>,
    g: &'a G,
    params: AdmmParams<T>,
    xsolve: XSolve<T>,
    atb: Array1<T>,
    certificate: Option<(CertFn<'a, T>, CertificateKind)>,
}

impl<'a, T: Real, G: Prox<T> + ?Sized> Admm<'a, T, G> {
    /// ADMM with conjugate gradients for the `x`-update (any operator).
    pub fn new(
        a: &'a dyn LinearOperator<T>,
        b: Array1<T>,
        g: &'a G,
        params: AdmmParams<T>,
    ) -> Result<Self> {
        Self::build(a, b, g, params, XSolve::Cg)
    }

    /// ADMM with a Cholesky factorization for a dense matrix.
    pub fn dense(
        a: &'a DenseMatrix<T>,
        b: Array1<T>,
        g: &'a G,
        params: AdmmParams<T>,
    ) -> Result<Self> {
        check_positive("rho", params.rho)?;
        let m = a.matrix();
        let (n, p) = m.dim();
        let xs = if p <= n {
            let mut g2 = Array2::zeros((p, p));
            T::gemm(g2.view_mut(), m.t(), m, T::one(), false);
            for i in 0..p {
                g2[(i, i)] += params.rho;
            }
            XSolve::Direct(T::cholesky_lower(g2.view())?)
        } else {
            let mut g2 = Array2::zeros((n, n));
            T::gemm(g2.view_mut(), m, m.t(), T::one(), false);
            for i in 0..n {
                g2[(i, i)] += params.rho;
            }
            XSolve::Woodbury(T::cholesky_lower(g2.view())?)
        };
        Self::build(a, b, g, params, xs)
    }

    fn build(
        a: &'a dyn LinearOperator<T>,
        b: Array1<T>,
        g: &'a G,
        params: AdmmParams<T>,
        xsolve: XSolve<T>,
    ) -> Result<Self> {
        check_positive("rho", params.rho)?;
        check_len("Admm", "b", a.shape().0, b.len())?;
        check_finite("Admm b", b.view())?;
        let atb = a.adjoint(b.view())?;
        Ok(Self {
            a,
            b,
            g,
            params,
            xsolve,
            atb,
            certificate: None,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &AdmmParams<T> {
        &self.params
    }

    /// Stops on a problem-specific certificate evaluated at `z`.
    pub fn with_certificate(
        mut self,
        kind: CertificateKind,
        cert: impl Fn(ArrayView1<'_, T>) -> Result<T> + Send + Sync + 'a,
    ) -> Self {
        self.certificate = Some((Box::new(cert), kind));
        self
    }

    fn objective(&self, z: ArrayView1<'_, T>) -> Result<T> {
        let r = &self.a.apply(z)? - &self.b;
        Ok(T::c(0.5) * r.dot(&r) + self.g.value(z)?)
    }

    /// `x ← (AᵀA + ρI)⁻¹ rhs`.
    fn solve_x(&self, x: &mut Array1<T>, rhs: &Array1<T>) -> Result<()> {
        let rho = self.params.rho;
        match &self.xsolve {
            XSolve::Direct(l) => {
                x.assign(rhs);
                cholesky_solve_in_place(l.view(), x.view_mut());
            }
            XSolve::Woodbury(l) => {
                let mut t = self.a.apply(rhs.view())?;
                cholesky_solve_in_place(l.view(), t.view_mut());
                let att = self.a.adjoint(t.view())?;
                Zip::from(&mut *x)
                    .and(rhs)
                    .and(&att)
                    .for_each(|xi, &r, &a| *xi = (r - a) / rho);
            }
            XSolve::Cg => {
                let a = self.a;
                let apply = move |mut out: ndarray::ArrayViewMut1<'_, T>, v: ArrayView1<'_, T>| {
                    let av = a.apply(v).expect("shape checked");
                    a.adjoint_unchecked(out.view_mut(), av.view());
                    Zip::from(&mut out)
                        .and(&v)
                        .for_each(|o, &vi| *o += rho * vi);
                };
                let tol = (T::c(100.0) * T::epsilon()).max(T::c(1e-12));
                conjugate_gradient(
                    apply,
                    None,
                    rhs.view(),
                    x.view_mut(),
                    &CgParams::relative(tol, 10 * rhs.len() + 100),
                )?;
            }
        }
        Ok(())
    }

    /// What the certificate of this run is.
    pub fn certificate_kind(&self) -> CertificateKind {
        self.certificate
            .as_ref()
            .map(|c| c.1)
            .unwrap_or(CertificateKind::FixedPointResidual)
    }

    /// Initial state (`x = z = x0`, `u = 0`).
    pub fn init(&self, x0: ArrayView1<'_, T>) -> Result<AdmmState<T>> {
        check_len("Admm::init", "x0", self.a.shape().1, x0.len())?;
        check_finite("Admm::init x0", x0)?;
        Ok(AdmmState {
            x: x0.to_owned(),
            z: x0.to_owned(),
            u: Array1::zeros(x0.len()),
            iter: 0,
            objective: self.objective(x0)?,
            certificate: T::infinity(),
        })
    }

    /// One iteration.
    pub fn step(&self, s: &mut AdmmState<T>) -> Result<IterInfo<T>> {
        let rho = self.params.rho;
        let rhs = Zip::from(&self.atb)
            .and(&s.z)
            .and(&s.u)
            .map_collect(|&a, &z, &u| a + rho * (z - u));
        let mut x = s.x.clone();
        self.solve_x(&mut x, &rhs)?;
        s.x = x;
        let v = &s.x + &s.u;
        let z_old = s.z.clone();
        self.g.prox_into(s.z.view_mut(), v.view(), T::one() / rho)?;
        Zip::from(&mut s.u)
            .and(&s.x)
            .and(&s.z)
            .for_each(|u, &x, &z| *u += x - z);
        s.iter += 1;
        s.objective = self.objective(s.z.view())?;
        check_divergence("ADMM", s.iter, "objective", s.objective)?;
        s.certificate = match &self.certificate {
            Some((c, _)) => c(s.z.view())?,
            None => {
                let r = norm2((&s.x - &s.z).view());
                let d = rho * norm2((&s.z - &z_old).view());
                r.max(d)
            }
        };
        Ok(IterInfo {
            iter: s.iter,
            objective: s.objective,
            certificate: s.certificate,
            kind: self.certificate_kind(),
        })
    }

    /// Runs from `x0`.
    pub fn run(
        &self,
        x0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, AdmmState<T>>> {
        let mut s = self.init(x0)?;
        let (reason, iters) = drive(self, &mut s, observer)?;
        Ok(Solution {
            x: s.z.clone(),
            iterations: iters,
            objective: s.objective,
            certificate: s.certificate,
            kind: self.certificate_kind(),
            reason,
            state: s,
        })
    }
}
