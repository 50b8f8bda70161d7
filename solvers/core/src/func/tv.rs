//! Total variation (with its prox by a dual solver) and smoothed total variation.

use super::fgp::{fgp_iterations, CpuFgp};
use super::{check_arg, check_prox_args, Function, Properties, Prox, Smooth};
use crate::error::{Error, Result};
use crate::linalg::{check_len, check_nonnegative, Real};
use crate::ops::{Gradient2d, LinearOperator};
use ndarray::{Array1, ArrayView1, ArrayViewMut1};
use rayon::prelude::*;
use std::sync::Mutex;

/// Isotropic (`Σ_pixels ‖(∇x)_p‖₂`) or anisotropic (`‖∇x‖₁`) coupling of the two differences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TvKind {
    /// `Σ_p √((D_h x)_p² + (D_v x)_p²)`.
    Isotropic,
    /// `Σ_p |(D_h x)_p| + |(D_v x)_p|`.
    Anisotropic,
}

/// Total variation `f(x) = λ·TV(x)` of a row-major `h × w` image, with the forward-difference,
/// Neumann-boundary gradient of [`Gradient2d`].
///
/// **Prox.** `prox_{γf}(v) = argmin_x ½‖x − v‖² + μ‖∇x‖` (`μ = γλ`) is computed by the fast
/// gradient projection (FGP) method on the dual `min_{‖q_p‖ ≤ μ} ½‖v − ∇ᵀq‖²`, primal
/// `x = v − ∇ᵀq`, step `1/8` (`‖∇‖² ≤ 8`), warm-started from the previous call. It stops on a
/// **certified** distance: the duality gap `G = μ‖∇x‖ − ⟨q, ∇x⟩ ≥ 0` bounds the error of the
/// 1-strongly convex primal, `‖x − x*‖ ≤ √(2G)`; the iteration ends when `√(2G) ≤ tol`
/// (default `tol = 1e-6`, at most `max_iters = 20 000` iterations, then
/// [`Error::NotConverged`]). For `μ ≥ λ̂(v)` ([`TotalVariation::constant_threshold`], a
/// closed-form bound on the `λ_max` above which the answer is the constant mean image) the prox
/// returns that constant with a closed-form dual certificate and no iteration.
///
/// # References
/// L. I. Rudin, S. Osher, E. Fatemi, "Nonlinear total variation based noise removal algorithms",
/// Physica D 60 (1992); A. Beck, M. Teboulle, "Fast gradient-based algorithms for constrained
/// total variation image denoising and deblurring problems", IEEE TIP 18 (2009).
pub struct TotalVariation<T: Real> {
    pub(super) grad: Gradient2d,
    lambda: T,
    pub(super) kind: TvKind,
    tol: T,
    max_iters: usize,
    warm: Mutex<Option<Array1<T>>>,
}

/// Result of [`TotalVariation::prox_certified`].
#[derive(Clone, Debug)]
pub struct TvProx<T> {
    /// The primal point (the prox).
    pub x: Array1<T>,
    /// The dual variable `q` (`‖q_p‖ ≤ μ`), with `x = v − ∇ᵀq`.
    pub q: Array1<T>,
    /// Final duality gap `G`.
    pub gap: T,
    /// FGP iterations used.
    pub iterations: usize,
}

impl<T: Real> TotalVariation<T> {
    /// `λ·TV` on `h × w` images.
    pub fn new(h: usize, w: usize, lambda: T, kind: TvKind) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        Ok(Self {
            grad: Gradient2d::new(h, w)?,
            lambda,
            kind,
            tol: T::c(1e-6),
            max_iters: 20_000,
            warm: Mutex::new(None),
        })
    }
    /// Sets the certified accuracy `‖x − x*‖ ≤ tol` of the prox and the iteration cap.
    pub fn with_tolerance(mut self, tol: T, max_iters: usize) -> Result<Self> {
        if !(tol > T::zero()) {
            return Err(Error::param("tol", tol, "must be > 0"));
        }
        self.tol = tol;
        self.max_iters = max_iters;
        Ok(self)
    }
    pub(super) fn n(&self) -> usize {
        let (h, w) = self.grad.grid();
        h * w
    }
    /// `(h, w, λ, kind, max_iters)`, for the device backend.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn setup(&self) -> (usize, usize, T, TvKind, usize) {
        let (h, w) = self.grad.grid();
        (h, w, self.lambda, self.kind, self.max_iters)
    }
    /// `Σ_p ‖g_p‖` for a stacked gradient `g` (isotropic or anisotropic).
    pub(super) fn coupled_norm(&self, g: ArrayView1<'_, T>) -> T {
        let n = self.n();
        match self.kind {
            TvKind::Isotropic => (0..n)
                .map(|p| (g[p] * g[p] + g[n + p] * g[n + p]).sqrt())
                .sum(),
            TvKind::Anisotropic => g.iter().map(|v| v.abs()).sum(),
        }
    }
    /// A bound `λ̂(v) ≥ λ_max(v)` above which the ROF solution is the constant image: for
    /// `μ ≥ λ̂(v)`, `argmin_x ½‖x − v‖² + μ‖∇x‖ = v̄·1` (`v̄` the mean of `v`).
    ///
    /// The constant `v̄·1` is optimal iff some dual point `q` with `‖q_p‖ ≤ μ` (per pixel:
    /// 2-norm isotropic, ∞-norm anisotropic) has `∇ᵀq = v − v̄`, so `λ_max = min{max_p ‖q_p‖ :
    /// ∇ᵀq = v − v̄}`. Two such `q` are known in closed form by cumulative sums (rows first:
    /// each row's deviations from its mean carried by horizontal differences, the row means'
    /// deviations by vertical ones; or columns first); `λ̂` is the smaller of their maxima,
    /// computed in two passes over `v` without allocating an image. It is exact in 1-D
    /// (`h = 1` or `w = 1`).
    pub fn constant_threshold(&self, v: ArrayView1<'_, T>) -> Result<T> {
        check_arg("TotalVariation::constant_threshold", "v", self.dim(), v)?;
        let v = v.as_standard_layout();
        let vs = v.as_slice().unwrap_or(&[]);
        let mean = Self::mean(vs);
        Ok(self
            .constant_dual(vs, mean, false, None)
            .min(self.constant_dual(vs, mean, true, None)))
    }

    /// The mean of `v`, summed in order: [`Self::constant_threshold`] and
    /// [`Self::constant_solution`] must get the same bits, so that `μ = λ̂(v)` takes the
    /// closed form.
    fn mean(v: &[T]) -> T {
        v.iter().copied().sum::<T>() / T::c(v.len() as f64)
    }

    /// The closed-form dual point of [`Self::constant_threshold`] (rows first, or columns first
    /// if `cols_first`) for `v` of mean `mean`: returns `max_p ‖q_p‖` and, if `q` is given
    /// (length `2n`), writes `q`.
    fn constant_dual(&self, v: &[T], mean: T, cols_first: bool, mut q: Option<&mut [T]>) -> T {
        let (h, w) = self.grad.grid();
        let n = h * w;
        let coupled = |a: T, b: T| match self.kind {
            TvKind::Isotropic => (a * a + b * b).sqrt(),
            TvKind::Anisotropic => a.abs().max(b.abs()),
        };
        let mut bound = T::zero();
        let mut put = |p: usize, qh: T, qv: T, bound: &mut T| {
            *bound = bound.max(coupled(qh, qv));
            if let Some(q) = q.as_deref_mut() {
                q[p] = qh;
                q[n + p] = qv;
            }
        };
        if !cols_first {
            // q_h(i, j) = −Σ_{k≤j} (v_ik − r_i), q_v(i, ·) = −Σ_{k≤i} (r_k − v̄), r_i the row mean.
            let mut sv = T::zero();
            for i in 0..h {
                let row = &v[i * w..(i + 1) * w];
                let r = row.iter().copied().sum::<T>() / T::c(w as f64);
                sv += r - mean;
                let qv = if i + 1 < h { -sv } else { T::zero() };
                let mut sh = T::zero();
                for (j, &vij) in row.iter().enumerate() {
                    sh += vij - r;
                    let qh = if j + 1 < w { -sh } else { T::zero() };
                    put(i * w + j, qh, qv, &mut bound);
                }
            }
        } else {
            // q_v(i, j) = −Σ_{k≤i} (v_kj − c_j), q_h(·, j) = −Σ_{k≤j} (c_k − v̄), c_j the column mean.
            let mut c = vec![T::zero(); w];
            for row in v.chunks_exact(w) {
                for (cj, &vij) in c.iter_mut().zip(row) {
                    *cj += vij;
                }
            }
            let mut qh_col = vec![T::zero(); w];
            let mut sh = T::zero();
            for j in 0..w {
                c[j] /= T::c(h as f64);
                sh += c[j] - mean;
                qh_col[j] = if j + 1 < w { -sh } else { T::zero() };
            }
            let mut sv = vec![T::zero(); w];
            for i in 0..h {
                for j in 0..w {
                    sv[j] += v[i * w + j] - c[j];
                    let qv = if i + 1 < h { -sv[j] } else { T::zero() };
                    put(i * w + j, qh_col[j], qv, &mut bound);
                }
            }
        }
        bound
    }

    /// For `μ ≥ λ̂(v)` ([`Self::constant_threshold`]): the constant solution `v̄·1`, its dual
    /// point and its duality gap `P(v̄) − D(q) = v̄·Σeᵢ + ½‖e‖²` with `e = v − ∇ᵀq − v̄` (zero
    /// in exact arithmetic; computed from the rounding residual `e`, so it stays small for any
    /// `μ`, even `10³⁰⁰`). `None` for `μ < λ̂(v)`.
    pub(crate) fn constant_solution(
        &self,
        v: &Array1<T>,
        mu: T,
    ) -> Option<(Array1<T>, Array1<T>, T, T)> {
        let vs = v.as_slice()?;
        let n = self.n();
        let mean = Self::mean(vs);
        // Rows first; the columns-first bound only if that one is not enough.
        let cols_first = if mu >= self.constant_dual(vs, mean, false, None) {
            false
        } else if mu >= self.constant_dual(vs, mean, true, None) {
            true
        } else {
            return None;
        };
        let mut q = Array1::zeros(2 * n);
        self.constant_dual(vs, mean, cols_first, q.as_slice_mut());
        let mut e = Array1::zeros(n);
        self.grad.adjoint_unchecked(e.view_mut(), q.view());
        let (mut sum_e, mut sq_e, mut primal) = (T::zero(), T::zero(), T::zero());
        for (ei, &vi) in e.iter_mut().zip(v) {
            *ei = vi - *ei - mean;
            sum_e += *ei;
            sq_e += *ei * *ei;
            primal += (vi - mean) * (vi - mean);
        }
        let gap = (mean * sum_e + T::c(0.5) * sq_e).max(T::zero());
        Some((Array1::from_elem(n, mean), q, gap, T::c(0.5) * primal))
    }

    /// Projects `q` onto `{‖q_p‖ ≤ mu}`.
    fn project(&self, q: &mut Array1<T>, mu: T) {
        let n = self.n();
        match self.kind {
            TvKind::Isotropic => {
                for p in 0..n {
                    let nr = (q[p] * q[p] + q[n + p] * q[n + p]).sqrt();
                    if nr > mu {
                        let s = mu / nr;
                        q[p] *= s;
                        q[n + p] *= s;
                    }
                }
            }
            TvKind::Anisotropic => q.mapv_inplace(|v| v.max(-mu).min(mu)),
        }
    }

    /// The prox with its certificate: primal point, dual variable, final gap, iterations.
    /// Stops when `√(2G) ≤ tol` (certified distance to the exact prox).
    pub fn prox_certified(&self, v: ArrayView1<'_, T>, gamma: T) -> Result<TvProx<T>> {
        let tol2 = T::c(0.5) * self.tol * self.tol;
        self.fgp(v, gamma, |gap, _| gap <= tol2)
    }

    /// Solves the ROF problem `min_x ½‖x − v‖² + λ·TV(x)` (the prox with `γ = 1`) to a
    /// certified **relative objective error**: stops when `G ≤ rel_tol·(P(x) − G)`, which
    /// implies `(P(x) − P*)/P* ≤ rel_tol`.
    pub fn solve_rof(&self, v: ArrayView1<'_, T>, rel_tol: T) -> Result<TvProx<T>> {
        if !(rel_tol > T::zero()) {
            return Err(Error::param(
                "tol",
                rel_tol,
                "the relative tolerance must be > 0",
            ));
        }
        self.fgp(v, T::one(), |gap, primal| {
            gap <= rel_tol * (primal - gap).max(T::zero())
        })
    }

    /// The primal value `½‖x − v‖² + μ·TV(x)` given `x − v` and `∇x`.
    pub(super) fn rof_primal(&self, xmv: T, g: ArrayView1<'_, T>, mu: T) -> T {
        T::c(0.5) * xmv + mu * self.coupled_norm(g)
    }

    /// FGP on the dual of `min_x ½‖x − v‖² + γλ·TV(x)` until `stop(gap, primal)`: the loop
    /// of [`fgp_iterations`] with the CPU kernels.
    fn fgp(
        &self,
        v: ArrayView1<'_, T>,
        gamma: T,
        stop: impl Fn(T, T) -> bool + Sync,
    ) -> Result<TvProx<T>> {
        let n = self.n();
        check_prox_args("TotalVariation", Some(n), n, v, gamma)?;
        let mu = gamma * self.lambda;
        let v = v.to_owned();
        let mut x = v.clone();
        let mut q = Array1::zeros(2 * n);
        if mu == T::zero() {
            return Ok(TvProx {
                x,
                q,
                gap: T::zero(),
                iterations: 0,
            });
        }
        if let Some((xc, qc, gap, primal)) = self.constant_solution(&v, mu) {
            // μ ≥ λ̂(v): the constant image, certified by a closed-form dual point (no FGP
            // iteration; FGP would need ~μ/‖v‖ iterations and overflows for huge μ). If
            // rounding keeps the gap above the tolerance, FGP continues from that dual point.
            if stop(gap, primal) {
                *self.warm.lock().unwrap_or_else(|e| e.into_inner()) = Some(qc.clone());
                return Ok(TvProx {
                    x: xc,
                    q: qc,
                    gap,
                    iterations: 0,
                });
            }
            q.assign(&qc);
        } else if let Some(w) = self.warm.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if w.len() == 2 * n {
                q.assign(w);
                self.project(&mut q, mu);
            }
        }
        let mut kernels = CpuFgp::new(self);
        let parallel = kernels.parallel();
        let mut run =
            || fgp_iterations(&mut kernels, &v, mu, &mut x, &mut q, self.max_iters, &stop);
        let out = if parallel {
            // Run the loop on a rayon worker: the band sweep's `join`s then go through the
            // worker's own deque, and the iterations allocate nothing.
            rayon::scope(|_| run())
        } else {
            run()
        };
        if !out.converged {
            return Err(Error::NotConverged {
                method: "TotalVariation prox (FGP dual solver)".into(),
                iterations: self.max_iters,
                residual: (T::c(2.0) * out.gap).sqrt().as_f64(),
                tol: self.tol.as_f64(),
            });
        }
        *self.warm.lock().unwrap_or_else(|e| e.into_inner()) = Some(q.clone());
        Ok(TvProx {
            x,
            q,
            gap: out.gap,
            iterations: out.iterations,
        })
    }
}

impl<T: Real> Function<T> for TotalVariation<T> {
    fn name(&self) -> String {
        let (h, w) = self.grad.grid();
        format!("TotalVariation({h}x{w}, {:?})", self.kind)
    }
    fn dim(&self) -> Option<usize> {
        Some(self.n())
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("TotalVariation", "x", self.dim(), x)?;
        let g = self.grad.apply(x)?;
        Ok(self.lambda * self.coupled_norm(g.view()))
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: true,
            ..Default::default()
        }
    }
}

impl<T: Real> Prox<T> for TotalVariation<T> {
    fn prox_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        gamma: T,
    ) -> Result<()> {
        check_len("TotalVariation::prox", "out", x.len(), out.len())?;
        let r = self.prox_certified(x, gamma)?;
        out.assign(&r.x);
        Ok(())
    }
}

/// Which finite differences smoothed TV sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TvBoundary {
    /// The differences of [`Gradient2d`] (Neumann: the image is continued by its border, so the
    /// differences leaving it are 0 and each still adds `φ_ν(0) = ν`).
    Neumann,
    /// Only differences between two pixels of the image (the MAID paper's TV learning):
    /// anisotropic TV sums `h(w − 1) + (h − 1)w` terms; isotropic TV treats a missing
    /// difference as 0 and drops the corner pixel that has none.
    Interior,
}

/// Smoothed total variation, a smooth (Charbonnier-type) surrogate of TV, of one `h × w`
/// image or of a batch of `images` stacked row-major images:
/// * isotropic: `f(x) = λ Σ_p √((D_h x)_p² + (D_v x)_p² + ν²)`;
/// * anisotropic: `f(x) = λ Σ_p √((D_h x)_p² + ν²) + √((D_v x)_p² + ν²)`
///   (the form used for TV parameter learning in the MAID paper);
///
/// summed over the images, with forward differences and the [`TvBoundary`] (default Neumann).
///
/// `∇f = λDᵀ(g/s)` with `g = Dx`, `s` the per-pixel (or per-difference) root; the Hessian is
/// `λDᵀ B D` with `B_p = I/s_p − g_p g_pᵀ/s_p³` (isotropic) or `ν²/s³` (anisotropic), and
/// `L = 8λ/ν`. For hyperparameter learning, [`SmoothedTv::log_param_dots`] and
/// [`SmoothedTv::log_param_gradients`] give the derivatives of `∇f` with respect to
/// `log λ` (`∇f` itself) and `log ν` (`−λDᵀ(ν² g/s³)`).
///
/// Every evaluation is one fused pass over the pixels (no temporary `Dx`), images in parallel.
///
/// # References
/// C. R. Vogel, M. E. Oman, "Iterative methods for total variation denoising", SIAM J. Sci.
/// Comput. 17 (1996); M. S. Salehi, S. Mukherjee, L. Roberts, M. J. Ehrhardt, "An adaptively
/// inexact first-order method for bilevel optimization with application to hyperparameter
/// learning", SIAM J. Math. Data Sci. (2025) (the anisotropic form).
#[derive(Clone, Debug)]
pub struct SmoothedTv<T: Real> {
    h: usize,
    w: usize,
    images: usize,
    lambda: T,
    nu: T,
    kind: TvKind,
    boundary: TvBoundary,
}

impl<T: Real> SmoothedTv<T> {
    /// Smoothed TV on one `h × w` image with smoothing `ν > 0` and Neumann boundary.
    pub fn new(h: usize, w: usize, lambda: T, nu: T, kind: TvKind) -> Result<Self> {
        check_nonnegative("lambda", lambda)?;
        if !(nu > T::zero() && nu.is_finite()) {
            return Err(Error::param(
                "nu",
                nu,
                "the smoothing must be finite and > 0",
            ));
        }
        Gradient2d::new(h, w)?; // the same size checks
        Ok(Self {
            h,
            w,
            images: 1,
            lambda,
            nu,
            kind,
            boundary: TvBoundary::Neumann,
        })
    }

    /// Sets which differences are summed.
    pub fn with_boundary(mut self, boundary: TvBoundary) -> Self {
        self.boundary = boundary;
        self
    }

    /// A batch of `images ≥ 1` stacked images: `f` is the sum over them.
    pub fn with_images(mut self, images: usize) -> Result<Self> {
        if images == 0 {
            return Err(Error::param("images", 0, "pass at least one image"));
        }
        self.images = images;
        Ok(self)
    }

    fn n(&self) -> usize {
        self.h * self.w
    }

    /// Calls `f(a, b, t = x[b] − x[a])` for every summed difference of one image: horizontal
    /// ones row by row, then vertical ones (anisotropic order).
    #[inline]
    fn for_pairs(&self, x: &[T], mut f: impl FnMut(usize, usize, T)) {
        let (h, w) = (self.h, self.w);
        for r in 0..h {
            for c in 0..w - 1 {
                let a = r * w + c;
                f(a, a + 1, x[a + 1] - x[a]);
            }
        }
        for r in 0..h - 1 {
            for c in 0..w {
                let a = r * w + c;
                f(a, a + w, x[a + w] - x[a]);
            }
        }
    }

    /// Calls `f(p, dh, dv)` for every summed pixel of one image (isotropic), with the missing
    /// differences 0 and `None` for their neighbours.
    #[inline]
    fn for_pixels(
        &self,
        x: &[T],
        mut f: impl FnMut(usize, Option<(usize, T)>, Option<(usize, T)>),
    ) {
        let (h, w) = (self.h, self.w);
        for r in 0..h {
            for c in 0..w {
                let p = r * w + c;
                let right = (c + 1 < w).then(|| (p + 1, x[p + 1] - x[p]));
                let down = (r + 1 < h).then(|| (p + w, x[p + w] - x[p]));
                if right.is_none() && down.is_none() && self.boundary == TvBoundary::Interior {
                    continue;
                }
                f(p, right, down);
            }
        }
    }

    /// Differences that leave the image and still count (`φ_ν(0) = ν` each, anisotropic).
    fn neumann_terms(&self) -> usize {
        match self.boundary {
            TvBoundary::Neumann => self.h + self.w,
            TvBoundary::Interior => 0,
        }
    }

    /// `f` of one image.
    pub fn image_value(&self, x: &[T]) -> T {
        let nu2 = self.nu * self.nu;
        let mut s = T::zero();
        match self.kind {
            TvKind::Anisotropic => {
                self.for_pairs(x, |_, _, t| s += (t * t + nu2).sqrt());
                s += T::from_usize(self.neumann_terms()).unwrap_or_default() * self.nu;
            }
            TvKind::Isotropic => self.for_pixels(x, |_, r, d| {
                let (dh, dv) = (r.map_or(T::zero(), |q| q.1), d.map_or(T::zero(), |q| q.1));
                s += (dh * dh + dv * dv + nu2).sqrt();
            }),
        }
        self.lambda * s
    }

    /// `out += scale·∇f(x)` for one image.
    pub fn image_gradient_add(&self, out: &mut [T], x: &[T], scale: T) {
        let s = self.lambda * scale;
        let nu2 = self.nu * self.nu;
        match self.kind {
            TvKind::Anisotropic => self.for_pairs(x, |a, b, t| {
                let d = s * t / (t * t + nu2).sqrt();
                out[b] += d;
                out[a] -= d;
            }),
            TvKind::Isotropic => self.for_pixels(x, |p, r, d| {
                let (dh, dv) = (r.map_or(T::zero(), |q| q.1), d.map_or(T::zero(), |q| q.1));
                let k = s / (dh * dh + dv * dv + nu2).sqrt();
                scatter(out, p, r.map(|q| (q.0, k * dh)), d.map(|q| (q.0, k * dv)));
            }),
        }
    }

    /// `out += scale·∇²f(x)v` for one image.
    pub fn image_hvp_add(&self, out: &mut [T], x: &[T], v: &[T], scale: T) {
        let nu2 = self.nu * self.nu;
        match self.kind {
            TvKind::Anisotropic => {
                let s = self.lambda * scale * self.nu * self.nu;
                self.for_pairs(x, |a, b, t| {
                    let r2 = t * t + nu2;
                    let d = s / (r2 * r2.sqrt()) * (v[b] - v[a]);
                    out[b] += d;
                    out[a] -= d;
                })
            }
            TvKind::Isotropic => {
                let s = self.lambda * scale;
                self.for_pixels(x, |p, r, d| {
                    let (g1, g2) = (r.map_or(T::zero(), |q| q.1), d.map_or(T::zero(), |q| q.1));
                    let d1 = r.map_or(T::zero(), |q| v[q.0] - v[p]);
                    let d2 = d.map_or(T::zero(), |q| v[q.0] - v[p]);
                    let sq = (g1 * g1 + g2 * g2 + nu2).sqrt();
                    let c = (g1 * d1 + g2 * d2) / (sq * sq * sq);
                    let (b1, b2) = (s * (d1 / sq - c * g1), s * (d2 / sq - c * g2));
                    scatter(out, p, r.map(|q| (q.0, b1)), d.map(|q| (q.0, b2)));
                })
            }
        }
    }

    /// Per difference (anisotropic) or pixel (isotropic): the flux `g/s` and its `ν∂_ν`,
    /// `−ν² g/s³`, handed to `f(p, right, down, (c₁, c₂))` as weights of `dh` and `dv`.
    fn for_log_param_weights(&self, x: &[T], mut f: impl FnMut(usize, usize, T, T, T)) {
        let nu2 = self.nu * self.nu;
        match self.kind {
            TvKind::Anisotropic => self.for_pairs(x, |a, b, t| {
                let r2 = t * t + nu2;
                let r = r2.sqrt();
                f(a, b, t, T::one() / r, -nu2 / (r2 * r));
            }),
            TvKind::Isotropic => self.for_pixels(x, |p, r, d| {
                let (dh, dv) = (r.map_or(T::zero(), |q| q.1), d.map_or(T::zero(), |q| q.1));
                let s2 = dh * dh + dv * dv + nu2;
                let sq = s2.sqrt();
                let (w1, w2) = (T::one() / sq, -nu2 / (s2 * sq));
                if let Some((b, t)) = r {
                    f(p, b, t, w1, w2);
                }
                if let Some((b, t)) = d {
                    f(p, b, t, w1, w2);
                }
            }),
        }
    }

    /// `(⟨∂_{log λ}∇f(x), q⟩, ⟨∂_{log ν}∇f(x), q⟩)` for one image.
    pub fn image_log_param_dots(&self, x: &[T], q: &[T]) -> (T, T) {
        let (mut j1, mut j2) = (T::zero(), T::zero());
        self.for_log_param_weights(x, |a, b, t, w1, w2| {
            let dq = q[b] - q[a];
            j1 += t * w1 * dq;
            j2 += t * w2 * dq;
        });
        (self.lambda * j1, self.lambda * j2)
    }

    /// `c1 += scale·∂_{log λ}∇f(x)`, `c2 += scale·∂_{log ν}∇f(x)` for one image (the two
    /// columns of the mixed second derivative).
    pub fn image_log_param_gradients_add(&self, c1: &mut [T], c2: &mut [T], x: &[T], scale: T) {
        let s = self.lambda * scale;
        self.for_log_param_weights(x, |a, b, t, w1, w2| {
            let (d1, d2) = (s * t * w1, s * t * w2);
            c1[b] += d1;
            c1[a] -= d1;
            c2[b] += d2;
            c2[a] -= d2;
        });
    }

    /// [`SmoothedTv::image_log_param_dots`] summed over the images.
    pub fn log_param_dots(&self, x: ArrayView1<'_, T>, q: ArrayView1<'_, T>) -> Result<(T, T)> {
        check_arg("SmoothedTv::log_param_dots", "x", self.dim(), x)?;
        check_arg("SmoothedTv::log_param_dots", "q", self.dim(), q)?;
        let (xc, qc) = (x.as_standard_layout(), q.as_standard_layout());
        let (xs, qs) = (contiguous(&xc), contiguous(&qc));
        // Per image in parallel, summed in image order (the same bits for any thread count).
        let parts: Vec<(T, T)> = xs
            .par_chunks(self.n())
            .zip(qs.par_chunks(self.n()))
            .map(|(xi, qi)| self.image_log_param_dots(xi, qi))
            .collect();
        Ok(parts
            .into_iter()
            .fold((T::zero(), T::zero()), |a, b| (a.0 + b.0, a.1 + b.1)))
    }

    /// The two columns `∂_{log λ}∇f(x)` and `∂_{log ν}∇f(x)` over all images.
    pub fn log_param_gradients(&self, x: ArrayView1<'_, T>) -> Result<(Array1<T>, Array1<T>)> {
        check_arg("SmoothedTv::log_param_gradients", "x", self.dim(), x)?;
        let xc = x.as_standard_layout();
        let n = self.n();
        let mut c1 = Array1::zeros(x.len());
        let mut c2 = Array1::zeros(x.len());
        let (s1, s2) = (contiguous_mut(&mut c1), contiguous_mut(&mut c2));
        s1.par_chunks_mut(n)
            .zip(s2.par_chunks_mut(n))
            .zip(contiguous(&xc).par_chunks(n))
            .for_each(|((o1, o2), xi)| self.image_log_param_gradients_add(o1, o2, xi, T::one()));
        Ok((c1, c2))
    }
}

/// `out[p] −= a + b`, `out[right] += a`, `out[down] += b`: the adjoint of the two forward
/// differences at `p`.
#[inline]
fn scatter<T: Real>(out: &mut [T], p: usize, right: Option<(usize, T)>, down: Option<(usize, T)>) {
    if let Some((q, a)) = right {
        out[q] += a;
        out[p] -= a;
    }
    if let Some((q, b)) = down {
        out[q] += b;
        out[p] -= b;
    }
}

/// The slice of a standard-layout array (always contiguous).
fn contiguous<'a, T>(a: &'a ndarray::CowArray<'_, T, ndarray::Ix1>) -> &'a [T] {
    a.as_slice().unwrap_or(&[])
}

fn contiguous_mut<T>(a: &mut Array1<T>) -> &mut [T] {
    a.as_slice_mut().unwrap_or(&mut [])
}

impl<T: Real> Function<T> for SmoothedTv<T> {
    fn name(&self) -> String {
        format!(
            "SmoothedTv({}x{}, {:?}, {:?}, {} image(s))",
            self.h, self.w, self.kind, self.boundary, self.images
        )
    }
    fn dim(&self) -> Option<usize> {
        Some(self.n() * self.images)
    }
    fn value(&self, x: ArrayView1<'_, T>) -> Result<T> {
        check_arg("SmoothedTv", "x", self.dim(), x)?;
        let xc = x.as_standard_layout();
        let parts: Vec<T> = contiguous(&xc)
            .par_chunks(self.n())
            .map(|xi| self.image_value(xi))
            .collect();
        Ok(parts.into_iter().sum())
    }
    fn properties(&self) -> Properties {
        Properties {
            convex: true,
            smooth: true,
            ..Default::default()
        }
    }
}

impl<T: Real> Smooth<T> for SmoothedTv<T> {
    fn gradient_into(&self, mut out: ArrayViewMut1<'_, T>, x: ArrayView1<'_, T>) -> Result<()> {
        check_arg("SmoothedTv::gradient", "x", self.dim(), x)?;
        check_len("SmoothedTv::gradient", "out", x.len(), out.len())?;
        let xc = x.as_standard_layout();
        with_slice_mut(&mut out, |o| {
            o.par_chunks_mut(self.n())
                .zip(contiguous(&xc).par_chunks(self.n()))
                .for_each(|(oi, xi)| {
                    oi.fill(T::zero());
                    self.image_gradient_add(oi, xi, T::one());
                })
        });
        Ok(())
    }
    fn hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, T>,
        x: ArrayView1<'_, T>,
        v: ArrayView1<'_, T>,
    ) -> Result<()> {
        check_arg("SmoothedTv::hvp", "x", self.dim(), x)?;
        check_arg("SmoothedTv::hvp", "v", self.dim(), v)?;
        check_len("SmoothedTv::hvp", "out", x.len(), out.len())?;
        let (xc, vc) = (x.as_standard_layout(), v.as_standard_layout());
        let n = self.n();
        with_slice_mut(&mut out, |o| {
            o.par_chunks_mut(n)
                .zip(
                    contiguous(&xc)
                        .par_chunks(n)
                        .zip(contiguous(&vc).par_chunks(n)),
                )
                .for_each(|(oi, (xi, vi))| {
                    oi.fill(T::zero());
                    self.image_hvp_add(oi, xi, vi, T::one());
                })
        });
        Ok(())
    }
    fn lipschitz(&self) -> Option<T> {
        Some(T::c(8.0) * self.lambda / self.nu)
    }
}

/// Runs `f` on the slice of `out` (a copy if `out` is strided, written back).
fn with_slice_mut<T: Real>(out: &mut ArrayViewMut1<'_, T>, f: impl FnOnce(&mut [T])) {
    match out.as_slice_mut() {
        Some(s) => f(s),
        None => {
            let mut tmp = out.to_vec();
            f(&mut tmp);
            out.iter_mut().zip(tmp).for_each(|(o, t)| *o = t);
        }
    }
}

#[cfg(test)]
mod smoothed_tv_tests {
    use super::*;
    use ndarray::Array1;

    fn point(n: usize, seed: u64) -> Array1<f64> {
        Array1::from_shape_fn(n, |i| {
            ((i as u64 * 7919 + seed * 104_729) % 97) as f64 / 50.0 - 1.0
        })
    }

    /// The anisotropic interior form written out: the MAID paper's TV.
    fn plain_interior_aniso(x: &[f64], h: usize, w: usize, lam: f64, nu: f64) -> f64 {
        let mut s = 0.0;
        for r in 0..h {
            for c in 0..w {
                if c + 1 < w {
                    s += ((x[r * w + c + 1] - x[r * w + c]).powi(2) + nu * nu).sqrt();
                }
                if r + 1 < h {
                    s += ((x[(r + 1) * w + c] - x[r * w + c]).powi(2) + nu * nu).sqrt();
                }
            }
        }
        lam * s
    }

    #[test]
    fn boundaries_and_batches_sum_the_right_terms() {
        let (h, w, lam, nu) = (4, 5, 0.7, 0.2);
        let x = point(2 * h * w, 1);
        let one = |k| SmoothedTv::new(h, w, lam, nu, k).unwrap();
        let aniso_int = one(TvKind::Anisotropic).with_boundary(TvBoundary::Interior);
        let xs = x.as_slice().unwrap();
        let expect = plain_interior_aniso(&xs[..h * w], h, w, lam, nu);
        assert!((aniso_int.image_value(&xs[..h * w]) - expect).abs() < 1e-13);
        // Neumann adds φ_ν(0) = ν for each of the h + w differences leaving the image.
        let neu = one(TvKind::Anisotropic).image_value(&xs[..h * w]);
        assert!((neu - expect - lam * nu * (h + w) as f64).abs() < 1e-13);
        // Interior isotropic drops only the corner pixel (√ν² = ν).
        let iso = one(TvKind::Isotropic);
        let iso_int = one(TvKind::Isotropic).with_boundary(TvBoundary::Interior);
        let d = iso.image_value(&xs[..h * w]) - iso_int.image_value(&xs[..h * w]);
        assert!((d - lam * nu).abs() < 1e-13);
        // A batch is the sum over its images, gradients stacked.
        let batch = aniso_int.clone().with_images(2).unwrap();
        let sum = expect + plain_interior_aniso(&xs[h * w..], h, w, lam, nu);
        assert!((batch.value(x.view()).unwrap() - sum).abs() < 1e-12);
        let g = batch.gradient(x.view()).unwrap();
        let g2 = aniso_int
            .gradient(x.slice(ndarray::s![h * w..]).view())
            .unwrap();
        assert_eq!(g.slice(ndarray::s![h * w..]), g2);
        assert!(aniso_int.clone().with_images(0).is_err());
    }

    #[test]
    fn log_parameter_derivatives_match_finite_differences() {
        let (h, w, lam, nu): (usize, usize, f64, f64) = (3, 4, 0.6, 0.3);
        let x = point(2 * h * w, 2);
        let q = point(2 * h * w, 3);
        for kind in [TvKind::Isotropic, TvKind::Anisotropic] {
            for b in [TvBoundary::Neumann, TvBoundary::Interior] {
                let f = |l: f64, n: f64| {
                    SmoothedTv::new(h, w, l, n, kind)
                        .unwrap()
                        .with_boundary(b)
                        .with_images(2)
                        .unwrap()
                };
                let gq = |l: f64, n: f64| f(l, n).gradient(x.view()).unwrap().dot(&q);
                let e: f64 = 1e-6;
                let fd1 = (gq(lam * e.exp(), nu) - gq(lam * (-e).exp(), nu)) / (2.0 * e);
                let fd2 = (gq(lam, nu * e.exp()) - gq(lam, nu * (-e).exp())) / (2.0 * e);
                let (j1, j2) = f(lam, nu).log_param_dots(x.view(), q.view()).unwrap();
                assert!(
                    (j1 - fd1).abs() < 1e-7 * (1.0 + fd1.abs()),
                    "{kind:?} {b:?}: {j1} {fd1}"
                );
                assert!(
                    (j2 - fd2).abs() < 1e-7 * (1.0 + fd2.abs()),
                    "{kind:?} {b:?}: {j2} {fd2}"
                );
                let (c1, c2) = f(lam, nu).log_param_gradients(x.view()).unwrap();
                assert!((c1.dot(&q) - j1).abs() < 1e-12 && (c2.dot(&q) - j2).abs() < 1e-12);
            }
        }
    }
}
