//! Penalized least-squares problems `P(x) = ‖Ax − b‖²/(2n) + Ω(x)` (Lasso, weighted Lasso,
//! elastic net, group lasso) with their duality gap.

use crate::error::{Error, Result};
use crate::func::{ElasticNet, Function, Groups, LeastSquares, NormL1, NormL21, Prox};
use crate::linalg::{check_design, check_len, check_nonnegative, Real};
use crate::ops::DenseMatrix;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// The penalty `Ω` of a [`LassoProblem`] (all scaled by `λ`).
#[derive(Clone, Debug)]
pub enum LassoPenalty<T> {
    /// `λ Σ wⱼ|xⱼ|` (`w = 1`: the Lasso).
    L1 {
        /// Per-feature weights `wⱼ ≥ 0` (`None`: all ones).
        weights: Option<Array1<T>>,
    },
    /// `λ(α‖x‖₁ + (1 − α)/2‖x‖²)`, `α ∈ (0, 1]`.
    ElasticNet {
        /// The ℓ1 ratio.
        alpha: T,
    },
    /// `λ Σ_g w_g‖x_g‖₂`.
    Group {
        /// The partition of the features.
        groups: Groups,
        /// Per-group weights (`None`: `√|g|`).
        weights: Option<Array1<T>>,
    },
}

/// `min_x P(x) = ‖Ax − b‖²/(2n) + Ω(x)` with `A ∈ ℝ^{n×p}` dense.
///
/// **Duality gap.** With `θ = s·(b − Ax)/n`, `s ∈ (0, 1]` the largest scale making `θ` dual
/// feasible (`Ω*(Aᵀθ) < ∞`), the dual is `D(θ) = ⟨θ, b⟩ − (n/2)‖θ‖² − Ω*(Aᵀθ)` and
/// `G(x) = P(x) − D(θ) ≥ P(x) − P*`. `D` is `n`-strongly concave, so the optimal dual point lies
/// within `√(2G/n)` of `θ` (the gap-safe sphere used for screening).
///
/// # References
/// E. Ndiaye, O. Fercoq, A. Gramfort, J. Salmon, "Gap safe screening rules for sparsity enforcing
/// penalties", JMLR 18 (2017); M. Massias, A. Gramfort, J. Salmon, "Celer: a fast solver for the
/// Lasso with dual extrapolation", ICML 2018.
#[derive(Clone, Debug)]
pub struct LassoProblem<T: Real> {
    a: Array2<T>,
    b: Array1<T>,
    lambda: T,
    penalty: LassoPenalty<T>,
    /// Per-feature (L1/EN) or per-group weights, resolved.
    w: Array1<T>,
}

impl<T: Real> LassoProblem<T> {
    /// Validates and builds the problem.
    pub fn new(a: Array2<T>, b: Array1<T>, lambda: T, penalty: LassoPenalty<T>) -> Result<Self> {
        let p = a.ncols();
        check_design(
            "LassoProblem",
            a.view(),
            b.view(),
            "b (one entry per row of A)",
        )?;
        check_nonnegative("lambda", lambda)?;
        let w = match &penalty {
            LassoPenalty::L1 { weights } => match weights {
                Some(w) => {
                    check_len("LassoProblem", "weights", p, w.len())?;
                    if w.iter().any(|v| !(*v >= T::zero() && v.is_finite())) {
                        return Err(Error::param(
                            "weights",
                            "negative or non-finite",
                            "weights must be finite and >= 0",
                        ));
                    }
                    w.clone()
                }
                None => Array1::ones(p),
            },
            LassoPenalty::ElasticNet { alpha } => {
                if !(*alpha > T::zero() && *alpha <= T::one()) {
                    return Err(Error::param(
                        "alpha",
                        alpha,
                        "the l1 ratio must lie in (0, 1]",
                    ));
                }
                Array1::ones(p)
            }
            LassoPenalty::Group { groups, weights } => {
                check_len("LassoProblem", "group partition size", p, groups.dim())?;
                match weights {
                    Some(w) => {
                        check_len("LassoProblem", "group weights", groups.len(), w.len())?;
                        w.clone()
                    }
                    None => groups
                        .iter()
                        .map(|g| T::c((g.len() as f64).sqrt()))
                        .collect(),
                }
            }
        };
        Ok(Self {
            a,
            b,
            lambda,
            penalty,
            w,
        })
    }

    /// `λ_max`: the smallest `λ` for which `x = 0` is optimal.
    pub fn lambda_max(
        a: ArrayView2<'_, T>,
        b: ArrayView1<'_, T>,
        penalty: &LassoPenalty<T>,
    ) -> Result<T> {
        let probe = Self::new(a.to_owned(), b.to_owned(), T::one(), penalty.clone())?;
        let n = T::c(a.nrows() as f64);
        let atb = a.t().dot(&b).mapv(|v| v / n);
        Ok(probe.dual_norm_unit(atb.view()))
    }

    /// `max` over features/groups of `|vⱼ|/(α wⱼ)` or `‖v_g‖/w_g` (the dual norm of the
    /// penalty at `λ = 1`).
    fn dual_norm_unit(&self, v: ArrayView1<'_, T>) -> T {
        let mut m = T::zero();
        match &self.penalty {
            LassoPenalty::L1 { .. } => {
                for (j, &vj) in v.iter().enumerate() {
                    if self.w[j] > T::zero() {
                        m = m.max(vj.abs() / self.w[j]);
                    } else if vj != T::zero() {
                        m = T::infinity();
                    }
                }
            }
            LassoPenalty::ElasticNet { alpha } => {
                m = v.iter().fold(T::zero(), |a, x| a.max(x.abs())) / *alpha;
            }
            LassoPenalty::Group { groups, .. } => {
                for (g, idx) in groups.iter().enumerate() {
                    let nr: T = idx.iter().map(|&j| v[j] * v[j]).sum::<T>().sqrt();
                    m = m.max(nr / self.w[g]);
                }
            }
        }
        m
    }

    /// The design matrix.
    pub fn a(&self) -> ArrayView2<'_, T> {
        self.a.view()
    }
    /// The response.
    pub fn b(&self) -> ArrayView1<'_, T> {
        self.b.view()
    }
    /// `λ`.
    pub fn lambda(&self) -> T {
        self.lambda
    }
    /// Sets `λ` (a path solves the same design for several values without copying it).
    pub fn set_lambda(&mut self, lambda: T) -> Result<()> {
        check_nonnegative("lambda", lambda)?;
        self.lambda = lambda;
        Ok(())
    }
    /// The penalty.
    pub fn penalty(&self) -> &LassoPenalty<T> {
        &self.penalty
    }
    /// Resolved weights (per feature for L1/EN, per group for the group lasso).
    pub fn weights(&self) -> ArrayView1<'_, T> {
        self.w.view()
    }
    /// Number of samples `n`.
    pub fn n_samples(&self) -> usize {
        self.a.nrows()
    }
    /// Number of features `p`.
    pub fn n_features(&self) -> usize {
        self.a.ncols()
    }

    /// `Ω` as a [`Prox`] function.
    pub fn penalty_function(&self) -> Result<Box<dyn Prox<T>>> {
        Ok(match &self.penalty {
            LassoPenalty::L1 { .. } => {
                Box::new(NormL1::weighted(self.w.mapv(|v| v * self.lambda))?)
            }
            LassoPenalty::ElasticNet { alpha } => Box::new(ElasticNet::new(self.lambda, *alpha)?),
            LassoPenalty::Group { groups, .. } => Box::new(NormL21::weighted(
                groups.clone(),
                self.lambda,
                self.w.clone(),
            )?),
        })
    }

    /// The smooth part `‖Ax − b‖²/(2n)` as a [`LeastSquares`] on `A/√n`, `b/√n`.
    pub fn smooth_part(&self) -> Result<LeastSquares<T, DenseMatrix<T>>> {
        let s = T::one() / T::c(self.n_samples() as f64).sqrt();
        LeastSquares::new(
            DenseMatrix::new(self.a.mapv(|v| v * s))?,
            self.b.mapv(|v| v * s),
        )
    }

    /// Residual `b − Ax`.
    pub fn residual(&self, x: ArrayView1<'_, T>) -> Result<Array1<T>> {
        check_len("LassoProblem", "x", self.n_features(), x.len())?;
        let mut ax = Array1::zeros(self.n_samples());
        crate::linalg::gemv_into(ax.view_mut(), self.a.view(), x.as_standard_layout().view());
        Ok(&self.b - &ax)
    }

    /// `P(x)` from a residual `r = b − Ax`.
    pub fn objective_with_residual(&self, x: ArrayView1<'_, T>, r: ArrayView1<'_, T>) -> Result<T> {
        let n = T::c(self.n_samples() as f64);
        Ok(r.dot(&r) / (T::c(2.0) * n) + self.penalty_function()?.value(x)?)
    }

    /// `P(x)`.
    pub fn objective(&self, x: ArrayView1<'_, T>) -> Result<T> {
        let r = self.residual(x)?;
        self.objective_with_residual(x, r.view())
    }

    /// Duality gap and the dual point `θ` from `x` and its residual `r = b − Ax`.
    pub fn duality_gap_with_residual(
        &self,
        x: ArrayView1<'_, T>,
        r: ArrayView1<'_, T>,
    ) -> Result<(T, Array1<T>)> {
        let n = T::c(self.n_samples() as f64);
        let mut atth = Array1::zeros(self.n_features());
        crate::linalg::gemv_into(atth.view_mut(), self.a.t(), r.mapv(|v| v / n).view());
        let (gap, scale, _) = self.gap_from_correlations(x, r, atth)?;
        Ok((gap, r.mapv(|v| v * scale / n)))
    }

    /// The gap of [`Self::duality_gap_with_residual`] from the correlations `Aᵀr/n` computed by
    /// the caller (coordinate descent reads its contiguous columns): `(gap, s, Aᵀθ)` with
    /// `θ = s·r/n`.
    pub(crate) fn gap_from_correlations(
        &self,
        x: ArrayView1<'_, T>,
        r: ArrayView1<'_, T>,
        mut atth: Array1<T>,
    ) -> Result<(T, T, Array1<T>)> {
        let n = T::c(self.n_samples() as f64);
        let mut scale = T::one();
        if !matches!(self.penalty, LassoPenalty::ElasticNet { alpha } if alpha < T::one()) {
            let dn = self.dual_norm_unit(atth.view());
            if dn > self.lambda {
                scale = self.lambda / dn;
                atth.mapv_inplace(|v| v * scale);
            }
        }
        let conj = self.penalty_function()?.conj_value(atth.view())?;
        let primal = self.objective_with_residual(x, r)?;
        let gap = gap_from_residual(primal, r, self.b.view(), scale, n, conj);
        Ok((gap, scale, atth))
    }

    /// Duality gap `P(x) − D(θ(x))`.
    pub fn duality_gap(&self, x: ArrayView1<'_, T>) -> Result<T> {
        let r = self.residual(x)?;
        Ok(self.duality_gap_with_residual(x, r.view())?.0)
    }
}

/// The duality gap of `min ‖b − Ax‖²/(2n) + Ω(x)` at the dual point `θ = s·r/n` built from the
/// residual `r = b − Ax` (`s ≤ 1` scales it into the dual domain): with the primal value `p`
/// and the conjugate term `c = Ω*(Aᵀθ)`,
/// `gap = p − (θᵀb − (n/2)‖θ‖² − c) = p − (s·rᵀb − s²‖r‖²/2)/n + c`, clamped at 0. The one
/// Lasso-type gap of the workspace: [`LassoProblem::duality_gap`] and the batched
/// [`crate::solve::lasso_gaps`] both use it.
pub fn gap_from_residual<T: Real>(
    primal: T,
    r: ArrayView1<'_, T>,
    b: ArrayView1<'_, T>,
    s: T,
    n: T,
    conj: T,
) -> T {
    let dual = (s * r.dot(&b) - T::c(0.5) * s * s * r.dot(&r)) / n - conj;
    (primal - dual).max(T::zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Against the dual value written as `(½‖b‖² − ½‖b − s·r‖²)/n − c` at a scaled dual point
    /// (`s < 1`, where every factor of `s` matters).
    #[test]
    fn gap_from_residual_matches_the_dual_written_out() {
        let b = array![1.0, -2.0, 0.5, 3.0];
        let r = array![0.4, -1.0, 0.2, 0.9];
        let (s, n, conj, primal): (f64, f64, f64, f64) = (0.3, 4.0, 0.05, 2.0);
        let bmsr = &b - &(&r * s);
        let dual = (0.5 * b.dot(&b) - 0.5 * bmsr.dot(&bmsr)) / n - conj;
        let got = gap_from_residual(primal, r.view(), b.view(), s, n, conj);
        assert!(
            (got - (primal - dual)).abs() < 1e-14,
            "{got} vs {}",
            primal - dual
        );
        // A primal value below the dual value is rounding: the gap is clamped at 0.
        assert_eq!(
            gap_from_residual(dual - 1.0, r.view(), b.view(), s, n, conj),
            0.0
        );
    }
}
