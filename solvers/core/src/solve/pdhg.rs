//! The primal–dual hybrid gradient method (Chambolle–Pock).

use super::{
    check_divergence, drive, CertificateKind, IterInfo, Iterative, Observer, Solution,
    TerminationReason,
};
use crate::error::{Error, Result};
use crate::func::Prox;
use crate::linalg::{check_finite, check_len, Real};
use crate::ops::{LinearOperator, PowerIteration};
use ndarray::{Array1, ArrayView1, Zip};

/// Parameters of [`Pdhg`].
#[derive(Clone, Copy, Debug)]
pub struct PdhgParams<T> {
    /// Primal step `τ` (`None`: `1/‖K‖`).
    pub tau: Option<T>,
    /// Dual step `σ` (`None`: `1/(τ‖K‖²)·0.99`).
    pub sigma: Option<T>,
    /// Over-relaxation `θ ∈ [0, 1]`.
    pub theta: T,
    /// Strong convexity `γ > 0` of `f`: the accelerated variant (Algorithm 2 of the paper),
    /// `θ_k = 1/√(1 + 2γτ_k)`, `τ_{k+1} = θ_kτ_k`, `σ_{k+1} = σ_k/θ_k`.
    pub strong_convexity: Option<T>,
    /// Stop when the certificate is `≤ tol` (or `≤ tol·|objective|` with `relative`).
    pub tol: T,
    /// Compare the certificate with `tol·|objective|` instead of `tol`.
    pub relative: bool,
    /// The certificate (and objective) is evaluated every `check_every` iterations (it costs
    /// about as much as an iteration); in between the last value is reported.
    pub check_every: usize,
    /// Iteration cap.
    pub max_iters: usize,
}

impl<T: Real> Default for PdhgParams<T> {
    fn default() -> Self {
        Self {
            tau: None,
            sigma: None,
            theta: T::one(),
            strong_convexity: None,
            tol: T::c(1e-8),
            relative: false,
            check_every: 10,
            max_iters: 100_000,
        }
    }
}

impl<T: Real> PdhgParams<T> {
    /// Makes the tolerance relative to the objective.
    pub fn relative(mut self, on: bool) -> Self {
        self.relative = on;
        self
    }
    /// Sets `τ` and `σ`.
    pub fn with_steps(mut self, tau: T, sigma: T) -> Self {
        self.tau = Some(tau);
        self.sigma = Some(sigma);
        self
    }
    /// Sets the strong convexity modulus of `f` (acceleration).
    pub fn with_strong_convexity(mut self, g: T) -> Self {
        self.strong_convexity = Some(g);
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

/// State of [`Pdhg`].
#[derive(Clone, Debug)]
pub struct PdhgState<T> {
    /// Primal iterate.
    pub x: Array1<T>,
    /// Dual iterate.
    pub y: Array1<T>,
    /// Current steps.
    pub tau: T,
    /// Current dual step.
    pub sigma: T,
    /// Iterations done.
    pub iter: usize,
    /// Primal objective `f(x) + g(Kx)`.
    pub objective: T,
    /// Current certificate.
    pub certificate: T,
    gap_available: bool,
    /// A conjugate value was unavailable once (it will stay so): skip asking again.
    conj_unavailable: bool,
    xbar: Array1<T>,
    x_old: Array1<T>,
    kx: Array1<T>,
    kty: Array1<T>,
    tmp_n: Array1<T>,
    tmp_m: Array1<T>,
    y_old: Array1<T>,
    aux_n: Array1<T>,
    aux_m: Array1<T>,
}

/// Chambolle–Pock for the saddle problem `min_x max_y ⟨Kx, y⟩ + f(x) − g*(y)`, i.e.
/// `min_x f(x) + g(Kx)`:
///
/// `y⁺ = prox_{σg*}(y + σK x̄)`, `x⁺ = prox_{τf}(x − τKᵀy⁺)`, `x̄ = x⁺ + θ(x⁺ − x)`.
///
/// **Step condition** `τσ‖K‖² < 1` (checked; `‖K‖` by power iteration). **Certificate**: the
/// primal–dual gap `f(x) + g(Kx) + f*(−Kᵀy) + g*(y)` when both conjugates have closed forms
/// (and are finite there); otherwise the primal–dual residual
/// `max(‖(x_k − x⁺)/τ − Kᵀ(y_k − y⁺)‖, ‖(y_k − y⁺)/σ − K(x_k − x⁺)‖)` (Goldstein et al.).
///
/// # References
/// A. Chambolle, T. Pock, "A first-order primal-dual algorithm for convex problems with
/// applications to imaging", J. Math. Imaging Vis. 40 (2011); T. Goldstein, M. Li, X. Yuan,
/// E. Esser, R. Baraniuk, "Adaptive primal-dual hybrid gradient methods for saddle-point
/// problems", arXiv:1305.0546 (2013).
pub struct Pdhg<'a, T: Real, F: ?Sized, G: ?Sized, K: ?Sized> {
    f: &'a F,
    g: &'a G,
    k: &'a K,
    params: PdhgParams<T>,
}

impl<'a, T: Real, F: Prox<T> + ?Sized, G: Prox<T> + ?Sized, K: LinearOperator<T> + ?Sized>
    Pdhg<'a, T, F, G, K>
{
    /// The solver for `f(x) + g(Kx)`.
    pub fn new(f: &'a F, g: &'a G, k: &'a K, params: PdhgParams<T>) -> Self {
        Self { f, g, k, params }
    }

    /// The parameters.
    pub fn params(&self) -> &PdhgParams<T> {
        &self.params
    }

    /// Initial state at `(x0, y0 = 0)`; checks the step condition.
    pub fn init(&self, x0: ArrayView1<'_, T>) -> Result<PdhgState<T>> {
        let (m, n) = self.k.shape();
        check_len("Pdhg::init", "x0", n, x0.len())?;
        check_finite("Pdhg::init x0", x0)?;
        let p = &self.params;
        if !(p.theta >= T::zero() && p.theta <= T::one()) {
            return Err(Error::param(
                "theta",
                p.theta,
                "the over-relaxation must lie in [0, 1]",
            ));
        }
        let knorm = self.k.opnorm_estimate(PowerIteration::default())? * T::c(1.0 + 1e-6);
        let tau = p.tau.unwrap_or(T::one() / knorm);
        let sigma = p.sigma.unwrap_or(T::c(0.99) / (tau * knorm * knorm));
        crate::linalg::check_positive("tau", tau)?;
        crate::linalg::check_positive("sigma", sigma)?;
        if tau * sigma * knorm * knorm >= T::one() {
            return Err(Error::param(
                "tau*sigma*|K|^2",
                tau * sigma * knorm * knorm,
                "PDHG needs tau*sigma*|K|^2 < 1; decrease tau or sigma",
            ));
        }
        let mut kx = Array1::zeros(m);
        self.k.apply_into(kx.view_mut(), x0)?;
        let objective = self.f.value(x0)? + self.g.value(kx.view())?;
        Ok(PdhgState {
            x: x0.to_owned(),
            y: Array1::zeros(m),
            tau,
            sigma,
            iter: 0,
            objective,
            certificate: T::infinity(),
            gap_available: false,
            conj_unavailable: false,
            xbar: x0.to_owned(),
            x_old: x0.to_owned(),
            kx,
            kty: Array1::zeros(n),
            tmp_n: Array1::zeros(n),
            tmp_m: Array1::zeros(m),
            y_old: Array1::zeros(m),
            aux_n: Array1::zeros(n),
            aux_m: Array1::zeros(m),
        })
    }

    /// One iteration.
    pub fn step(&self, s: &mut PdhgState<T>) -> Result<IterInfo<T>> {
        let (tau, sigma) = (s.tau, s.sigma);
        // Dual step.
        self.k.apply_unchecked(s.tmp_m.view_mut(), s.xbar.view());
        s.y_old.assign(&s.y);
        Zip::from(&mut s.tmp_m)
            .and(&s.y_old)
            .for_each(|t, &y| *t = y + sigma * *t);
        self.g
            .conj_prox_into(s.y.view_mut(), s.tmp_m.view(), sigma)?;
        // Primal step.
        self.k.adjoint_unchecked(s.kty.view_mut(), s.y.view());
        s.x_old.assign(&s.x);
        Zip::from(&mut s.tmp_n)
            .and(&s.x_old)
            .and(&s.kty)
            .for_each(|t, &x, &k| *t = x - tau * k);
        self.f.prox_into(s.x.view_mut(), s.tmp_n.view(), tau)?;
        // Step sizes and extrapolation.
        let theta = match self.params.strong_convexity {
            Some(g) => {
                let th = T::one() / (T::one() + T::c(2.0) * g * tau).sqrt();
                s.tau = th * tau;
                s.sigma = sigma / th;
                th
            }
            None => self.params.theta,
        };
        Zip::from(&mut s.xbar)
            .and(&s.x)
            .and(&s.x_old)
            .for_each(|b, &x, &xo| *b = x + theta * (x - xo));
        s.iter += 1;
        if s.iter % self.params.check_every.max(1) != 0 && s.iter < self.params.max_iters {
            return Ok(IterInfo {
                iter: s.iter,
                objective: s.objective,
                certificate: s.certificate,
                kind: self.last_kind(s),
            });
        }
        // Objective and certificate.
        self.k.apply_unchecked(s.kx.view_mut(), s.x.view());
        s.objective = self.f.value(s.x.view())? + self.g.value(s.kx.view())?;
        check_divergence("PDHG", s.iter, "objective", s.objective)?;
        Zip::from(&mut s.tmp_n)
            .and(&s.kty)
            .for_each(|t, &k| *t = -k);
        let gap = if s.conj_unavailable {
            None
        } else {
            match (
                self.f.conj_value(s.tmp_n.view()),
                self.g.conj_value(s.y.view()),
            ) {
                (Ok(fs), Ok(gs)) if (fs + gs).is_finite() => {
                    Some((s.objective + fs + gs).max(T::zero()))
                }
                (Err(Error::Unsupported { .. }), _) | (_, Err(Error::Unsupported { .. })) => {
                    s.conj_unavailable = true;
                    None
                }
                _ => None,
            }
        };
        s.certificate = match gap {
            Some(g) => g,
            None => {
                // Residuals: p = (x_old − x)/τ − Kᵀ(y_old − y), d = (y_old − y)/σ − K(x_old − x).
                Zip::from(&mut s.tmp_n)
                    .and(&s.x_old)
                    .and(&s.x)
                    .for_each(|d, &a, &b| *d = a - b);
                Zip::from(&mut s.tmp_m)
                    .and(&s.y_old)
                    .and(&s.y)
                    .for_each(|d, &a, &b| *d = a - b);
                self.k.adjoint_unchecked(s.aux_n.view_mut(), s.tmp_m.view());
                self.k.apply_unchecked(s.aux_m.view_mut(), s.tmp_n.view());
                let p = scaled_difference_norm(&s.tmp_n, tau, &s.aux_n);
                let d = scaled_difference_norm(&s.tmp_m, sigma, &s.aux_m);
                p.max(d)
            }
        };
        check_divergence("PDHG", s.iter, "certificate", s.certificate)?;
        s.gap_available = gap.is_some();
        Ok(IterInfo {
            iter: s.iter,
            objective: s.objective,
            certificate: s.certificate,
            kind: if gap.is_some() {
                CertificateKind::DualityGap
            } else {
                CertificateKind::FixedPointResidual
            },
        })
    }

    fn last_kind(&self, s: &PdhgState<T>) -> CertificateKind {
        if s.gap_available {
            CertificateKind::DualityGap
        } else {
            CertificateKind::FixedPointResidual
        }
    }

    /// Runs from `x0` (dual start 0).
    pub fn run(
        &self,
        x0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, PdhgState<T>>> {
        let mut s = self.init(x0)?;
        let (reason, _) = drive(self, &mut s, observer)?;
        Ok(Solution {
            x: s.x.clone(),
            iterations: s.iter,
            objective: s.objective,
            certificate: s.certificate,
            kind: self.last_kind(&s),
            reason,
            state: s,
        })
    }
}

/// `‖a/s − b‖` without a temporary.
fn scaled_difference_norm<T: Real>(a: &Array1<T>, s: T, b: &Array1<T>) -> T {
    Zip::from(a)
        .and(b)
        .fold(T::zero(), |acc, &x, &y| {
            let d = x / s - y;
            acc + d * d
        })
        .sqrt()
}

impl<T: Real, F: Prox<T> + ?Sized, G: Prox<T> + ?Sized, K: LinearOperator<T> + ?Sized> Iterative<T>
    for Pdhg<'_, T, F, G, K>
{
    type State = PdhgState<T>;
    fn name(&self) -> &'static str {
        "PDHG"
    }
    fn start(&self, x0: ArrayView1<'_, T>) -> Result<Self::State> {
        self.init(x0)
    }
    fn advance(&self, s: &mut Self::State) -> Result<IterInfo<T>> {
        self.step(s)
    }
    fn estimate<'s>(&self, s: &'s Self::State) -> &'s Array1<T> {
        &s.x
    }
    fn tolerance(&self) -> T {
        self.params.tol
    }
    fn max_iters(&self) -> usize {
        self.params.max_iters
    }
    /// The certificate against `tol`, or `tol·|objective|` with [`PdhgParams::relative`].
    fn stop(&self, _s: &Self::State, info: &IterInfo<T>) -> Option<TerminationReason> {
        let scale = if self.params.relative {
            info.objective.abs()
        } else {
            T::one()
        };
        (info.certificate <= self.params.tol * scale).then_some(TerminationReason::Converged)
    }
}
