//! Sparse logistic regression `(1/n) Σᵢ log(1 + exp(−yᵢaᵢᵀx)) + λ‖x‖₁` by proximal coordinate
//! descent with its duality gap and gap-safe screening.

use super::design::{Columns, Design, DesignRef};
use super::{check_divergence, CoordinateDescentParams, Observer, Solution};
use crate::error::{Error, Result};
use crate::func::soft_threshold;
use crate::linalg::{check_finite, check_len, Real};
use ndarray::{Array1, Array2, ArrayView1};

pub(super) use crate::linalg::{log1pexp, sigmoid};

/// Binary entropy `−s log s − (1 − s) log(1 − s)` (0 at the ends).
#[inline]
fn entropy<T: Real>(s: T) -> T {
    let h = |p: T| {
        if p > T::zero() {
            -p * p.ln()
        } else {
            T::zero()
        }
    };
    h(s) + h(T::one() - s)
}

/// `min_x P(x) = (1/n) Σᵢ log(1 + exp(−yᵢ aᵢᵀx)) + λ‖x‖₁`, labels `yᵢ ∈ {−1, +1}`.
///
/// **Duality gap.** With `sᵢ = σ(−yᵢ aᵢᵀx) ∈ (0, 1)` and `θᵢ = c·yᵢsᵢ/n`, `c ≤ 1` the largest
/// scale with `‖Aᵀθ‖∞ ≤ λ`, the dual value is `D(θ) = (1/n) Σ H(c·sᵢ)` (`H` the binary entropy
/// in nats) and `G = P(x) − D(θ) ≥ P(x) − P*`. `D` is `4n`-strongly concave, so the gap-safe
/// sphere has radius `√(G/(2n))`.
///
/// # References
/// E. Ndiaye, O. Fercoq, A. Gramfort, J. Salmon, "Gap safe screening rules for sparsity
/// enforcing penalties", JMLR 18 (2017), §2 (logistic loss).
#[derive(Clone, Debug)]
pub struct LogisticL1Problem<T: Real> {
    a: Design<T>,
    y: Array1<T>,
    lambda: T,
}

impl<T: Real> LogisticL1Problem<T> {
    /// Validates and builds the problem with a dense design.
    pub fn new(a: Array2<T>, y: Array1<T>, lambda: T) -> Result<Self> {
        Self::with_design(Design::from(a), y, lambda)
    }

    /// Validates and builds the problem with a dense or sparse design
    /// (`Design::from(csr_matrix)`).
    pub fn with_design(a: Design<T>, y: Array1<T>, lambda: T) -> Result<Self> {
        a.view()
            .check("LogisticL1Problem", y.view(), "labels (one per row of A)")?;
        if let Some((i, v)) = y
            .iter()
            .enumerate()
            .find(|(_, v)| **v != T::one() && **v != -T::one())
        {
            return Err(Error::param(
                format!("labels[{i}]"),
                v,
                "labels must be -1 or +1 (map {0, 1} with 2y - 1)",
            ));
        }
        crate::linalg::check_nonnegative("lambda", lambda)?;
        Ok(Self { a, y, lambda })
    }
    /// `λ_max = ‖Aᵀy‖∞/(2n)`: the smallest `λ` with solution 0 (`a`: a dense view, a
    /// [`CsrMatrix`](crate::ops::CsrMatrix) or a [`Design`]).
    pub fn lambda_max<'d>(a: impl Into<DesignRef<'d, T>>, y: ArrayView1<'_, T>) -> T {
        let a: DesignRef<'d, T> = a.into();
        let n = T::c(a.dim().0 as f64);
        a.adjoint(y).iter().fold(T::zero(), |m, v| m.max(v.abs())) / (T::c(2.0) * n)
    }
    /// `λ`.
    pub fn lambda(&self) -> T {
        self.lambda
    }
    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.a.dim().1
    }
    /// The design, dense or sparse.
    pub fn design(&self) -> &Design<T> {
        &self.a
    }
    /// The labels (±1).
    pub fn y(&self) -> ArrayView1<'_, T> {
        self.y.view()
    }
    /// Number of samples.
    pub fn n_samples(&self) -> usize {
        self.a.dim().0
    }
    /// `P(x)` from the margins `z = Ax`.
    pub(super) fn objective_z(&self, x: ArrayView1<'_, T>, z: ArrayView1<'_, T>) -> T {
        let n = T::c(self.n_samples() as f64);
        let loss: T = z
            .iter()
            .zip(&self.y)
            .map(|(&zi, &yi)| log1pexp(-yi * zi))
            .sum();
        loss / n + self.lambda * x.iter().map(|v| v.abs()).sum::<T>()
    }
    /// `P(x)`.
    pub fn objective(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_len("LogisticL1Problem", "x", self.n_features(), x.len())?;
        Ok(self.objective_z(x, self.a.view().apply(x).view()))
    }
    /// The dual value `D(θ) = (1/n) Σ H(c·sᵢ)` of `θ = c·y ⊙ s/n` (`sᵢ = σ(−yᵢzᵢ)`) where `c ≤ 1`
    /// is the largest scale with `c·‖Aᵀ(y ⊙ s)/n‖∞ ≤ λ`, from `‖Aᵀ(y ⊙ s)/n‖∞ = ‖∇F(x)‖∞` (the
    /// caller's gradient): `(D, c)`.
    pub(super) fn dual_from_gradient_norm(&self, z: ArrayView1<'_, T>, grad_inf: T) -> (T, T) {
        let n = T::c(self.n_samples() as f64);
        let c = if grad_inf > self.lambda {
            self.lambda / grad_inf
        } else {
            T::one()
        };
        let dual: T = z
            .iter()
            .zip(&self.y)
            .map(|(&zi, &yi)| entropy(c * sigmoid(-yi * zi)))
            .sum::<T>()
            / n;
        (dual, c)
    }
    /// Duality gap and dual point from the margins `z = Ax`.
    fn gap_z(&self, x: ArrayView1<'_, T>, z: ArrayView1<'_, T>) -> (T, Array1<T>) {
        let n = T::c(self.n_samples() as f64);
        let mut theta: Array1<T> = z
            .iter()
            .zip(&self.y)
            .map(|(&zi, &yi)| yi * sigmoid(-yi * zi) / n)
            .collect();
        let atth = self.a.view().adjoint(theta.view());
        let dn = atth.iter().fold(T::zero(), |m, v| m.max(v.abs()));
        let c = if dn > self.lambda {
            self.lambda / dn
        } else {
            T::one()
        };
        theta.mapv_inplace(|v| v * c);
        let dual: T = theta
            .iter()
            .zip(&self.y)
            .map(|(&t, &yi)| entropy(n * t * yi))
            .sum::<T>()
            / n;
        ((self.objective_z(x, z) - dual).max(T::zero()), theta)
    }
    /// Duality gap `P(x) − D(θ(x))`.
    pub fn duality_gap(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_len("LogisticL1Problem", "x", self.n_features(), x.len())?;
        Ok(self.gap_z(x, self.a.view().apply(x).view()).0)
    }
}

/// Proximal coordinate descent for [`LogisticL1Problem`]: `xⱼ ← S(xⱼ − gⱼ/Lⱼ, λ/Lⱼ)` with
/// `gⱼ = ∂ⱼ(loss)` and `Lⱼ = ‖aⱼ‖²/(4n)` (the coordinate Lipschitz constant), keeping the
/// margins `z = Ax` up to date; gap check and gap-safe screening every `check_every` epochs.
///
/// # References
/// P. Richtárik, M. Takáč, "Iteration complexity of randomized block-coordinate descent
/// methods", Math. Program. 144 (2014); Ndiaye et al., JMLR 18 (2017).
pub struct LogisticCd<'a, T: Real> {
    problem: &'a LogisticL1Problem<T>,
    params: CoordinateDescentParams<T>,
    /// The columns of `A` (dense: `Aᵀ` in standard layout, borrowed when `A` is column-major;
    /// sparse: compressed columns).
    cols: Columns<'a, T>,
    lip: Array1<T>,
}

/// State of [`LogisticCd`].
#[derive(Clone, Debug)]
pub struct LogisticCdState<T> {
    /// Current iterate.
    pub x: Array1<T>,
    /// Margins `Ax`.
    pub z: Array1<T>,
    /// Features still in the problem.
    pub active: Vec<usize>,
    /// Epochs done.
    pub epoch: usize,
    /// Last gap.
    pub gap: T,
    /// Objective at the last check.
    pub objective: T,
    /// The outer iterations of the working-set prox-Newton solver (empty for plain CD).
    pub trace: Vec<super::logreg_ws::ProxNewtonRecord<T>>,
}

impl<'a, T: Real> LogisticCd<'a, T> {
    /// The solver for `problem`.
    pub fn new(
        problem: &'a LogisticL1Problem<T>,
        params: CoordinateDescentParams<T>,
    ) -> Result<Self> {
        if params.check_every == 0 {
            return Err(Error::param("check_every", 0, "must be >= 1"));
        }
        let n = T::c(problem.n_samples() as f64);
        let cols = Columns::of(&problem.a);
        let lip = problem.a.col_sq_norms().mapv(|v| v / (T::c(4.0) * n));
        Ok(Self {
            problem,
            params,
            cols,
            lip,
        })
    }

    /// Computes the gap at the current iterate and screens.
    pub fn check(&self, s: &mut LogisticCdState<T>) -> Result<()> {
        let p = self.problem;
        let (gap, theta) = p.gap_z(s.x.view(), s.z.view());
        s.gap = gap;
        s.objective = p.objective_z(s.x.view(), s.z.view());
        check_divergence(
            "logistic coordinate descent",
            s.epoch,
            "objective",
            s.objective,
        )?;
        if self.params.screening {
            let n = T::c(p.n_samples() as f64);
            let radius = (gap / (T::c(2.0) * n)).sqrt();
            let lam = p.lambda * (T::one() - T::c(1e3) * T::epsilon());
            let mut zeroed = Vec::new();
            s.active.retain(|&j| {
                let keep = self
                    .cols
                    .dot(j, theta.as_slice().expect("contiguous"))
                    .abs()
                    + (self.lip[j] * T::c(4.0) * n).sqrt() * radius
                    >= lam;
                if !keep {
                    zeroed.push(j);
                }
                keep
            });
            let mut changed = false;
            for j in zeroed {
                let d = s.x[j];
                if d != T::zero() {
                    s.x[j] = T::zero();
                    self.cols.axpy_into(j, -d, &mut s.z);
                    changed = true;
                }
            }
            if changed {
                let (gap, _) = p.gap_z(s.x.view(), s.z.view());
                s.gap = gap;
                s.objective = p.objective_z(s.x.view(), s.z.view());
            }
        }
        Ok(())
    }

    /// One epoch over the active features.
    pub fn epoch(&self, s: &mut LogisticCdState<T>) {
        let p = self.problem;
        let n = T::c(p.n_samples() as f64);
        for &j in &s.active {
            let l = self.lip[j];
            if l == T::zero() {
                continue;
            }
            let mut g = T::zero();
            self.cols.for_each_entry(j, |i, a| {
                let yi = p.y[i];
                g += -yi * sigmoid(-yi * s.z[i]) * a;
            });
            let g = g / n;
            let old = s.x[j];
            let new = soft_threshold(old - g / l, p.lambda / l);
            if new != old {
                s.x[j] = new;
                self.cols.axpy_into(j, new - old, &mut s.z);
            }
        }
        s.epoch += 1;
    }

    /// The parameters.
    pub fn params(&self) -> &CoordinateDescentParams<T> {
        &self.params
    }

    /// Initial state at `x0`.
    pub fn init(&self, x0: ArrayView1<'_, T>) -> Result<LogisticCdState<T>> {
        check_len(
            "LogisticCd::init",
            "x0",
            self.problem.n_features(),
            x0.len(),
        )?;
        check_finite("LogisticCd::init x0", x0)?;
        Ok(LogisticCdState {
            x: x0.to_owned(),
            z: {
                let mut z = Array1::zeros(self.problem.n_samples());
                if x0.iter().any(|v| *v != T::zero()) {
                    self.problem.a.view().apply_into(z.view_mut(), x0);
                }
                z
            },
            active: (0..self.problem.n_features()).collect(),
            epoch: 0,
            gap: T::infinity(),
            objective: T::infinity(),
            trace: Vec::new(),
        })
    }

    /// Runs from `x0` until the gap is `≤ tol`, `max_epochs`, or the observer stops: by
    /// working-set prox-Newton ([`super::logreg_ws`]) when `params.working_sets` (the default),
    /// else by plain screened epochs (the shared loop [`run_epochs`](super::cd::run_epochs)).
    pub fn run(
        &self,
        x0: ArrayView1<'_, T>,
        observer: impl Observer<T>,
    ) -> Result<Solution<T, LogisticCdState<T>>> {
        if self.params.working_sets {
            self.run_ws(x0, observer)
        } else {
            super::cd::run_epochs(self, x0, observer)
        }
    }

    /// The coordinate Lipschitz constant `‖aⱼ‖²/(4n)`.
    pub(super) fn lip_of(&self, j: usize) -> T {
        self.lip[j]
    }

    /// The columns of `A`.
    pub(super) fn columns(&self) -> &Columns<'a, T> {
        &self.cols
    }

    /// The problem.
    pub fn problem(&self) -> &LogisticL1Problem<T> {
        self.problem
    }
}

impl<T: Real> super::cd::EpochMethod<T> for LogisticCd<'_, T> {
    type State = LogisticCdState<T>;
    fn cd_params(&self) -> &CoordinateDescentParams<T> {
        &self.params
    }
    fn cd_init(&self, x0: ArrayView1<'_, T>) -> Result<Self::State> {
        self.init(x0)
    }
    fn cd_epoch(&self, s: &mut Self::State) {
        self.epoch(s)
    }
    fn cd_check(&self, s: &mut Self::State) -> Result<()> {
        self.check(s)
    }
    fn cd_view<'s>(&self, s: &'s Self::State) -> (&'s Array1<T>, usize, T, T) {
        (&s.x, s.epoch, s.gap, s.objective)
    }
}
