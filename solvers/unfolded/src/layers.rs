//! The two layers that are not a composition of core blocks: the DU-ISTA / DU-IHT layer (one
//! step size couples the gradient step and the threshold) and the TISTA layer (MMSE shrinkage
//! with an error-variance estimate). Each implements
//! [`Differentiable`] directly.

use hyperprox_core::diff::{matmul, residual, Differentiable, Saved, Workspace};
use hyperprox_core::error::Result;
use hyperprox_core::func::soft_threshold;
use hyperprox_core::linalg::gemm_rows;
use hyperprox_core::Real;
use ndarray::{Array2, ArrayView2, Zip};
use std::sync::Arc;

/// The penalty of the original problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Penalty {
    /// `λ‖x‖₁` (ISTA, soft threshold).
    L1,
    /// `λ‖x‖₀` (IHT, hard threshold).
    L0,
}

impl Penalty {
    /// `"l1"` / `"l0"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Penalty::L1 => "l1",
            Penalty::L0 => "l0",
        }
    }
}

/// One proximal-gradient step with a learned step size `α` (its single parameter):
///
/// - ℓ1: `x⁺ = S_{αλ}(x + α Aᵀ(y − A x))` (DU-ISTA),
/// - ℓ0: `x⁺ = H_{√(2αλ)}(x + α Aᵀ(y − A x))` (DU-IHT),
///
/// the exact proximal maps of `αλ‖·‖₁` and `αλ‖·‖₀`. With `α = 1/L` it is one iteration of
/// ISTA / IHT.
///
/// VJP with `u = x + α g`, `g = Aᵀ(y − Ax)` and `d = ḡ ⊙ 1[|u| > τ]`:
/// `x̄ = d − α AᵀA d`, `ᾱ = ⟨d, g⟩ − λ⟨ḡ, sign(u) 1[|u| > τ]⟩` (ℓ1) or `ᾱ = ⟨d, g⟩` (ℓ0; the
/// threshold's derivative is zero almost everywhere).
#[derive(Clone, Debug)]
pub struct ProxGradLayer {
    a: Arc<Array2<f64>>,
    lambda: f64,
    penalty: Penalty,
}

impl ProxGradLayer {
    /// A layer for `½‖Ax − y‖² + λ·penalty(x)`.
    pub fn new(a: Arc<Array2<f64>>, lambda: f64, penalty: Penalty) -> Self {
        Self { a, lambda, penalty }
    }

    fn threshold(&self, alpha: f64) -> f64 {
        match self.penalty {
            Penalty::L1 => alpha * self.lambda,
            Penalty::L0 => (2.0 * alpha * self.lambda).max(0.0).sqrt(),
        }
    }

    /// `(g = Aᵀ(y − Ax), u = x + α g)`.
    fn pre(
        &self,
        alpha: f64,
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
    ) -> (Array2<f64>, Array2<f64>) {
        let r = residual(self.a.view(), x, y);
        let g = matmul(r.view(), self.a.view());
        let u = &x + &(&g * alpha);
        (g, u)
    }
}

impl Differentiable for ProxGradLayer {
    fn name(&self) -> String {
        match self.penalty {
            Penalty::L1 => "ISTA step S_{αλ}(x + αAᵀ(y − Ax))".into(),
            Penalty::L0 => "IHT step H_{√(2αλ)}(x + αAᵀ(y − Ax))".into(),
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
        1
    }
    fn forward(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        Ok(self.forward_save(p, x, y)?.0)
    }
    fn vjp(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        gbar: ArrayView2<'_, f64>,
        gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        let (g, u) = self.pre(p[0], x, y);
        Ok(self.pull_back(p[0], &g, &u, gbar, gp))
    }
    /// `ȳ = α A d` (rows: `α d Aᵀ`), `d = ḡ ⊙ 1[|u| > τ]`: the measurements are the context.
    fn vjp_ctx(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        gbar: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let (_, u) = self.pre(p[0], x, y);
        let d = self.mask(p[0], &u, gbar);
        Ok(matmul(d.view(), self.a.t()) * p[0])
    }
    /// `1[|u| > τ] ⊙ (v − α AᵀA v)`.
    fn jvp(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        v: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let (_, u) = self.pre(p[0], x, y);
        let av = matmul(v, self.a.t());
        let mut w = v.to_owned();
        f64::gemm(w.view_mut(), av.view(), self.a.view(), -p[0], true);
        Ok(self.mask(p[0], &u, w.view()))
    }
    fn forward_save(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
    ) -> Result<(Array2<f64>, Saved)> {
        let (g, u) = self.pre(p[0], x, y);
        let out = self.threshold_map(p[0], u.view());
        Ok((out, Some(Box::new((g, u)))))
    }
    fn vjp_saved(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        saved: &Saved,
        gbar: ArrayView2<'_, f64>,
        gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        match saved
            .as_ref()
            .and_then(|s| s.downcast_ref::<(Array2<f64>, Array2<f64>)>())
        {
            Some((g, u)) => Ok(self.pull_back(p[0], g, u, gbar, gp)),
            None => self.vjp(p, x, y, gbar, gp),
        }
    }
    /// The same arithmetic as [`Differentiable::forward_save`], in the workspace's buffers
    /// `r = y − Axᵀ` (B × M), `g = Aᵀr` and `u = x + αg` (B × N): no allocation once they exist.
    fn forward_ws(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        ws: &mut Workspace<f64>,
        out: &mut Array2<f64>,
    ) -> Result<()> {
        let (b, m, n) = (x.nrows(), self.a.nrows(), self.a.ncols());
        if out.dim() != (b, n) {
            *out = Array2::zeros((b, n));
        }
        let alpha = p[0];
        let [r, g, u, ..] = ws.buffers(&[(b, m), (b, n), (b, n), (b, m), (b, n)]) else {
            unreachable!("five buffers were asked for")
        };
        r.assign(&y);
        gemm_rows(r.view_mut(), x, self.a.t(), -1.0, true);
        gemm_rows(g.view_mut(), r.view(), self.a.view(), 1.0, false);
        Zip::from(&mut *u)
            .and(&x)
            .and(&*g)
            .for_each(|uv, &xv, &gv| *uv = xv + gv * alpha);
        let th = self.threshold(alpha);
        let l1 = self.penalty == Penalty::L1;
        Zip::from(out).and(&*u).for_each(|o, &uv| {
            *o = if l1 {
                soft_threshold(uv, th)
            } else if uv.abs() > th {
                uv
            } else {
                0.0
            }
        });
        Ok(())
    }
    /// [`Differentiable::vjp_saved`]'s arithmetic on the buffers of
    /// [`ProxGradLayer::forward_ws`] (`ad = dA` and the product `d ⊙ g` reuse two more).
    fn vjp_ws(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        ws: &mut Workspace<f64>,
        gbar: ArrayView2<'_, f64>,
        gp: &mut [f64],
        out: &mut Array2<f64>,
    ) -> Result<()> {
        let (b, m, n) = (x.nrows(), self.a.nrows(), self.a.ncols());
        if ws.bufs.len() < 5 || ws.bufs[2].dim() != (b, n) {
            self.forward_ws(p, x, y, ws, out)?;
        }
        if out.dim() != (b, n) {
            *out = Array2::zeros((b, n));
        }
        let alpha = p[0];
        let [_, g, u, ad, prod] = ws.buffers(&[(b, m), (b, n), (b, n), (b, m), (b, n)]) else {
            unreachable!("five buffers were asked for")
        };
        let th = self.threshold(alpha);
        out.assign(&gbar);
        let mut gth = 0.0;
        Zip::from(&mut *out).and(&*u).for_each(|dv, &uv| {
            if uv.abs() > th {
                gth -= *dv * uv.signum();
            } else {
                *dv = 0.0;
            }
        });
        prod.assign(&*out);
        *prod *= &*g;
        gp[0] += prod.sum();
        if self.penalty == Penalty::L1 {
            gp[0] += self.lambda * gth;
        }
        gemm_rows(ad.view_mut(), out.view(), self.a.t(), 1.0, false);
        gemm_rows(out.view_mut(), ad.view(), self.a.view(), -alpha, true);
        Ok(())
    }
}

/// The layer on device batches, the arithmetic of [`Differentiable::forward_ws`] /
/// [`Differentiable::vjp_ws`]: `r = y − XAᵀ` and `g = RA` by two cuBLAS GEMMs, `u` and the
/// threshold by one kernel; the VJP's mask, `⟨d, g⟩` and the threshold term by one kernel
/// with its reduction, `x̄ = d − α (dAᵀ)A` by two GEMMs. `A` is copied to the device once per
/// process and shared by the layers of a model (`hyperprox_core::cuda::cached_matrix`).
#[cfg(feature = "cuda")]
impl hyperprox_core::diff::DifferentiableOn<hyperprox_core::cuda::GpuMat<f64>> for ProxGradLayer {
    fn forward_on(
        &self,
        p: &[f64],
        x: &hyperprox_core::cuda::GpuMat<f64>,
        y: &hyperprox_core::cuda::GpuMat<f64>,
        ws: &mut hyperprox_core::diff::WorkspaceOn<hyperprox_core::cuda::GpuMat<f64>>,
        out: &mut hyperprox_core::cuda::GpuMat<f64>,
    ) -> Result<()> {
        use hyperprox_core::cuda::{batch::shrink_step, cached_matrix, gemm_rows_on};
        use hyperprox_core::diff::BatchMat;
        let (b, m, n) = (x.rows(), self.a.nrows(), self.a.ncols());
        hyperprox_core::linalg::check_len("ISTA step", "parameters", 1, p.len())?;
        hyperprox_core::linalg::check_len("ISTA step", "state width", n, x.cols())?;
        if (y.rows(), y.cols()) != (b, m) {
            return Err(hyperprox_core::error::Error::shape(
                "ISTA step",
                "measurements",
                format!("{b} × {m}"),
                format!("{} × {}", y.rows(), y.cols()),
            ));
        }
        let a = cached_matrix(x.gpu(), &self.a)?;
        out.ensure_shape(b, n)?;
        let alpha = p[0];
        let [r, g, u, ..] = ws.buffers_on(x, &[(b, m), (b, n), (b, n), (b, m), (b, n)])? else {
            unreachable!("five buffers were asked for")
        };
        r.assign_from(y)?;
        gemm_rows_on(r, x, false, &a, true, -1.0, 1.0)?;
        gemm_rows_on(g, r, false, &a, false, 1.0, 0.0)?;
        shrink_step(
            out,
            u,
            x,
            g,
            alpha,
            self.threshold(alpha),
            self.penalty == Penalty::L1,
        )
    }
    fn vjp_on(
        &self,
        p: &[f64],
        x: &hyperprox_core::cuda::GpuMat<f64>,
        y: &hyperprox_core::cuda::GpuMat<f64>,
        ws: &mut hyperprox_core::diff::WorkspaceOn<hyperprox_core::cuda::GpuMat<f64>>,
        gbar: &hyperprox_core::cuda::GpuMat<f64>,
        gp: &mut [f64],
        out: &mut hyperprox_core::cuda::GpuMat<f64>,
    ) -> Result<()> {
        use hyperprox_core::cuda::{batch::shrink_pullback, cached_matrix, gemm_rows_on};
        use hyperprox_core::diff::BatchMat;
        let (b, m, n) = (x.rows(), self.a.nrows(), self.a.ncols());
        if ws.bufs.len() < 5 || ws.bufs[2].dims() != (b, n) {
            self.forward_on(p, x, y, ws, out)?;
        }
        out.ensure_shape(b, n)?;
        let a = cached_matrix(x.gpu(), &self.a)?;
        let alpha = p[0];
        let [_, g, u, ad, d] = ws.buffers_on(x, &[(b, m), (b, n), (b, n), (b, m), (b, n)])? else {
            unreachable!("five buffers were asked for")
        };
        let (dg, gth) = shrink_pullback(d, gbar, u, g, self.threshold(alpha))?;
        gp[0] += dg;
        if self.penalty == Penalty::L1 {
            gp[0] += self.lambda * gth;
        }
        gemm_rows_on(ad, d, false, &a, true, 1.0, 0.0)?;
        out.assign_from(d)?;
        gemm_rows_on(out, ad, false, &a, false, -alpha, 1.0)
    }
}

impl ProxGradLayer {
    fn threshold_map(&self, alpha: f64, u: ArrayView2<'_, f64>) -> Array2<f64> {
        let th = self.threshold(alpha);
        match self.penalty {
            Penalty::L1 => u.mapv(|v| soft_threshold(v, th)),
            Penalty::L0 => u.mapv(|v| if v.abs() > th { v } else { 0.0 }),
        }
    }

    /// The VJP from `g = Aᵀ(y − Ax)` and `u = x + αg`.
    /// `v ⊙ 1[|u| > τ]`.
    fn mask(&self, alpha: f64, u: &Array2<f64>, v: ArrayView2<'_, f64>) -> Array2<f64> {
        let th = self.threshold(alpha);
        let mut d = v.to_owned();
        Zip::from(&mut d).and(u).for_each(|dv, &uv| {
            if uv.abs() <= th {
                *dv = 0.0
            }
        });
        d
    }

    fn pull_back(
        &self,
        alpha: f64,
        g: &Array2<f64>,
        u: &Array2<f64>,
        gbar: ArrayView2<'_, f64>,
        gp: &mut [f64],
    ) -> Array2<f64> {
        let th = self.threshold(alpha);
        let mut d = gbar.to_owned();
        let mut gth = 0.0;
        Zip::from(&mut d).and(u).for_each(|dv, &uv| {
            if uv.abs() > th {
                gth -= *dv * uv.signum();
            } else {
                *dv = 0.0;
            }
        });
        gp[0] += (&d * g).sum();
        if self.penalty == Penalty::L1 {
            gp[0] += self.lambda * gth;
        }
        let ad = matmul(d.view(), self.a.t());
        let mut gx = d;
        f64::gemm(gx.view_mut(), ad.view(), self.a.view(), -alpha, true);
        gx
    }
}

/// TISTA's layer (Ito, Takabe & Wadayama 2019) with its single learned step `γ`:
///
/// ```text
/// r  = s + γ W (y − A s),                 W = Aᵀ(AAᵀ)⁻¹
/// v² = max((‖y − A s‖² − M σ²) / tr(AᵀA), v²_min)
/// τ² = v²/N · (N + (γ² − 2γ) M) + γ² σ² tr(WWᵀ)/N
/// s⁺ = η(r; τ²),   η(r; τ²) = r · α²/ξ · p F(r; ξ) / ((1 − p) F(r; τ²) + p F(r; ξ)),   ξ = α² + τ²
/// ```
///
/// `η` is the MMSE estimator of a Bernoulli–Gaussian entry (`p`, variance `α² = 1`) observed in
/// Gaussian noise of variance `τ²`, and `F(z; v)` the `N(0, v)` density. The reference code's
/// clamp of `v²` is not in place (a no-op); here it is applied, with `v²_min = 1e-9`.
#[derive(Clone, Debug)]
pub struct TistaLayer {
    a: Arc<Array2<f64>>,
    /// `Z = (AAᵀ)⁻¹A`, so `W = Zᵀ`.
    z: Arc<Array2<f64>>,
    p: f64,
    sigma2: f64,
    tr_ata: f64,
    tr_wwt: f64,
}

const V2_MIN: f64 = 1e-9;

impl TistaLayer {
    /// A layer for the prior `p` and noise variance `σ²`; `z = (AAᵀ)⁻¹A`.
    pub fn new(a: Arc<Array2<f64>>, z: Arc<Array2<f64>>, p: f64, sigma2: f64) -> Self {
        let tr_ata = a.iter().map(|v| v * v).sum();
        let tr_wwt = z.iter().map(|v| v * v).sum();
        Self {
            a,
            z,
            p,
            sigma2,
            tr_ata,
            tr_wwt,
        }
    }

    /// Per row: residual `R`, `r`, `v²` (and whether it is above the floor), `τ²`.
    #[allow(clippy::type_complexity)]
    fn pre(
        &self,
        gamma: f64,
        s: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
    ) -> (Array2<f64>, Array2<f64>, Vec<(f64, bool)>, Vec<f64>) {
        let (m, n) = (self.a.nrows() as f64, self.a.ncols() as f64);
        let res = residual(self.a.view(), s, y);
        let mut r = s.to_owned();
        f64::gemm(r.view_mut(), res.view(), self.z.view(), gamma, true);
        let v2: Vec<(f64, bool)> = res
            .rows()
            .into_iter()
            .map(|row| {
                let v = (row.dot(&row) - m * self.sigma2) / self.tr_ata;
                if v > V2_MIN {
                    (v, true)
                } else {
                    (V2_MIN, false)
                }
            })
            .collect();
        let tau2 = v2
            .iter()
            .map(|(v, _)| {
                v / n * (n + (gamma * gamma - 2.0 * gamma) * m)
                    + gamma * gamma * self.sigma2 * self.tr_wwt / n
            })
            .collect();
        (res, r, v2, tau2)
    }

    /// Per-row constants of the shrinkage at noise variance `t = τ²`.
    fn consts(&self, t: f64) -> Shrink {
        let xi = 1.0 + t;
        Shrink {
            t,
            xi,
            k: 1.0 / t - 1.0 / xi,
            c0: ((1.0 - self.p) / self.p).ln() + 0.5 * (xi / t).ln(),
        }
    }
}

/// Constants of `η(·; τ²)` for one row (signal variance `α² = 1`).
#[derive(Clone, Copy, Debug)]
struct Shrink {
    t: f64,
    xi: f64,
    k: f64,
    c0: f64,
}

impl Shrink {
    /// `(η, ∂η/∂r, ∂η/∂τ²)` at `r`.
    ///
    /// `η = r·c·π` with `c = 1/ξ` and `π = P(nonzero | r) = 1/(1 + e^ℓ)`,
    /// `ℓ = ln((1−p)/p) + ½ln(ξ/τ²) − r²/2·(1/τ² − 1/ξ)`.
    #[inline]
    fn eval(&self, r: f64) -> (f64, f64, f64) {
        let ell = self.c0 - 0.5 * r * r * self.k;
        // Beyond |ℓ| = 40 the posterior is 0 or 1 to within 4e-18; cutting there keeps the
        // arithmetic out of subnormal numbers.
        if ell > 40.0 {
            return (0.0, 0.0, 0.0);
        }
        let (xi, t) = (self.xi, self.t);
        let c = 1.0 / xi;
        if ell < -40.0 {
            return (r * c, c, -r / (xi * xi));
        }
        let pi = 1.0 / (1.0 + ell.exp());
        let dpi_dell = -pi * (1.0 - pi);
        let eta = r * c * pi;
        let deta_dr = c * pi + r * c * dpi_dell * (-r * self.k);
        let dell_dt = 0.5 * (1.0 / xi - 1.0 / t) + 0.5 * r * r * (1.0 / (t * t) - 1.0 / (xi * xi));
        let deta_dt = r * (-pi / (xi * xi) + c * dpi_dell * dell_dt);
        (eta, deta_dr, deta_dt)
    }
}

impl Differentiable for TistaLayer {
    fn name(&self) -> String {
        "TISTA step (MMSE shrinkage)".into()
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
        1
    }
    fn forward(
        &self,
        p: &[f64],
        s: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let (_, mut r, _, tau2) = self.pre(p[0], s, y);
        for (mut row, t) in r.rows_mut().into_iter().zip(tau2) {
            let sh = self.consts(t);
            row.mapv_inplace(|v| sh.eval(v).0);
        }
        Ok(r)
    }
    fn vjp(
        &self,
        p: &[f64],
        s: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        gbar: ArrayView2<'_, f64>,
        gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        let gamma = p[0];
        let (m, n) = (self.a.nrows() as f64, self.a.ncols() as f64);
        let (res, r, v2, tau2) = self.pre(gamma, s, y);
        let mut dr = gbar.to_owned();
        let mut dt = vec![0.0; r.nrows()];
        for (b, (mut drow, rrow)) in dr.rows_mut().into_iter().zip(r.rows()).enumerate() {
            let sh = self.consts(tau2[b]);
            for (dv, &rv) in drow.iter_mut().zip(rrow) {
                let (_, der, det) = sh.eval(rv);
                dt[b] += *dv * det;
                *dv *= der;
            }
        }
        // γ: through r (∂r/∂γ = W R) and through τ².
        let wr = matmul(res.view(), self.z.view()); // rows: W R_b
        let mut ggamma = (&dr * &wr).sum();
        let dtau_dv2 = (n + (gamma * gamma - 2.0 * gamma) * m) / n;
        for (b, (v, _)) in v2.iter().enumerate() {
            ggamma += dt[b]
                * (v / n * (2.0 * gamma - 2.0) * m + 2.0 * gamma * self.sigma2 * self.tr_wwt / n);
        }
        gp[0] += ggamma;
        // s: (I − γ W A)ᵀ d_r = d_r − γ Aᵀ(Wᵀ d_r); through v²: −2 Aᵀ R / tr(AᵀA).
        let mut coef = matmul(dr.view(), self.z.t()); // rows: Wᵀ d_r (M)
        coef *= gamma;
        for (b, (_, active)) in v2.iter().enumerate() {
            if *active {
                let k = dt[b] * dtau_dv2 * 2.0 / self.tr_ata;
                let mut row = coef.row_mut(b);
                row.scaled_add(k, &res.row(b));
            }
        }
        let mut gs = dr;
        f64::gemm(gs.view_mut(), coef.view(), self.a.view(), -1.0, true);
        Ok(gs)
    }
}
