//! Forward–backward splitting: ISTA, FISTA (with backtracking, adaptive restart and the
//! strongly convex variant) and iterative hard thresholding.

use super::{check_divergence, CertificateKind, IterInfo, Observer, Solution};
use crate::backend::{check_start, ProxOn, SmoothOn};
use crate::error::{Error, Result};
use crate::linalg::{check_len, Real, Vector};
use ndarray::{Array1, ArrayView1};

/// How the step size is chosen.
#[derive(Clone, Copy, Debug)]
pub enum StepRule<T> {
    /// `1/L` with `L` = [`Smooth::lipschitz`](crate::func::Smooth::lipschitz) of the smooth part.
    InverseLipschitz,
    /// A fixed step (must satisfy `step ≤ 1/L` for the guarantees).
    Constant(T),
    /// Beck–Teboulle backtracking: start from `initial`, multiply by `eta ∈ (0, 1)` until the
    /// quadratic upper bound `f(z) ≤ f(y) + ⟨∇f(y), z − y⟩ + ‖z − y‖²/(2s)` holds. The step
    /// never increases (monotone backtracking).
    Backtracking {
        /// First trial step.
        initial: T,
        /// Shrink factor.
        eta: T,
    },
}

/// Adaptive restart of the momentum (O'Donoghue & Candès 2015).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// No restart.
    None,
    /// Restart when the objective increases.
    FunctionValue,
    /// Restart when `⟨y − x⁺, x⁺ − x⟩ > 0` (the momentum points uphill).
    Gradient,
}

/// Parameters of [`Fista`].
#[derive(Clone, Copy, Debug)]
pub struct FistaParams<T> {
    /// Step-size rule.
    pub step: StepRule<T>,
    /// `true`: FISTA momentum; `false`: ISTA (plain forward–backward).
    pub momentum: bool,
    /// Adaptive restart scheme.
    pub restart: Restart,
    /// Strong convexity modulus `μ > 0` of the smooth part: constant momentum
    /// `(1 − √(μs))/(1 + √(μs))` and the distance bound `‖G(x)‖·(1/μ)` as certificate.
    pub strong_convexity: Option<T>,
    /// Stop when the certificate is `≤ tol`.
    pub tol: T,
    /// Iteration cap.
    pub max_iters: usize,
    /// A supplied certificate ([`Fista::with_certificate`]) is evaluated every
    /// `certificate_every` iterations (default 1).
    pub certificate_every: usize,
    /// Evaluate the objective `F(x_k)` every iteration (default `true`). Off, the run costs
    /// one gradient and one prox per iteration and nothing else; `objective` keeps its
    /// initial value, divergence is detected on the certificate, and
    /// [`Restart::FunctionValue`] is not available.
    pub track_objective: bool,
    /// For a smooth problem (`g = 0`, whose prox is the identity; checked at `init`): the
    /// certificate is `‖∇f(y_k)‖` (divided by [`strong_convexity`](Self::strong_convexity)
    /// `μ` if set), computed from the gradient itself, tested at the extrapolated point `y_k`
    /// *before* stepping, and the run stops at `y_k` when it passes (default `false`). Then
    /// `‖∇f(y_k)‖/μ ≥ ‖y_k − x*‖` certifies the returned point exactly, at no extra gradient
    /// (the bilevel oracle's lower-level solves use this).
    pub certify_extrapolation: bool,
}

impl<T: Real> Default for FistaParams<T> {
    fn default() -> Self {
        Self {
            step: StepRule::InverseLipschitz,
            momentum: true,
            restart: Restart::None,
            strong_convexity: None,
            tol: T::c(1e-8),
            max_iters: 10_000,
            certificate_every: 1,
            track_objective: true,
            certify_extrapolation: false,
        }
    }
}

impl<T: Real> FistaParams<T> {
    /// ISTA (no momentum).
    pub fn ista() -> Self {
        Self {
            momentum: false,
            ..Self::default()
        }
    }
    /// Iterative hard thresholding: forward–backward without momentum; pair it with
    /// [`NormL0`](crate::func::NormL0) as the nonsmooth part.
    ///
    /// # References
    /// T. Blumensath, M. E. Davies, "Iterative hard thresholding for compressed sensing",
    /// Appl. Comput. Harmon. Anal. 27 (2009).
    pub fn iht() -> Self {
        Self::ista()
    }
    /// Sets the step rule.
    pub fn with_step(mut self, s: StepRule<T>) -> Self {
        self.step = s;
        self
    }
    /// Sets the restart scheme.
    pub fn with_restart(mut self, r: Restart) -> Self {
        self.restart = r;
        self
    }
    /// Sets the strong convexity modulus.
    pub fn with_strong_convexity(mut self, mu: T) -> Self {
        self.strong_convexity = Some(mu);
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
    /// Evaluates a supplied certificate every `k` iterations.
    pub fn with_certificate_every(mut self, k: usize) -> Self {
        self.certificate_every = k;
        self
    }
    /// Turns the per-iteration objective evaluation on or off.
    pub fn with_track_objective(mut self, on: bool) -> Self {
        self.track_objective = on;
        self
    }
    /// Tests the certificate at the extrapolated point before each step (see
    /// [`certify_extrapolation`](Self::certify_extrapolation)).
    pub fn with_certify_extrapolation(mut self, on: bool) -> Self {
        self.certify_extrapolation = on;
        self
    }
}

/// State of [`Fista`] (vectors of type `V`, [`Array1`] on the CPU).
#[derive(Clone, Debug)]
pub struct FistaState<T, V = Array1<T>> {
    /// Current iterate `x_k`.
    pub x: V,
    /// Extrapolated point `y_k`.
    pub y: V,
    /// Momentum sequence `t_k`.
    pub t: T,
    /// Current step size.
    pub step: T,
    /// Iterations done.
    pub iter: usize,
    /// `F(x_k) = f(x_k) + g(x_k)`.
    pub objective: T,
    /// Current certificate.
    pub certificate: T,
    /// Number of momentum restarts.
    pub restarts: usize,
    /// Gradient evaluations (including backtracking trials).
    pub grad_evals: usize,
    grad: V,
    z: V,
    tmp: V,
}

/// A user-supplied stopping certificate of [`Fista`] evaluated at an iterate.
type VecCertFn<'a, T, V> = Box<dyn Fn(&V) -> Result<T> + Send + Sync + 'a>;

/// Forward–backward splitting for `min_x F(x) = f(x) + g(x)`, `f` smooth ([`Smooth`](crate::func::Smooth)), `g` with a
/// prox ([`Prox`](crate::func::Prox)):
///
/// `x_{k+1} = prox_{s g}(y_k − s∇f(y_k))`, `y_{k+1} = x_{k+1} + β_k (x_{k+1} − x_k)`,
/// with `β_k = (t_k − 1)/t_{k+1}`, `t_{k+1} = (1 + √(1 + 4t_k²))/2` (FISTA), `β_k = 0` (ISTA),
/// or `β = (1 − √(μs))/(1 + √(μs))` when `f` is `μ`-strongly convex.
///
/// **Step condition**: `s ≤ 1/L` (`L` Lipschitz constant of `∇f`), or backtracking.
/// **Guarantee** (convex `f`, `g`): `F(x_k) − F* ≤ 2‖x_0 − x*‖²/(s(k+1)²)` for FISTA,
/// `‖x_0 − x*‖²/(2sk)` for ISTA.
///
/// **Certificate**: a user-supplied one ([`Fista::with_certificate`], e.g. the Lasso duality
/// gap); otherwise the gradient-mapping norm `‖x_{k+1} − y_k‖/s`, divided by `μ` under strong
/// convexity (then it bounds `‖x_{k+1} − x*‖` up to a factor 2).
///
/// **Backends**: the iteration is written once over the [`Vector`] operations and the
/// [`SmoothOn`]/[`ProxOn`] traits (see [`crate::backend`]); `V` is [`Array1`] on the CPU
/// ([`Fista::run`]) and a device buffer type elsewhere ([`Fista::run_on`]).
///
/// # References
/// A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear inverse
/// problems", SIAM J. Imaging Sci. 2 (2009); B. O'Donoghue, E. Candès, "Adaptive restart for
/// accelerated gradient schemes", Found. Comput. Math. 15 (2015).
///
/// # Example
/// ```
/// use hyperprox_core::prelude::*;
/// use hyperprox_core::solve::*;
/// use ndarray::array;
/// let f = LeastSquares::new(DenseMatrix::<f64>::new(array![[1.0, 0.0], [0.0, 2.0]]).unwrap(), array![1.0, 1.0]).unwrap();
/// let g = NormL1::new(0.1).unwrap();
/// let sol = Fista::new(&f, &g, FistaParams::default().with_tol(1e-10)).run(array![0.0, 0.0].view(), NoObserver).unwrap();
/// assert!((sol.x[0] - 0.9).abs() < 1e-8 && (sol.x[1] - 0.475).abs() < 1e-8);
/// ```
pub struct Fista<'a, T: Real, F: ?Sized, G: ?Sized, V = Array1<T>> {
    f: &'a F,
    g: &'a G,
    params: FistaParams<T>,
    certificate: Option<(VecCertFn<'a, T, V>, CertificateKind)>,
}

impl<'a, T, F, G> Fista<'a, T, F, G, Array1<T>>
where
    T: Real,
    F: SmoothOn<T, Array1<T>> + ?Sized,
    G: ProxOn<T, Array1<T>> + ?Sized,
{
    /// Initial state at `x0` (CPU).
    pub fn init(&self, x0: ArrayView1<'_, T>) -> Result<FistaState<T>> {
        if let Some(n) = self.f.dim_on().or(self.g.dim_on()) {
            check_len("Fista::init", "x0", n, x0.len())?;
        }
        crate::linalg::check_finite("Fista::init x0", x0)?;
        self.init_on(&x0.to_owned())
    }

    /// Runs from `x0` until the certificate is `≤ tol`, `max_iters`, or the observer stops.
    pub fn run(
        &self,
        x0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, FistaState<T>>> {
        let s = self.init(x0)?;
        self.run_from(s, observer)
    }
}

impl<'a, T, F, G, V> Fista<'a, T, F, G, V>
where
    T: Real,
    V: Vector<T>,
    F: SmoothOn<T, V> + ?Sized,
    G: ProxOn<T, V> + ?Sized,
{
    /// The solver for `f + g`.
    pub fn new(f: &'a F, g: &'a G, params: FistaParams<T>) -> Self {
        Self {
            f,
            g,
            params,
            certificate: None,
        }
    }

    /// Stops on a problem-specific certificate (e.g. a duality gap) evaluated at `x_k`.
    pub fn with_certificate(
        mut self,
        kind: CertificateKind,
        cert: impl Fn(&V) -> Result<T> + Send + Sync + 'a,
    ) -> Self {
        self.certificate = Some((Box::new(cert), kind));
        self
    }

    /// The parameters.
    pub fn params(&self) -> &FistaParams<T> {
        &self.params
    }

    fn objective(&self, x: &V) -> Result<T> {
        Ok(self.f.value_on(x)? + self.g.value_on(x)?)
    }

    /// What the certificate of this run is.
    pub fn certificate_kind(&self) -> CertificateKind {
        match (&self.certificate, self.params.strong_convexity) {
            (Some((_, k)), _) => *k,
            (None, Some(_)) => CertificateKind::DistanceBound,
            (None, None) => CertificateKind::FixedPointResidual,
        }
    }

    /// Initial state at `x0`, on any backend's vectors.
    pub fn init_on(&self, x0: &V) -> Result<FistaState<T, V>> {
        check_start("Fista::init", self.f.dim_on().or(self.g.dim_on()), x0)?;
        let p = &self.params;
        if !(p.tol >= T::zero()) {
            return Err(Error::param("tol", p.tol, "must be >= 0"));
        }
        if !p.track_objective && p.restart == Restart::FunctionValue {
            return Err(Error::param(
                "restart",
                "FunctionValue",
                "function-value restart needs the objective: enable track_objective or use Restart::Gradient",
            ));
        }
        if p.certify_extrapolation && self.certificate.is_some() {
            return Err(Error::param(
                "certify_extrapolation",
                true,
                "the test at the extrapolated point uses the gradient norm, not a supplied certificate",
            ));
        }
        let step = match p.step {
            StepRule::InverseLipschitz => {
                let l = self.f.lipschitz_on().ok_or_else(|| {
                    Error::param(
                        "step",
                        "1/L",
                        "the smooth part has no Lipschitz constant; use StepRule::Backtracking or Constant",
                    )
                })?;
                if !(l > T::zero()) {
                    return Err(Error::param("L", l, "the Lipschitz constant must be > 0"));
                }
                T::one() / l
            }
            StepRule::Constant(s) => s,
            StepRule::Backtracking { initial, eta } => {
                if !(eta > T::zero() && eta < T::one()) {
                    return Err(Error::param(
                        "eta",
                        eta,
                        "the backtracking factor must lie in (0, 1)",
                    ));
                }
                initial
            }
        };
        crate::linalg::check_positive("step", step)?;
        if let Some(mu) = p.strong_convexity {
            crate::linalg::check_positive("strong_convexity", mu)?;
        }
        // The prox output buffer doubles as the probe of g = 0 (prox = identity).
        let mut z = x0.zeros_like();
        if p.certify_extrapolation {
            self.g.prox_on(&mut z, x0, step)?;
            if z.max_abs_diff(x0) != T::zero() {
                return Err(Error::param(
                    "certify_extrapolation",
                    true,
                    "the gradient-norm certificate is for smooth problems: the nonsmooth part must be zero (its prox the identity)",
                ));
            }
        }
        let objective = if p.track_objective {
            let v = self.objective(x0)?;
            check_divergence("FISTA", 0, "objective", v)?;
            v
        } else {
            T::nan()
        };
        Ok(FistaState {
            x: x0.clone(),
            y: x0.clone(),
            t: T::one(),
            step,
            iter: 0,
            objective,
            certificate: T::infinity(),
            restarts: 0,
            grad_evals: 0,
            grad: x0.zeros_like(),
            tmp: x0.zeros_like(),
            z,
        })
    }

    /// `z ← prox_{sg}(y − s∇f(y))` for the current step.
    /// With [`FistaParams::certify_extrapolation`] the prox is the identity (checked at
    /// `init`) and `z = y − s∇f(y)` is written directly.
    fn forward_backward(&self, s: &mut FistaState<T, V>) -> Result<()> {
        let step = s.step;
        if self.params.certify_extrapolation {
            s.z.set_axpy(&s.y, -step, &s.grad);
            return Ok(());
        }
        self.g
            .forward_backward_on(&mut s.z, &s.y, step, &s.grad, &mut s.tmp)
    }

    /// One iteration. Allocates nothing.
    pub fn step(&self, s: &mut FistaState<T, V>) -> Result<IterInfo<T>> {
        let p = &self.params;
        self.f.gradient_on(&mut s.grad, &s.y)?;
        s.grad_evals += 1;
        self.forward_backward(s)?;
        if let StepRule::Backtracking { eta, .. } = p.step {
            let fy = self.f.value_on(&s.y)?;
            loop {
                let fz = self.f.value_on(&s.z)?;
                s.tmp.set_axpy(&s.z, -T::one(), &s.y);
                let q = fy + s.grad.dot(&s.tmp) + s.tmp.dot(&s.tmp) / (T::c(2.0) * s.step);
                if fz <= q + T::c(10.0) * T::epsilon() * (T::one() + fy.abs()) {
                    break;
                }
                s.step *= eta;
                if s.step < T::min_positive_value() {
                    return Err(Error::Diverged {
                        method: "FISTA backtracking".into(),
                        iteration: s.iter,
                        detail: "step size underflow".into(),
                    });
                }
                self.forward_backward(s)?;
            }
        }
        // Gradient-mapping norm ‖z − y‖/s (for g = 0 with certify_extrapolation: ‖∇f(y)‖,
        // computed without the cancellation of z − y).
        let gm = if p.certify_extrapolation {
            s.grad.norm2()
        } else {
            s.tmp.set_axpy(&s.z, -T::one(), &s.y);
            s.tmp.norm2() / s.step
        };
        let scaled = match p.strong_convexity {
            Some(mu) => gm / mu,
            None => gm,
        };
        if p.certify_extrapolation && scaled <= p.tol {
            // y_k itself is certified: return it without stepping.
            check_divergence("FISTA", s.iter, "certificate", scaled)?;
            s.x.copy_from(&s.y);
            s.certificate = scaled;
            return Ok(self.info(s));
        }
        let new_obj = if p.track_objective {
            let v = self.objective(&s.z)?;
            check_divergence("FISTA", s.iter + 1, "objective", v)?;
            v
        } else {
            check_divergence("FISTA", s.iter + 1, "gradient mapping", gm)?;
            s.objective
        };
        // Momentum and restart.
        let mut beta = T::zero();
        if p.momentum {
            let restart = match p.restart {
                Restart::None => false,
                Restart::FunctionValue => new_obj > s.objective,
                Restart::Gradient => {
                    // ⟨y − z, z − x⟩ > 0, in one pass.
                    V::dot_of_differences(&s.y, &s.z, &s.z, &s.x) > T::zero()
                }
            };
            if restart {
                s.t = T::one();
                s.restarts += 1;
            } else if let Some(mu) = p.strong_convexity {
                let q = (mu * s.step).sqrt();
                beta = (T::one() - q) / (T::one() + q);
            } else {
                let t_new = T::c(0.5) * (T::one() + (T::one() + T::c(4.0) * s.t * s.t).sqrt());
                beta = (s.t - T::one()) / t_new;
                s.t = t_new;
            }
        }
        // y ← z + β(z − x); x ← z (a swap: z is overwritten next iteration).
        s.y.set_extrapolation(&s.z, &s.x, beta);
        std::mem::swap(&mut s.x, &mut s.z);
        s.objective = new_obj;
        s.iter += 1;
        s.certificate = match &self.certificate {
            // A supplied certificate (e.g. a duality gap) may cost several operator products:
            // evaluate it every `certificate_every` iterations and keep the last value between.
            Some((c, _)) => {
                if s.iter % p.certificate_every.max(1) == 0 || s.iter >= p.max_iters {
                    c(&s.x)?
                } else {
                    s.certificate
                }
            }
            None => scaled,
        };
        if s.certificate.is_nan() || s.certificate == T::neg_infinity() {
            check_divergence("FISTA", s.iter, "certificate", s.certificate)?;
        }
        Ok(self.info(s))
    }

    fn info(&self, s: &FistaState<T, V>) -> IterInfo<T> {
        IterInfo {
            iter: s.iter,
            objective: s.objective,
            certificate: s.certificate,
            kind: self.certificate_kind(),
        }
    }

    /// Runs from `x0` (any backend's vectors) until the certificate is `≤ tol`, `max_iters`,
    /// or the observer stops.
    pub fn run_on(
        &self,
        x0: &V,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, FistaState<T, V>, V>> {
        let s = self.init_on(x0)?;
        self.run_from(s, observer)
    }

    /// Runs from a state (a warm start, or [`Fista::init_on`]'s).
    pub fn run_from(
        &self,
        mut s: FistaState<T, V>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, FistaState<T, V>, V>> {
        let (reason, _) = super::drive(self, &mut s, observer)?;
        Ok(Solution {
            x: s.x.clone(),
            iterations: s.iter,
            objective: s.objective,
            certificate: s.certificate,
            kind: self.certificate_kind(),
            reason,
            state: s,
        })
    }
}
