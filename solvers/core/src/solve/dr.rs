//! Douglas–Rachford splitting for `f(x) + g(x)`, both with proxes.

use super::{
    check_divergence, drive, AdmmParams, CertFn, CertificateKind, IterInfo, Observer, Solution,
};
use crate::error::{Error, Result};
use crate::func::Prox;
use crate::linalg::{check_finite, check_positive, norm2, Real};
use ndarray::{Array1, ArrayView1, Zip};

/// State of [`DouglasRachford`].
#[derive(Clone, Debug)]
pub struct DouglasRachfordState<T> {
    /// The governing sequence `z`.
    pub z: Array1<T>,
    /// `x = prox_{γf}(z)` (the solution estimate).
    pub x: Array1<T>,
    /// Iterations done.
    pub iter: usize,
    /// `f(x) + g(x)`.
    pub objective: T,
    /// Current certificate.
    pub certificate: T,
}

/// Douglas–Rachford splitting for `min_x f(x) + g(x)`, both with proxes:
/// `x = prox_{γf}(z)`, `w = prox_{γg}(2x − z)`, `z⁺ = z + λ(w − x)` (`λ ∈ (0, 2)`).
/// **Certificate**: a user-supplied one at `x`, or the fixed-point residual `‖w − x‖/γ`.
///
/// # References
/// P.-L. Lions, B. Mercier, "Splitting algorithms for the sum of two nonlinear operators",
/// SIAM J. Numer. Anal. 16 (1979); J. Eckstein, D. P. Bertsekas, Math. Program. 55 (1992).
pub struct DouglasRachford<'a, T: Real, F: ?Sized, G: ?Sized> {
    f: &'a F,
    g: &'a G,
    params: AdmmParams<T>,
    certificate: Option<(CertFn<'a, T>, CertificateKind)>,
}

impl<'a, T: Real, F: Prox<T> + ?Sized, G: Prox<T> + ?Sized> DouglasRachford<'a, T, F, G> {
    /// The solver for `f + g` with step `γ = params.rho`.
    pub fn new(f: &'a F, g: &'a G, params: AdmmParams<T>) -> Result<Self> {
        check_positive("gamma", params.rho)?;
        if !(params.relaxation > T::zero() && params.relaxation < T::c(2.0)) {
            return Err(Error::param(
                "relaxation",
                params.relaxation,
                "must lie in (0, 2)",
            ));
        }
        Ok(Self {
            f,
            g,
            params,
            certificate: None,
        })
    }

    /// Stops on a problem-specific certificate evaluated at `x`.
    pub fn with_certificate(
        mut self,
        kind: CertificateKind,
        cert: impl Fn(ArrayView1<'_, T>) -> Result<T> + Send + Sync + 'a,
    ) -> Self {
        self.certificate = Some((Box::new(cert), kind));
        self
    }

    /// The parameters.
    pub fn params(&self) -> &AdmmParams<T> {
        &self.params
    }

    fn kind(&self) -> CertificateKind {
        self.certificate
            .as_ref()
            .map(|c| c.1)
            .unwrap_or(CertificateKind::FixedPointResidual)
    }

    /// Initial state at `z0` (`x0 = prox_{γf}(z0)`).
    pub fn init(&self, z0: ArrayView1<'_, T>) -> Result<DouglasRachfordState<T>> {
        check_finite("DouglasRachford z0", z0)?;
        let x = self.f.prox(z0, self.params.rho)?;
        Ok(DouglasRachfordState {
            objective: self.f.value(x.view())? + self.g.value(x.view())?,
            z: z0.to_owned(),
            x,
            iter: 0,
            certificate: T::infinity(),
        })
    }

    /// One iteration.
    pub fn step(&self, s: &mut DouglasRachfordState<T>) -> Result<IterInfo<T>> {
        let gamma = self.params.rho;
        let lam = self.params.relaxation;
        let refl = Zip::from(&s.x)
            .and(&s.z)
            .map_collect(|&x, &z| T::c(2.0) * x - z);
        let w = self.g.prox(refl.view(), gamma)?;
        let res = norm2((&w - &s.x).view()) / gamma;
        Zip::from(&mut s.z)
            .and(&w)
            .and(&s.x)
            .for_each(|z, &w, &x| *z += lam * (w - x));
        self.f.prox_into(s.x.view_mut(), s.z.view(), gamma)?;
        s.iter += 1;
        s.objective = self.f.value(s.x.view())? + self.g.value(s.x.view())?;
        check_divergence("Douglas-Rachford", s.iter, "objective", s.objective)?;
        s.certificate = match &self.certificate {
            Some((c, _)) => c(s.x.view())?,
            None => res,
        };
        Ok(IterInfo {
            iter: s.iter,
            objective: s.objective,
            certificate: s.certificate,
            kind: self.kind(),
        })
    }

    /// Runs from `z0`.
    pub fn run(
        &self,
        z0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, DouglasRachfordState<T>>> {
        let mut s = self.init(z0)?;
        let (reason, iters) = drive(self, &mut s, observer)?;
        Ok(Solution {
            x: s.x.clone(),
            iterations: iters,
            objective: s.objective,
            certificate: s.certificate,
            kind: self.kind(),
            reason,
            state: s,
        })
    }
}
