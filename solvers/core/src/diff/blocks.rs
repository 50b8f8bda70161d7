//! Differentiable building blocks for unfolded algorithms (rows are samples; see
//! [`Differentiable`] for the conventions).
//!
//! | block | map (one row) | parameters |
//! |---|---|---|
//! | [`GradientStep`] | `x − α ∇f(x; c)` | `α` |
//! | [`LinearBlock`] | `K x` for any core [`LinearOperator`] | — |
//! | [`LearnedLinear`] | `W₂ x + W₁ c` | `W₂`, `W₁` (optional) |
//! | [`ResidualStep`] | `x + Wᵀ(c − A x)` (learned `W`) or `x + γ Wᵀ(c − A x)` (fixed `W`) | `W` or `γ` |
//! | [`SoftThreshold`] | `S_θ(u) = sign(u)·max(\|u\| − θ, 0)`, optional support selection | `θ` (scalar or per coordinate) |
//! | [`HardThreshold`] | `H_τ(u) = u·1[\|u\| > τ]` | `τ` |
//!
//! The threshold VJPs are the prox Jacobians of the ℓ1 and ℓ0 penalties,
//! `∂S_θ/∂u = ∂H_τ/∂u = diag(1[|u| > θ])` (almost everywhere; the same rule as
//! [`NormL1`](crate::func::NormL1)'s `prox_vjp_into`), and `∂S_θ/∂θ = −sign(u)·1[|u| > θ]`.
//! `∂H_τ/∂τ = 0` almost everywhere, so a learnable hard threshold only learns through the other
//! parameters of its layer (as in DU-IHT, where `τ = √(2αλ)` and `α` also scales the step).

use super::differentiable::{Differentiable, Saved};
use crate::error::{Error, Result};
use crate::func::{matmul, residual, BatchSmooth};
use crate::linalg::Real;
use crate::ops::LinearOperator;
use ndarray::{Array2, ArrayView2, Axis, Zip};
use std::sync::Arc;

/// Gradient step `x ↦ x − α ∇f(x; c)` with a learnable step `α` (one parameter).
/// VJP: `x̄ = ḡ − α ∇²f ḡ` (the Hessian is symmetric), `ᾱ = −Σ ⟨ḡ, ∇f(x)⟩`.
pub struct GradientStep<F: BatchSmooth> {
    f: F,
}

impl<F: BatchSmooth> GradientStep<F> {
    /// A gradient step on `f`.
    pub fn new(f: F) -> Self {
        Self { f }
    }
}

impl<F: BatchSmooth> Differentiable for GradientStep<F> {
    fn name(&self) -> String {
        format!("gradient step on {}", self.f.name())
    }
    fn in_dim(&self) -> usize {
        self.f.dim()
    }
    fn out_dim(&self) -> usize {
        self.f.dim()
    }
    fn ctx_dim(&self) -> usize {
        self.f.ctx_dim()
    }
    fn num_params(&self) -> usize {
        1
    }
    fn forward(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let g = self.f.gradient(x, c);
        Ok(&x - &(g * p[0]))
    }
    fn vjp(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
        gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        let grad = self.f.gradient(x, c);
        gp[0] -= (&grad * &g).sum();
        let hg = self.f.hvp(x, c, g);
        Ok(&g - &(hg * p[0]))
    }
    /// `c̄ = −α (∂∇f/∂c)ᵀ ḡ`.
    fn vjp_ctx(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        Ok(self.f.grad_ctx_vjp(x, c, g)? * (-p[0]))
    }
    /// `v − α ∇²f v`.
    fn jvp(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        v: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let hv = self.f.hvp(x, c, v);
        Ok(&v - &(hv * p[0]))
    }
}

/// `x ↦ K x` row by row for any core [`LinearOperator`] (no parameters); VJP `x̄ = Kᵀ ḡ`.
pub struct LinearBlock<T: Real = f64> {
    op: Arc<dyn LinearOperator<T>>,
}

impl<T: Real> LinearBlock<T> {
    /// Wraps an operator.
    pub fn new(op: Arc<dyn LinearOperator<T>>) -> Self {
        Self { op }
    }
}

impl<T: Real> Differentiable<T> for LinearBlock<T> {
    fn name(&self) -> String {
        self.op.name()
    }
    fn in_dim(&self) -> usize {
        self.op.shape().1
    }
    fn out_dim(&self) -> usize {
        self.op.shape().0
    }
    fn num_params(&self) -> usize {
        0
    }
    fn forward(&self, _p: &[T], x: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        let mut out = Array2::zeros((x.nrows(), self.out_dim()));
        for (o, xr) in out.rows_mut().into_iter().zip(x.rows()) {
            self.op.apply_into(o, xr)?;
        }
        Ok(out)
    }
    fn vjp(
        &self,
        _p: &[T],
        x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        _gp: &mut [T],
    ) -> Result<Array2<T>> {
        let mut out = Array2::zeros((x.nrows(), self.in_dim()));
        for (o, gr) in out.rows_mut().into_iter().zip(g.rows()) {
            self.op.adjoint_into(o, gr)?;
        }
        Ok(out)
    }
    fn jvp(
        &self,
        p: &[T],
        _x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        self.forward(p, v, c)
    }
}

/// Learned affine map `x ↦ W₂ x + W₁ c` (LISTA's layer before the threshold). Parameters:
/// `W₂` (n_out × n_in, row-major) then, if the context is used, `W₁` (n_out × n_c).
/// VJP: `x̄ = W₂ᵀ ḡ`, `W̄₂ = Σ ḡ xᵀ`, `W̄₁ = Σ ḡ cᵀ`.
#[derive(Clone, Debug)]
pub struct LearnedLinear {
    n_out: usize,
    n_in: usize,
    n_ctx: usize,
}

impl LearnedLinear {
    /// Shapes; `n_ctx = 0` drops the context term.
    pub fn new(n_out: usize, n_in: usize, n_ctx: usize) -> Self {
        Self { n_out, n_in, n_ctx }
    }

    fn mats<'a, T: Real>(&self, p: &'a [T]) -> (ArrayView2<'a, T>, ArrayView2<'a, T>) {
        let k = self.n_out * self.n_in;
        let w2 = ArrayView2::from_shape((self.n_out, self.n_in), &p[..k]).expect("sized");
        let w1 = ArrayView2::from_shape((self.n_out, self.n_ctx), &p[k..]).expect("sized");
        (w2, w1)
    }
}

impl<T: Real> Differentiable<T> for LearnedLinear {
    fn name(&self) -> String {
        "learned linear".into()
    }
    fn in_dim(&self) -> usize {
        self.n_in
    }
    fn out_dim(&self) -> usize {
        self.n_out
    }
    fn ctx_dim(&self) -> usize {
        self.n_ctx
    }
    fn num_params(&self) -> usize {
        self.n_out * (self.n_in + self.n_ctx)
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        let (w2, w1) = self.mats(p);
        let mut out = matmul(x, w2.t());
        if self.n_ctx > 0 {
            T::gemm(out.view_mut(), c, w1.t(), T::one(), true);
        }
        Ok(out)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        let (w2, _) = self.mats(p);
        let k = self.n_out * self.n_in;
        let (g2, g1) = gp.split_at_mut(k);
        let mut g2 =
            ndarray::ArrayViewMut2::from_shape((self.n_out, self.n_in), g2).expect("sized");
        T::gemm(g2.view_mut(), g.t(), x, T::one(), true);
        if self.n_ctx > 0 {
            let mut g1 =
                ndarray::ArrayViewMut2::from_shape((self.n_out, self.n_ctx), g1).expect("sized");
            T::gemm(g1.view_mut(), g.t(), c, T::one(), true);
        }
        Ok(matmul(g, w2))
    }
    /// `c̄ = W₁ᵀ ḡ` (rows: `ḡ W₁`).
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let mut out = Array2::zeros((x.nrows(), c.ncols()));
        if self.n_ctx > 0 {
            let (_, w1) = self.mats(p);
            T::gemm(
                out.slice_mut(ndarray::s![.., ..self.n_ctx]),
                g,
                w1,
                T::one(),
                false,
            );
        }
        Ok(out)
    }
    /// `W₂ v`.
    fn jvp(
        &self,
        p: &[T],
        _x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let (w2, _) = self.mats(p);
        Ok(matmul(v, w2.t()))
    }
}

/// Residual step `x ↦ x + Wᵀ(c − A x)` with the measurements `c = y` and a fixed `A` (M × N).
/// Either `W` (M × N) is learned (LISTA-CP; parameters `W` row-major), or it is fixed and a
/// step `γ` is learned (`x + γ Wᵀ(c − A x)`; ALISTA, and a gradient step when `W = A`).
/// VJP with `r = c − A x`: `x̄ = ḡ − Aᵀ(W ḡ)·s`, `W̄ = Σ r ḡᵀ`, `γ̄ = Σ ⟨ḡ, Wᵀ r⟩`.
#[derive(Clone, Debug)]
pub struct ResidualStep<T: Real = f64> {
    a: Arc<Array2<T>>,
    fixed_w: Option<Arc<Array2<T>>>,
}

impl<T: Real> ResidualStep<T> {
    /// Learned `W` (the parameters; initialize e.g. with `A/L`).
    pub fn learned(a: Arc<Array2<T>>) -> Self {
        Self { a, fixed_w: None }
    }

    /// Fixed `W` with a learned step `γ`; `Err` if the shapes differ.
    pub fn scaled(a: Arc<Array2<T>>, w: Arc<Array2<T>>) -> Result<Self> {
        if a.dim() != w.dim() {
            return Err(Error::shape(
                "ResidualStep::scaled",
                "W",
                format!("{:?}", a.dim()),
                format!("{:?}", w.dim()),
            ));
        }
        Ok(Self {
            a,
            fixed_w: Some(w),
        })
    }

    fn w<'a>(&'a self, p: &'a [T]) -> (ArrayView2<'a, T>, T) {
        match &self.fixed_w {
            Some(w) => (w.view(), p[0]),
            None => (
                ArrayView2::from_shape(self.a.dim(), p).expect("sized"),
                T::one(),
            ),
        }
    }

    fn residual(&self, x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Array2<T> {
        residual(self.a.view(), x, c)
    }

    /// The VJP given the residual `r = c − A x`.
    fn pull_back(&self, p: &[T], r: &Array2<T>, g: ArrayView2<'_, T>, gp: &mut [T]) -> Array2<T> {
        let (w, s) = self.w(p);
        let wg = matmul(g, w.t()); // rows: W ḡ_b (M)
        if self.fixed_w.is_some() {
            gp[0] += (&wg * r).sum();
        } else {
            let mut gw = ndarray::ArrayViewMut2::from_shape(self.a.dim(), gp).expect("sized");
            T::gemm(gw.view_mut(), r.t(), g, T::one(), true);
        }
        let mut gx = g.to_owned();
        T::gemm(gx.view_mut(), wg.view(), self.a.view(), -s, true);
        gx
    }
}

impl<T: Real> Differentiable<T> for ResidualStep<T> {
    fn name(&self) -> String {
        if self.fixed_w.is_some() {
            "x + γWᵀ(y − Ax)".into()
        } else {
            "x + Wᵀ(y − Ax)".into()
        }
    }
    fn in_dim(&self) -> usize {
        self.a.ncols()
    }
    fn out_dim(&self) -> usize {
        self.a.ncols()
    }
    fn ctx_dim(&self) -> usize {
        self.a.nrows()
    }
    fn num_params(&self) -> usize {
        if self.fixed_w.is_some() {
            1
        } else {
            self.a.len()
        }
    }
    fn forward(&self, p: &[T], x: ArrayView2<'_, T>, c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        Ok(self.forward_save(p, x, c)?.0)
    }
    fn vjp(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        let r = self.residual(x, c);
        Ok(self.pull_back(p, &r, g, gp))
    }
    fn forward_save(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
    ) -> Result<(Array2<T>, Saved)> {
        let (w, s) = self.w(p);
        let r = self.residual(x, c);
        let mut out = x.to_owned();
        T::gemm(out.view_mut(), r.view(), w, s, true);
        Ok((out, Some(Box::new(r))))
    }
    fn vjp_saved(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        saved: &Saved,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        let Some(r) = saved.as_ref().and_then(|s| s.downcast_ref::<Array2<T>>()) else {
            return self.vjp(p, x, c, g, gp);
        };
        Ok(self.pull_back(p, r, g, gp))
    }
    /// `c̄ = s W ḡ` (rows: `s ḡ Wᵀ`).
    fn vjp_ctx(
        &self,
        p: &[T],
        x: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let (w, s) = self.w(p);
        let mut out = Array2::zeros((x.nrows(), c.ncols()));
        T::gemm(
            out.slice_mut(ndarray::s![.., ..self.a.nrows()]),
            g,
            w.t(),
            s,
            false,
        );
        Ok(out)
    }
    /// `v − s (A v) W` row by row.
    fn jvp(
        &self,
        p: &[T],
        _x: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let (w, s) = self.w(p);
        let av = matmul(v, self.a.t());
        let mut out = v.to_owned();
        T::gemm(out.view_mut(), av.view(), w, -s, true);
        Ok(out)
    }
}

/// Soft threshold `S_θ(u) = sign(u)·max(|u| − θ, 0)`, the prox of `θ‖·‖₁`, with a learnable
/// threshold (one scalar, or one per coordinate).
///
/// With *support selection* (LISTA-CPSS, ALISTA; Chen et al. 2018) the entries among the
/// `⌈frac·n⌉` largest magnitudes of each row that exceed `θ` pass unshrunk.
#[derive(Clone, Debug)]
pub struct SoftThreshold {
    n: usize,
    per_coordinate: bool,
    support: f64,
}

impl SoftThreshold {
    /// One threshold for all coordinates.
    pub fn scalar(n: usize) -> Self {
        Self {
            n,
            per_coordinate: false,
            support: 0.0,
        }
    }

    /// One threshold per coordinate.
    pub fn per_coordinate(n: usize) -> Self {
        Self {
            n,
            per_coordinate: true,
            support: 0.0,
        }
    }

    /// Support selection of the top `frac ∈ [0, 1]` fraction of magnitudes.
    pub fn with_support_selection(mut self, frac: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&frac) {
            return Err(Error::param(
                "support fraction",
                frac,
                "must lie in [0, 1] (e.g. 0.05 for 5 %)",
            ));
        }
        self.support = frac;
        Ok(self)
    }

    /// Per row: the magnitude at or above which an entry is in the selected support
    /// (`+∞` without support selection).
    fn cutoffs<T: Real>(&self, u: ArrayView2<'_, T>) -> Vec<T> {
        let k = (self.support * self.n as f64).ceil() as usize;
        if k == 0 {
            return vec![T::infinity(); u.nrows()];
        }
        let k = k.min(self.n);
        u.rows()
            .into_iter()
            .map(|r| {
                let mut a: Vec<T> = r.iter().map(|v| v.abs()).collect();
                let (_, kth, _) = a.select_nth_unstable_by(k - 1, |x, y| {
                    y.partial_cmp(x).unwrap_or(std::cmp::Ordering::Equal)
                });
                *kth
            })
            .collect()
    }

    fn theta<T: Real>(&self, p: &[T], j: usize) -> T {
        if self.per_coordinate {
            p[j]
        } else {
            p[0]
        }
    }
}

impl<T: Real> Differentiable<T> for SoftThreshold {
    fn name(&self) -> String {
        if self.support > 0.0 {
            "soft threshold with support selection".into()
        } else {
            "soft threshold".into()
        }
    }
    fn in_dim(&self) -> usize {
        self.n
    }
    fn out_dim(&self) -> usize {
        self.n
    }
    fn num_params(&self) -> usize {
        if self.per_coordinate {
            self.n
        } else {
            1
        }
    }
    fn forward(&self, p: &[T], u: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        let cut = self.cutoffs(u);
        let mut out = u.to_owned();
        for (mut row, cut) in out.rows_mut().into_iter().zip(cut) {
            for (j, v) in row.iter_mut().enumerate() {
                let th = self.theta(p, j);
                // Support selection: entries above the threshold and the cutoff pass unshrunk.
                let a = v.abs();
                if a <= th || a < cut {
                    *v = crate::func::soft_threshold(*v, th);
                }
            }
        }
        Ok(out)
    }
    fn vjp(
        &self,
        p: &[T],
        u: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        gp: &mut [T],
    ) -> Result<Array2<T>> {
        let cut = self.cutoffs(u);
        let mut gx = g.to_owned();
        for ((mut gr, ur), cut) in gx.rows_mut().into_iter().zip(u.rows()).zip(cut) {
            for (j, (gv, uv)) in gr.iter_mut().zip(ur).enumerate() {
                let th = self.theta(p, j);
                let a = uv.abs();
                if a <= th {
                    *gv = T::zero();
                } else if a < cut {
                    let k = if self.per_coordinate { j } else { 0 };
                    gp[k] -= *gv * uv.signum();
                }
            }
        }
        Ok(gx)
    }
    /// `v ⊙ 1[|u| > θ]`.
    fn jvp(
        &self,
        p: &[T],
        u: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let mut out = v.to_owned();
        for (mut orow, ur) in out.rows_mut().into_iter().zip(u.rows()) {
            for (j, (o, uv)) in orow.iter_mut().zip(ur).enumerate() {
                if uv.abs() <= self.theta(p, j) {
                    *o = T::zero();
                }
            }
        }
        Ok(out)
    }
}

/// Hard threshold `H_τ(u) = u·1[|u| > τ]`, the prox of `(τ²/2)‖·‖₀`. One parameter `τ`, whose
/// gradient is zero almost everywhere.
#[derive(Clone, Debug)]
pub struct HardThreshold {
    n: usize,
}

impl HardThreshold {
    /// On vectors of length `n`.
    pub fn new(n: usize) -> Self {
        Self { n }
    }
}

impl<T: Real> Differentiable<T> for HardThreshold {
    fn name(&self) -> String {
        "hard threshold".into()
    }
    fn in_dim(&self) -> usize {
        self.n
    }
    fn out_dim(&self) -> usize {
        self.n
    }
    fn num_params(&self) -> usize {
        1
    }
    fn forward(&self, p: &[T], u: ArrayView2<'_, T>, _c: ArrayView2<'_, T>) -> Result<Array2<T>> {
        Ok(u.mapv(|v| if v.abs() > p[0] { v } else { T::zero() }))
    }
    fn vjp(
        &self,
        p: &[T],
        u: ArrayView2<'_, T>,
        _c: ArrayView2<'_, T>,
        g: ArrayView2<'_, T>,
        _gp: &mut [T],
    ) -> Result<Array2<T>> {
        let mut gx = g.to_owned();
        Zip::from(&mut gx).and(&u).for_each(|gv, &uv| {
            if uv.abs() <= p[0] {
                *gv = T::zero()
            }
        });
        Ok(gx)
    }
    /// `v ⊙ 1[|u| > τ]` (the same mask as the VJP).
    fn jvp(
        &self,
        p: &[T],
        u: ArrayView2<'_, T>,
        c: ArrayView2<'_, T>,
        v: ArrayView2<'_, T>,
    ) -> Result<Array2<T>> {
        let mut unused = [T::zero()];
        self.vjp(p, u, c, v, &mut unused)
    }
}

/// Sum of each row (a helper for per-sample reductions).
pub fn row_sums(a: ArrayView2<'_, f64>) -> Vec<f64> {
    a.sum_axis(Axis(1)).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{check_vjp, Chain, LeastSquaresBatch, SquaredError, Unrolled};
    use crate::func::{NormL1, Prox};
    use crate::ops::DenseMatrix;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn randn(r: usize, c: usize, seed: u64) -> Array2<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((r, c), |_| StandardNormal.sample(&mut rng))
    }

    fn setup() -> (Arc<Array2<f64>>, Array2<f64>, Array2<f64>) {
        let (m, n, b) = (6, 9, 4);
        (
            Arc::new(randn(m, n, 1) / (m as f64).sqrt()),
            randn(b, n, 2),
            randn(b, m, 3),
        )
    }

    #[test]
    fn every_block_vjp_matches_finite_differences() {
        let (a, x, y) = setup();
        let (m, n) = a.dim();
        let blocks: Vec<(Box<dyn Differentiable>, Vec<f64>)> = vec![
            (
                Box::new(GradientStep::new(
                    LeastSquaresBatch::new(a.clone()).unwrap(),
                )),
                vec![0.3],
            ),
            (
                Box::new(LinearBlock::new(Arc::new(
                    DenseMatrix::new(randn(5, n, 4)).unwrap(),
                ))),
                vec![],
            ),
            (
                Box::new(LearnedLinear::new(n, n, m)),
                randn(1, n * (n + m), 5).into_raw_vec_and_offset().0,
            ),
            (
                Box::new(ResidualStep::learned(a.clone())),
                randn(1, m * n, 6).into_raw_vec_and_offset().0,
            ),
            (
                Box::new(ResidualStep::scaled(a.clone(), Arc::new(randn(m, n, 7))).unwrap()),
                vec![0.7],
            ),
            (Box::new(SoftThreshold::scalar(n)), vec![0.4]),
            (
                Box::new(SoftThreshold::per_coordinate(n)),
                randn(1, n, 8)
                    .mapv(|v| 0.5 * v.abs())
                    .into_raw_vec_and_offset()
                    .0,
            ),
            (
                Box::new(
                    SoftThreshold::scalar(n)
                        .with_support_selection(0.3)
                        .unwrap(),
                ),
                vec![0.4],
            ),
            (Box::new(HardThreshold::new(n)), vec![0.4]),
            (
                Box::new(
                    Chain::new(vec![
                        Box::new(ResidualStep::scaled(a.clone(), a.clone()).unwrap()),
                        Box::new(SoftThreshold::scalar(n)),
                        Box::new(GradientStep::new(
                            LeastSquaresBatch::new(a.clone()).unwrap(),
                        )),
                    ])
                    .unwrap(),
                ),
                vec![0.3, 0.1, 0.2],
            ),
        ];
        for (i, (b, p)) in blocks.iter().enumerate() {
            let xin = if b.in_dim() == n {
                x.clone()
            } else {
                randn(4, b.in_dim(), 9)
            };
            let err = check_vjp(b.as_ref(), p, xin.view(), y.view(), 10 + i as u64, 1e-6).unwrap();
            assert!(
                err < 1e-6,
                "block {} ({}): relative error {err:e}",
                i,
                b.name()
            );
        }
    }

    #[test]
    fn a_wrong_vjp_is_caught() {
        // A gradient step whose Hessian product is off by 1 % must fail the check.
        struct Off(LeastSquaresBatch);
        impl BatchSmooth for Off {
            fn name(&self) -> String {
                "off".into()
            }
            fn dim(&self) -> usize {
                self.0.dim()
            }
            fn ctx_dim(&self) -> usize {
                self.0.ctx_dim()
            }
            fn values(&self, x: ArrayView2<'_, f64>, c: ArrayView2<'_, f64>) -> Vec<f64> {
                self.0.values(x, c)
            }
            fn gradient(&self, x: ArrayView2<'_, f64>, c: ArrayView2<'_, f64>) -> Array2<f64> {
                self.0.gradient(x, c)
            }
            fn hvp(
                &self,
                x: ArrayView2<'_, f64>,
                c: ArrayView2<'_, f64>,
                v: ArrayView2<'_, f64>,
            ) -> Array2<f64> {
                self.0.hvp(x, c, v) * 1.01
            }
        }
        let (a, x, y) = setup();
        let b = GradientStep::new(Off(LeastSquaresBatch::new(a).unwrap()));
        let err = check_vjp(&b, &[0.8], x.view(), y.view(), 1, 1e-6).unwrap();
        assert!(err > 1e-4, "{err:e}");
    }

    #[test]
    fn soft_threshold_vjp_is_the_l1_prox_jacobian() {
        let n = 9;
        let u = randn(3, n, 11);
        let g = randn(3, n, 12);
        let st = SoftThreshold::scalar(n);
        let mut gp = [0.0];
        let gx = st
            .vjp(&[0.5], u.view(), u.view(), g.view(), &mut gp)
            .unwrap();
        let out = st.forward(&[0.5], u.view(), u.view()).unwrap();
        let l1 = NormL1::new(1.0).unwrap();
        for b in 0..3 {
            let mut want = ndarray::Array1::zeros(n);
            l1.prox_vjp_into(want.view_mut(), u.row(b), 0.5, g.row(b))
                .unwrap();
            assert_eq!(want, gx.row(b));
            assert_eq!(l1.prox(u.row(b), 0.5).unwrap(), out.row(b));
        }
    }

    #[test]
    fn unrolled_gradient_matches_finite_differences_and_chain_equals_layers() {
        let (a, x0, y) = setup();
        let n = a.ncols();
        let mk = || -> Box<dyn Differentiable> {
            Box::new(
                Chain::new(vec![
                    Box::new(GradientStep::new(
                        LeastSquaresBatch::new(a.clone()).unwrap(),
                    )),
                    Box::new(SoftThreshold::scalar(n)),
                ])
                .unwrap(),
            )
        };
        let net = Unrolled::new(vec![mk(), mk(), mk()]).unwrap();
        let p = vec![0.3, 0.05, 0.25, 0.04, 0.35, 0.03];
        let target = randn(4, n, 13);
        let (v, g) = net
            .value_and_grad(&p, x0.view(), y.view(), 3, &SquaredError, target.view())
            .unwrap();
        let h = 1e-6;
        for i in 0..p.len() {
            let (mut pp, mut pm) = (p.clone(), p.clone());
            pp[i] += h;
            pm[i] -= h;
            let f = |q: &[f64]| {
                net.value_and_grad(q, x0.view(), y.view(), 3, &SquaredError, target.view())
                    .unwrap()
                    .0
            };
            let fd = (f(&pp) - f(&pm)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "param {i}: {fd} vs {}",
                g[i]
            );
        }
        assert!(v > 0.0);
        // Depth 2 leaves the third layer's gradient at zero.
        let (_, g2) = net
            .value_and_grad(&p, x0.view(), y.view(), 2, &SquaredError, target.view())
            .unwrap();
        assert_eq!(&g2[4..], &[0.0, 0.0]);
        // Bad inputs are errors.
        assert!(net.forward(&p[..3], x0.view(), y.view(), 3).is_err());
        assert!(net.forward(&p, x0.view(), y.view(), 4).is_err());
        let mut bad = x0.clone();
        bad[[0, 0]] = f64::NAN;
        assert!(net.forward(&p, bad.view(), y.view(), 3).is_err());
        assert!(net
            .forward(&p, x0.view(), y.slice(ndarray::s![.., 1..]), 3)
            .is_err());
    }
}
