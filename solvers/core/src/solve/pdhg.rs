//! The primal–dual hybrid gradient method (Chambolle–Pock).

use super::{
    check_divergence, drive, CertificateKind, IterInfo, Iterative, Observer, Solution,
    TerminationReason,
};
use crate::backend::{check_start, OperatorOn, ProxOn};
use crate::error::{Error, Result};
use crate::linalg::{check_finite, check_len, Real, Vector};
use crate::ops::PowerIteration;
use ndarray::{Array1, ArrayView1};
use std::marker::PhantomData;

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

/// State of [`Pdhg`] (vectors of type `V`, [`Array1`] on the CPU).
#[derive(Clone, Debug)]
pub struct PdhgState<T, V = Array1<T>> {
    /// Primal iterate.
    pub x: V,
    /// Dual iterate.
    pub y: V,
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
    xbar: V,
    x_old: V,
    kx: V,
    kty: V,
    tmp_n: V,
    tmp_m: V,
    y_old: V,
    aux_n: V,
    aux_m: V,
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
/// **Backends**: written once over the [`Vector`] operations and the [`ProxOn`] /
/// [`OperatorOn`] traits (see [`crate::backend`]): [`Pdhg::run`] on [`Array1`],
/// [`Pdhg::run_on`] on a backend's vectors.
///
/// # References
/// A. Chambolle, T. Pock, "A first-order primal-dual algorithm for convex problems with
/// applications to imaging", J. Math. Imaging Vis. 40 (2011); T. Goldstein, M. Li, X. Yuan,
/// E. Esser, R. Baraniuk, "Adaptive primal-dual hybrid gradient methods for saddle-point
/// problems", arXiv:1305.0546 (2013).
pub struct Pdhg<'a, T: Real, F: ?Sized, G: ?Sized, K: ?Sized, V = Array1<T>> {
    f: &'a F,
    g: &'a G,
    k: &'a K,
    params: PdhgParams<T>,
    vectors: PhantomData<fn() -> V>,
}

impl<'a, T, F, G, K> Pdhg<'a, T, F, G, K, Array1<T>>
where
    T: Real,
    F: ProxOn<T, Array1<T>> + ?Sized,
    G: ProxOn<T, Array1<T>> + ?Sized,
    K: OperatorOn<T, Array1<T>> + ?Sized,
{
    /// Initial state at `(x0, y0 = 0)` (CPU); checks the step condition.
    pub fn init(&self, x0: ArrayView1<'_, T>) -> Result<PdhgState<T>> {
        check_len("Pdhg::init", "x0", self.k.shape_on().1, x0.len())?;
        check_finite("Pdhg::init x0", x0)?;
        self.init_on(&x0.to_owned())
    }

    /// Runs from `x0` (dual start 0).
    pub fn run(
        &self,
        x0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, PdhgState<T>>> {
        let s = self.init(x0)?;
        self.run_from(s, observer)
    }
}

impl<'a, T, F, G, K, V> Pdhg<'a, T, F, G, K, V>
where
    T: Real,
    V: Vector<T>,
    F: ProxOn<T, V> + ?Sized,
    G: ProxOn<T, V> + ?Sized,
    K: OperatorOn<T, V> + ?Sized,
{
    /// The solver for `f(x) + g(Kx)`.
    pub fn new(f: &'a F, g: &'a G, k: &'a K, params: PdhgParams<T>) -> Self {
        Self {
            f,
            g,
            k,
            params,
            vectors: PhantomData,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &PdhgParams<T> {
        &self.params
    }

    /// Initial state at `(x0, y0 = 0)` on a backend's vectors; checks the step condition.
    pub fn init_on(&self, x0: &V) -> Result<PdhgState<T, V>> {
        let (m, n) = self.k.shape_on();
        check_start("Pdhg::init", Some(n), x0)?;
        let p = &self.params;
        if !(p.theta >= T::zero() && p.theta <= T::one()) {
            return Err(Error::param(
                "theta",
                p.theta,
                "the over-relaxation must lie in [0, 1]",
            ));
        }
        let knorm = self.k.opnorm_on(PowerIteration::default())? * T::c(1.0 + 1e-6);
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
        let zeros_m = x0.zeros_of_len(m);
        let mut kx = zeros_m.clone();
        self.k.apply_on(&mut kx, x0);
        let objective = self.f.value_on(x0)? + self.g.value_on(&kx)?;
        Ok(PdhgState {
            x: x0.clone(),
            y: zeros_m.clone(),
            tau,
            sigma,
            iter: 0,
            objective,
            certificate: T::infinity(),
            gap_available: false,
            conj_unavailable: false,
            xbar: x0.clone(),
            x_old: x0.clone(),
            kx,
            kty: x0.zeros_like(),
            tmp_n: x0.zeros_like(),
            tmp_m: zeros_m.clone(),
            y_old: zeros_m.clone(),
            aux_n: x0.zeros_like(),
            aux_m: zeros_m,
        })
    }

    /// One iteration.
    pub fn step(&self, s: &mut PdhgState<T, V>) -> Result<IterInfo<T>> {
        let (tau, sigma) = (s.tau, s.sigma);
        // The previous iterates are kept only where the certificate needs them.
        let every = self.params.check_every.max(1);
        let save_old = (s.iter + 1) % every == 0 || s.iter + 1 >= self.params.max_iters;
        // Dual step: y ← prox_{σg*}(y + σKx̄) (one fused sweep where g allows it).
        self.k.apply_on(&mut s.tmp_m, &s.xbar);
        self.g
            .pdhg_dual_update_on(&mut s.y, &mut s.y_old, save_old, &mut s.tmp_m, sigma)?;
        // Primal step and extrapolation: x ← prox_{τf}(x − τKᵀy), x̄ ← x + θ(x − x_old).
        self.k.adjoint_on(&mut s.kty, &s.y);
        let theta = match self.params.strong_convexity {
            Some(g) => {
                let th = T::one() / (T::one() + T::c(2.0) * g * tau).sqrt();
                s.tau = th * tau;
                s.sigma = sigma / th;
                th
            }
            None => self.params.theta,
        };
        self.f.pdhg_primal_update_on(
            &mut s.x,
            &mut s.x_old,
            save_old,
            &mut s.xbar,
            &s.kty,
            &mut s.tmp_n,
            (tau, theta),
        )?;
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
        self.k.apply_on(&mut s.kx, &s.x);
        s.objective = self.f.value_on(&s.x)? + self.g.value_on(&s.kx)?;
        check_divergence("PDHG", s.iter, "objective", s.objective)?;
        s.tmp_n.copy_from(&s.kty);
        s.tmp_n.scale(-T::one());
        let gap = if s.conj_unavailable {
            None
        } else {
            match (self.f.conj_value_on(&s.tmp_n), self.g.conj_value_on(&s.y)) {
                (Ok(fs), Ok(gs)) if fs.is_finite() && gs.is_finite() => {
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
                s.tmp_n.set_axpy(&s.x_old, -T::one(), &s.x);
                s.tmp_m.set_axpy(&s.y_old, -T::one(), &s.y);
                self.k.adjoint_on(&mut s.aux_n, &s.tmp_m);
                self.k.apply_on(&mut s.aux_m, &s.tmp_n);
                let p = s.tmp_n.norm_of_scaled_difference(tau, &s.aux_n);
                let d = s.tmp_m.norm_of_scaled_difference(sigma, &s.aux_m);
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

    fn last_kind(&self, s: &PdhgState<T, V>) -> CertificateKind {
        if s.gap_available {
            CertificateKind::DualityGap
        } else {
            CertificateKind::FixedPointResidual
        }
    }

    /// Runs from `x0` (dual start 0) on a backend's vectors.
    pub fn run_on(
        &self,
        x0: &V,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, PdhgState<T, V>, V>> {
        let s = self.init_on(x0)?;
        self.run_from(s, observer)
    }

    /// Runs from a state (a warm start, or [`Pdhg::init_on`]'s).
    pub fn run_from(
        &self,
        mut s: PdhgState<T, V>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, PdhgState<T, V>, V>> {
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

impl<T, F, G, K, V> Iterative<T, V> for Pdhg<'_, T, F, G, K, V>
where
    T: Real,
    V: Vector<T>,
    F: ProxOn<T, V> + ?Sized,
    G: ProxOn<T, V> + ?Sized,
    K: OperatorOn<T, V> + ?Sized,
{
    type State = PdhgState<T, V>;
    fn name(&self) -> &'static str {
        "PDHG"
    }
    fn start(&self, x0: &V) -> Result<Self::State> {
        self.init_on(x0)
    }
    fn advance(&self, s: &mut Self::State) -> Result<IterInfo<T>> {
        self.step(s)
    }
    fn estimate<'s>(&self, s: &'s Self::State) -> &'s V {
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
