//! Forward–backward splitting: ISTA, FISTA (with backtracking, adaptive restart and the
//! strongly convex variant) and iterative hard thresholding.

use super::{check_divergence, CertFn, CertificateKind, IterInfo, Observer, Solution};
use crate::error::{Error, Result};
use crate::func::{Prox, Smooth};
use crate::linalg::{check_len, norm2, Real};
use ndarray::{Array1, ArrayView1, Zip};

/// How the step size is chosen.
#[derive(Clone, Copy, Debug)]
pub enum StepRule<T> {
    /// `1/L` with `L` = [`Smooth::lipschitz`] of the smooth part.
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

/// State of [`Fista`].
#[derive(Clone, Debug)]
pub struct FistaState<T> {
    /// Current iterate `x_k`.
    pub x: Array1<T>,
    /// Extrapolated point `y_k`.
    pub y: Array1<T>,
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
    grad: Array1<T>,
    z: Array1<T>,
    tmp: Array1<T>,
}

/// Forward–backward splitting for `min_x F(x) = f(x) + g(x)`, `f` smooth ([`Smooth`]), `g` with a
/// prox ([`Prox`]):
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
pub struct Fista<'a, T: Real, F: ?Sized, G: ?Sized> {
    f: &'a F,
    g: &'a G,
    params: FistaParams<T>,
    certificate: Option<(CertFn<'a, T>, CertificateKind)>,
}

impl<'a, T: Real, F: Smooth<T> + ?Sized, G: Prox<T> + ?Sized> Fista<'a, T, F, G> {
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
        cert: impl Fn(ArrayView1<'_, T>) -> Result<T> + Send + Sync + 'a,
    ) -> Self {
        self.certificate = Some((Box::new(cert), kind));
        self
    }

    /// The parameters.
    pub fn params(&self) -> &FistaParams<T> {
        &self.params
    }

    fn objective(&self, x: ArrayView1<'_, T>) -> Result<T> {
        Ok(self.f.value(x)? + self.g.value(x)?)
    }

    /// What the certificate of this run is.
    pub fn certificate_kind(&self) -> CertificateKind {
        match (&self.certificate, self.params.strong_convexity) {
            (Some((_, k)), _) => *k,
            (None, Some(_)) => CertificateKind::DistanceBound,
            (None, None) => CertificateKind::FixedPointResidual,
        }
    }

    /// Initial state at `x0`.
    pub fn init(&self, x0: ArrayView1<'_, T>) -> Result<FistaState<T>> {
        if let Some(n) = self.f.dim().or(self.g.dim()) {
            check_len("Fista::init", "x0", n, x0.len())?;
        }
        crate::linalg::check_finite("Fista::init x0", x0)?;
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
                let l = self.f.lipschitz().ok_or_else(|| {
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
        let n = x0.len();
        // The prox output buffer doubles as the probe of g = 0 (prox = identity).
        let mut z = Array1::zeros(n);
        if p.certify_extrapolation {
            self.g.prox_into(z.view_mut(), x0, step)?;
            if z != x0 {
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
            x: x0.to_owned(),
            y: x0.to_owned(),
            t: T::one(),
            step,
            iter: 0,
            objective,
            certificate: T::infinity(),
            restarts: 0,
            grad_evals: 0,
            grad: Array1::zeros(n),
            z,
            tmp: Array1::zeros(n),
        })
    }

    /// `z ← prox_{sg}(y − s∇f(y))` for the current step.
    /// With [`FistaParams::certify_extrapolation`] the prox is the identity (checked at
    /// `init`) and `z = y − s∇f(y)` is written directly.
    fn forward_backward(&self, s: &mut FistaState<T>) -> Result<()> {
        let step = s.step;
        if self.params.certify_extrapolation {
            Zip::from(&mut s.z)
                .and(&s.y)
                .and(&s.grad)
                .for_each(|z, &y, &g| *z = y - step * g);
            return Ok(());
        }
        Zip::from(&mut s.tmp)
            .and(&s.y)
            .and(&s.grad)
            .for_each(|t, &y, &g| *t = y - step * g);
        self.g.prox_into(s.z.view_mut(), s.tmp.view(), step)
    }

    /// One iteration. Allocates nothing.
    pub fn step(&self, s: &mut FistaState<T>) -> Result<IterInfo<T>> {
        let p = &self.params;
        self.f.gradient_into(s.grad.view_mut(), s.y.view())?;
        s.grad_evals += 1;
        self.forward_backward(s)?;
        if let StepRule::Backtracking { eta, .. } = p.step {
            let fy = self.f.value(s.y.view())?;
            loop {
                let fz = self.f.value(s.z.view())?;
                difference_into(&mut s.tmp, &s.z, &s.y);
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
            norm2(s.grad.view())
        } else {
            difference_into(&mut s.tmp, &s.z, &s.y);
            norm2(s.tmp.view()) / s.step
        };
        let scaled = match p.strong_convexity {
            Some(mu) => gm / mu,
            None => gm,
        };
        if p.certify_extrapolation && scaled <= p.tol {
            // y_k itself is certified: return it without stepping.
            check_divergence("FISTA", s.iter, "certificate", scaled)?;
            s.x.assign(&s.y);
            s.certificate = scaled;
            return Ok(self.info(s));
        }
        let new_obj = if p.track_objective {
            let v = self.objective(s.z.view())?;
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
                    Zip::from(&s.y)
                        .and(&s.z)
                        .and(&s.x)
                        .fold(T::zero(), |acc, &y, &z, &x| acc + (y - z) * (z - x))
                        > T::zero()
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
        Zip::from(&mut s.y)
            .and(&s.z)
            .and(&s.x)
            .for_each(|y, &z, &x| *y = z + beta * (z - x));
        std::mem::swap(&mut s.x, &mut s.z);
        s.objective = new_obj;
        s.iter += 1;
        s.certificate = match &self.certificate {
            // A supplied certificate (e.g. a duality gap) may cost several operator products:
            // evaluate it every `certificate_every` iterations and keep the last value between.
            Some((c, _)) => {
                if s.iter % p.certificate_every.max(1) == 0 || s.iter >= p.max_iters {
                    c(s.x.view())?
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

    fn info(&self, s: &FistaState<T>) -> IterInfo<T> {
        IterInfo {
            iter: s.iter,
            objective: s.objective,
            certificate: s.certificate,
            kind: self.certificate_kind(),
        }
    }

    /// Runs from `x0` until the certificate is `≤ tol`, `max_iters`, or the observer stops.
    pub fn run(
        &self,
        x0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, FistaState<T>>> {
        let mut s = self.init(x0)?;
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

/// `out ← a − b`.
fn difference_into<T: Real>(out: &mut Array1<T>, a: &Array1<T>, b: &Array1<T>) {
    Zip::from(out)
        .and(a)
        .and(b)
        .for_each(|o, &a, &b| *o = a - b);
}
