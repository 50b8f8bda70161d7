//! Penalized least-squares problems `P(x) = ‖Ax − b‖²/(2n) + Ω(x)` (Lasso, weighted Lasso,
//! elastic net, group lasso) with their duality gap.

use super::design::{Design, DesignRef};
use crate::error::{Error, Result};
use crate::func::{ElasticNet, Function, Groups, LeastSquares, NormL1, NormL21, Prox};
use crate::linalg::{check_len, check_nonnegative, Real};
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

/// `min_x P(x) = ‖Ax − b‖²/(2n) + Ω(x)` with `A ∈ ℝ^{n×p}` dense or sparse ([`Design`]).
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
    a: Design<T>,
    b: Array1<T>,
    lambda: T,
    penalty: LassoPenalty<T>,
    /// Per-feature (L1/EN) or per-group weights, resolved.
    w: Array1<T>,
    /// The span of the unpenalized columns (weighted ℓ1 with some `wⱼ = 0`), `None` otherwise.
    unpenalized: Option<Unpenalized<T>>,
}

/// The unpenalized columns `A_Z` (`wⱼ = 0`) of a weighted Lasso: an orthonormal basis `U` of
/// their span and `AᵀU`. A dual point must satisfy `A_Zᵀθ = 0` exactly, which a scaled residual
/// does only at the optimum; projecting it onto `span(A_Z)^⊥` (`r ← r − U Uᵀr`) makes every
/// dual point feasible, so the gap certifies problems with unpenalized features (an intercept
/// column, features the user wants kept).
#[derive(Clone, Debug)]
pub(crate) struct Unpenalized<T> {
    idx: Vec<usize>,
    /// `n × k` orthonormal columns (`k = rank A_Z`).
    u: Array2<T>,
    /// `AᵀU`, `p × k`.
    atu: Array2<T>,
}

impl<T: Real> Unpenalized<T> {
    /// The basis of the columns `idx` of `a` by Gram–Schmidt applied twice (orthogonal to
    /// working precision); a column whose remainder is below `√ε` of its norm is dependent on
    /// the previous ones and dropped.
    fn new(a: DesignRef<'_, T>, idx: Vec<usize>) -> Self {
        let n = a.dim().0;
        let mut basis: Vec<Array1<T>> = Vec::new();
        for &j in &idx {
            let mut q = a.column(j);
            let norm0 = q.dot(&q).sqrt();
            for _ in 0..2 {
                for u in &basis {
                    let c = u.dot(&q);
                    q.scaled_add(-c, u);
                }
            }
            let nq = q.dot(&q).sqrt();
            if norm0 > T::zero() && nq > T::epsilon().sqrt() * norm0 {
                q.mapv_inplace(|v| v / nq);
                basis.push(q);
            }
        }
        let mut u = Array2::zeros((n, basis.len()));
        for (k, q) in basis.iter().enumerate() {
            u.column_mut(k).assign(q);
        }
        let mut atu = Array2::zeros((a.dim().1, basis.len()));
        for (k, q) in basis.iter().enumerate() {
            a.adjoint_into(atu.column_mut(k), q.view());
        }
        Self { idx, u, atu }
    }

    /// `v ← v − U Uᵀv` and, for the correlations `c = Aᵀv·f` held by the caller (any factor
    /// `f`, e.g. `1/n`), `c ← c − f·AᵀU Uᵀv`, with `cⱼ = 0` exactly on the unpenalized columns
    /// (zero up to rounding after the projection).
    pub(crate) fn project(&self, v: &mut Array1<T>, c: &mut Array1<T>, f: T) {
        let coef = self.u.t().dot(v);
        for (k, &ck) in coef.iter().enumerate() {
            v.scaled_add(-ck, &self.u.column(k));
            c.scaled_add(-ck * f, &self.atu.column(k));
        }
        for &j in &self.idx {
            c[j] = T::zero();
        }
    }
}

impl<T: Real> LassoProblem<T> {
    /// Validates and builds the problem with a dense design.
    pub fn new(a: Array2<T>, b: Array1<T>, lambda: T, penalty: LassoPenalty<T>) -> Result<Self> {
        Self::with_design(Design::from(a), b, lambda, penalty)
    }

    /// Validates and builds the problem with a dense or sparse design
    /// (`Design::from(csr_matrix)`).
    pub fn with_design(
        a: Design<T>,
        b: Array1<T>,
        lambda: T,
        penalty: LassoPenalty<T>,
    ) -> Result<Self> {
        let p = a.dim().1;
        a.view()
            .check("LassoProblem", b.view(), "b (one entry per row of A)")?;
        check_nonnegative("lambda", lambda)?;
        let w = resolve_weights(p, &penalty)?;
        let unpenalized = unpenalized_of(a.view(), &penalty, &w);
        Ok(Self {
            a,
            b,
            lambda,
            penalty,
            w,
            unpenalized,
        })
    }

    /// The projector of the unpenalized columns, if any (see [`Unpenalized`]).
    pub(crate) fn unpenalized(&self) -> Option<&Unpenalized<T>> {
        self.unpenalized.as_ref()
    }

    /// `λ_max`: the smallest `λ` for which `x = 0` is optimal (`a`: a dense view, a
    /// [`CsrMatrix`](crate::ops::CsrMatrix) or a [`Design`]).
    pub fn lambda_max<'d>(
        a: impl Into<DesignRef<'d, T>>,
        b: ArrayView1<'_, T>,
        penalty: &LassoPenalty<T>,
    ) -> Result<T> {
        let a: DesignRef<'d, T> = a.into();
        a.check("LassoProblem::lambda_max", b, "b (one entry per row of A)")?;
        let w = resolve_weights(a.dim().1, penalty)?;
        let n = T::c(a.dim().0 as f64);
        let mut atb = a.adjoint(b).mapv(|v| v / n);
        if let Some(z) = unpenalized_of(a, penalty, &w) {
            // With unpenalized columns the solution at λ_max fits them alone: the correlations
            // of the residual of that fit decide.
            z.project(&mut b.to_owned(), &mut atb, T::one() / n);
        }
        Ok(dual_norm_unit(penalty, &w, atb.view()))
    }

    /// The design matrix when it is dense (`None` for a sparse design: see [`Self::design`]).
    pub fn a(&self) -> Option<ArrayView2<'_, T>> {
        self.a.dense()
    }
    /// The design, dense or sparse.
    pub fn design(&self) -> &Design<T> {
        &self.a
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
        self.a.dim().0
    }
    /// Number of features `p`.
    pub fn n_features(&self) -> usize {
        self.a.dim().1
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
    pub fn smooth_part(&self) -> Result<LeastSquares<T, Design<T>>> {
        let s = T::one() / T::c(self.n_samples() as f64).sqrt();
        LeastSquares::new(self.a.scaled(s), self.b.mapv(|v| v * s))
    }

    /// Residual `b − Ax`.
    pub fn residual(&self, x: ArrayView1<'_, T>) -> Result<Array1<T>> {
        check_len("LassoProblem", "x", self.n_features(), x.len())?;
        let ax = self.a.view().apply(x);
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
        let atth = self.a.view().adjoint(r.mapv(|v| v / n).view());
        let (gap, scale, _, projected) = self.gap_from_correlations(x, r, atth)?;
        let r = projected.as_ref().map_or(r, |v| v.view());
        Ok((gap, r.mapv(|v| v * scale / n)))
    }

    /// The gap of [`Self::duality_gap_with_residual`] from the correlations `Aᵀr/n` computed by
    /// the caller (coordinate descent reads its contiguous columns): `(gap, s, Aᵀθ, r̃)` with
    /// `θ = s·r̃/n`, `r̃` the residual projected off the unpenalized columns when there are any
    /// (`None`: `r̃ = r`).
    #[allow(clippy::type_complexity)]
    pub(crate) fn gap_from_correlations(
        &self,
        x: ArrayView1<'_, T>,
        r: ArrayView1<'_, T>,
        mut atth: Array1<T>,
    ) -> Result<(T, T, Array1<T>, Option<Array1<T>>)> {
        let n = T::c(self.n_samples() as f64);
        let projected = self.unpenalized().map(|z| {
            let mut v = r.to_owned();
            z.project(&mut v, &mut atth, T::one() / n);
            v
        });
        let mut scale = T::one();
        if !matches!(self.penalty, LassoPenalty::ElasticNet { alpha } if alpha < T::one()) {
            let dn = dual_norm_unit(&self.penalty, &self.w, atth.view());
            if dn > self.lambda {
                scale = self.lambda / dn;
                atth.mapv_inplace(|v| v * scale);
            }
        }
        let conj = self.penalty_function()?.conj_value(atth.view())?;
        let primal = self.objective_with_residual(x, r)?;
        let rd = projected.as_ref().map_or(r, |v| v.view());
        let gap = gap_from_residual(primal, rd, self.b.view(), scale, n, conj);
        Ok((gap, scale, atth, projected))
    }

    /// Duality gap `P(x) − D(θ(x))`.
    pub fn duality_gap(&self, x: ArrayView1<'_, T>) -> Result<T> {
        let r = self.residual(x)?;
        Ok(self.duality_gap_with_residual(x, r.view())?.0)
    }
}

/// The per-feature (ℓ1, elastic net) or per-group weights of `penalty`, validated.
fn resolve_weights<T: Real>(p: usize, penalty: &LassoPenalty<T>) -> Result<Array1<T>> {
    Ok(match &penalty {
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
    })
}

/// The projector of the unpenalized columns (`wⱼ = 0`, weighted ℓ1 only), if any.
fn unpenalized_of<T: Real>(
    a: DesignRef<'_, T>,
    penalty: &LassoPenalty<T>,
    w: &Array1<T>,
) -> Option<Unpenalized<T>> {
    let zero: Vec<usize> = match penalty {
        LassoPenalty::L1 { .. } => (0..w.len()).filter(|&j| w[j] == T::zero()).collect(),
        _ => Vec::new(),
    };
    (!zero.is_empty()).then(|| Unpenalized::new(a, zero))
}

/// `max` over features/groups of `|vⱼ|/(α wⱼ)` or `‖v_g‖/w_g` (the dual norm of the penalty at
/// `λ = 1`).
fn dual_norm_unit<T: Real>(penalty: &LassoPenalty<T>, w: &Array1<T>, v: ArrayView1<'_, T>) -> T {
    let mut m = T::zero();
    match penalty {
        LassoPenalty::L1 { .. } => {
            for (j, &vj) in v.iter().enumerate() {
                if w[j] > T::zero() {
                    m = m.max(vj.abs() / w[j]);
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
                m = m.max(nr / w[g]);
            }
        }
    }
    m
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
