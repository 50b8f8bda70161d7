//! Field-of-experts denoising (MAID paper §4.3): filters, their weights and smoothings learned.
//!
//! For `N` noisy images `yᵢ`, `F` filters `k_j` of size `s × s`, `a_j = e^{θ₀ + w_j}`,
//! `ν_j = e^{s_j}`, `φ_ν(t) = √(t² + ν²)` and `K_j` the *valid* correlation with `k_j` (the
//! core [`ValidCorrelation2d`], its adjoint and its gradient in the taps):
//!
//! ```text
//! h(x, θ) = (1/N) Σᵢ [ ½‖xᵢ − yᵢ‖² + Σ_j a_j Σ_p φ_{ν_j}((K_j xᵢ)_p) ],
//! g(x)    = (1/N) Σᵢ ½‖xᵢ − xᵢ,true‖².
//! ```
//!
//! `θ = (θ₀, w₁..w_F, s₁..s_F, taps of k₁..k_F)`: with the paper's `F = 48`, `s = 7` that is
//! `1 + 48 + 48 + 48·49 = 2449` hyperparameters. Paper setting: Kodak images 6..25 at
//! 256×256, `σ = 0.1`; initialization `θ₀ = w_j = −3`, `s_j = −3.5`, zero-mean Xavier-normal
//! filters.
//!
//! Deviation from the reference code: the correlation is *valid* (no padding; the reference
//! pads by reflection), so `‖K_j‖ ≤ ‖k_j‖₁` holds exactly and the constants below are proven:
//! `μ = 1/N`, `L = (1 + Σ_j a_j‖k_j‖₁²/ν_j)/N`, `L_g = 1/N`,
//! `L_{H⁻¹} ≤ L_H/μ²` with `L_H ≤ (1/N) Σ_j a_j ‖k_j‖₁² ‖k_j‖₂ c₃/ν_j²`. `‖J‖` and `L_J` are
//! estimated online, so the error bound is reported as *estimated* (as in the reference code,
//! which estimates all constants).

use super::tv::c3;
use crate::data::{fill, slice};
use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::ops::ValidCorrelation2d;
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// The field-of-experts bilevel problem (see the module docs).
#[derive(Clone, Debug)]
pub struct FieldOfExperts {
    y: Array1<f64>,
    x_true: Array1<f64>,
    n_img: usize,
    h: usize,
    w: usize,
    nf: usize,
    ks: usize,
    /// The valid correlation's geometry (the taps come from `θ` per call).
    geom: ValidCorrelation2d<f64>,
    theta0: Array1<f64>,
}

/// Views of `θ`'s blocks.
struct Parts<'a> {
    a: Vec<f64>,
    nu: Vec<f64>,
    taps: &'a [f64],
}

impl FieldOfExperts {
    /// From clean and noisy images (equal sizes, larger than the filters), with `n_filters`
    /// filters of size `ks × ks` initialized from `seed`.
    pub fn new(
        clean: &[Array2<f64>],
        noisy: &[Array2<f64>],
        n_filters: usize,
        ks: usize,
        seed: u64,
    ) -> Result<Self> {
        // At most 2²⁴ filter taps (the paper: 48·49 = 2352), checked before allocating θ.
        let taps = n_filters.checked_mul(ks).and_then(|t| t.checked_mul(ks));
        if n_filters == 0 || ks == 0 || taps.is_none_or(|t| t > 1 << 24) {
            return Err(Error::param(
                "filters",
                format!("{n_filters} of size {ks}"),
                "need at least one filter of size ≥ 1 and at most 2²⁴ filter taps (the paper: 48 filters 7×7)",
            ));
        }
        let (h, w) = crate::data::check_image_pairs("field of experts", clean, noisy, ks + 1)?;
        let mut theta0 = Array1::zeros(1 + 2 * n_filters + n_filters * ks * ks);
        theta0[0] = -3.0;
        for j in 0..n_filters {
            theta0[1 + j] = -3.0;
            theta0[1 + n_filters + j] = -3.5;
        }
        // Zero-mean Xavier-normal filters: std √(2/(fan_in + fan_out)), fan_in = s², fan_out = F s².
        let k2 = ks * ks;
        let std = (2.0 / (k2 + n_filters * k2) as f64).sqrt();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for j in 0..n_filters {
            let base = 1 + 2 * n_filters + j * k2;
            let mut tap: Vec<f64> = (0..k2)
                .map(|_| {
                    let e: f64 = StandardNormal.sample(&mut rng);
                    std * e
                })
                .collect();
            let m = tap.iter().sum::<f64>() / k2 as f64;
            tap.iter_mut().for_each(|t| *t -= m);
            for (i, t) in tap.into_iter().enumerate() {
                theta0[base + i] = t;
            }
        }
        Ok(Self {
            y: crate::data::stack(noisy),
            x_true: crate::data::stack(clean),
            n_img: clean.len(),
            h,
            w,
            nf: n_filters,
            ks,
            geom: ValidCorrelation2d::new(h, w, Array2::zeros((ks, ks)))?,
            theta0,
        })
    }

    /// `(images, height, width, filters, filter size)`.
    pub fn shape(&self) -> (usize, usize, usize, usize, usize) {
        (self.n_img, self.h, self.w, self.nf, self.ks)
    }

    /// The noisy images, stacked.
    pub fn noisy(&self) -> &Array1<f64> {
        &self.y
    }

    /// The clean images, stacked.
    pub fn clean(&self) -> &Array1<f64> {
        &self.x_true
    }

    fn parts<'a>(&self, theta: &'a [f64]) -> Parts<'a> {
        let f = self.nf;
        Parts {
            a: (0..f).map(|j| (theta[0] + theta[1 + j]).exp()).collect(),
            nu: (0..f).map(|j| theta[1 + f + j].exp()).collect(),
            taps: &theta[1 + 2 * f..],
        }
    }

    /// `Σ_j` over filters of `f(j, k_j, a_j, ν_j) -> Vec` summed elementwise: filters in fixed
    /// groups of [`FILTERS_PER_TASK`] accumulated in parallel, the groups' sums added in order,
    /// so the result is the same bits for any thread count and any run (a rayon `fold`/`reduce`
    /// would group the filters by how the work happened to be stolen).
    fn sum_filters(
        &self,
        len: usize,
        theta: &[f64],
        f: impl Fn(usize, &[f64], f64, f64, &mut [f64]) + Sync,
    ) -> Vec<f64> {
        let pt = self.parts(theta);
        let k2 = self.ks * self.ks;
        let groups = self.nf.div_ceil(FILTERS_PER_TASK);
        let sums: Vec<Vec<f64>> = (0..groups)
            .into_par_iter()
            .map(|g| {
                let mut acc = vec![0.0; len];
                for j in g * FILTERS_PER_TASK..((g + 1) * FILTERS_PER_TASK).min(self.nf) {
                    f(
                        j,
                        &pt.taps[j * k2..(j + 1) * k2],
                        pt.a[j],
                        pt.nu[j],
                        &mut acc,
                    );
                }
                acc
            })
            .collect();
        let mut sums = sums.into_iter();
        let mut total = sums.next().unwrap_or_else(|| vec![0.0; len]);
        for s in sums {
            total.iter_mut().zip(s).for_each(|(x, y)| *x += y);
        }
        total
    }

    fn npix(&self) -> usize {
        self.h * self.w
    }
}

/// Filters per parallel task of [`FieldOfExperts::sum_filters`] (a constant, not the thread
/// count, so the summation order never depends on the machine).
const FILTERS_PER_TASK: usize = 4;

fn th(theta: &ArrayView1<'_, f64>) -> Vec<f64> {
    theta.iter().cloned().collect()
}

impl BilevelProblem for FieldOfExperts {
    fn name(&self) -> &str {
        "field-of-experts"
    }
    fn dim_x(&self) -> usize {
        self.y.len()
    }
    fn dim_theta(&self) -> usize {
        1 + 2 * self.nf + self.nf * self.ks * self.ks
    }
    fn x_start(&self) -> Array1<f64> {
        self.y.clone()
    }
    fn theta_start(&self) -> Array1<f64> {
        self.theta0.clone()
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let t = th(&theta);
        let n = self.npix();
        let (oh, ow) = self.geom.out_dims();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let ys = slice(&self.y)?;
        let mut total = 0.0;
        for (xi, yi) in xs.chunks(n).zip(ys.chunks(n)) {
            total += 0.5
                * xi.iter()
                    .zip(yi)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>();
            let r = self.sum_filters(1, &t, |_, k, a, nu, acc| {
                let mut u = vec![0.0; oh * ow];
                self.geom.correlate(xi, k, &mut u);
                acc[0] += a * u.iter().map(|v| (v * v + nu * nu).sqrt()).sum::<f64>();
            });
            total += r[0];
        }
        Ok(total / self.n_img as f64)
    }
    fn lower_grad_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let t = th(&theta);
        let n = self.npix();
        let inv_n = 1.0 / self.n_img as f64;
        let (oh, ow) = self.geom.out_dims();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let ys = slice(&self.y)?;
        fill(out, |os| {
            for ((o, xi), yi) in os.chunks_mut(n).zip(xs.chunks(n)).zip(ys.chunks(n)) {
                let r = self.sum_filters(n, &t, |_, k, a, nu, acc| {
                    let mut u = vec![0.0; oh * ow];
                    self.geom.correlate(xi, k, &mut u);
                    u.iter_mut().for_each(|v| *v /= (*v * *v + nu * nu).sqrt());
                    self.geom.adjoint_add(&u, k, a, acc);
                });
                for (((oi, a), b), ri) in o.iter_mut().zip(xi).zip(yi).zip(r) {
                    *oi = (a - b + ri) * inv_n;
                }
            }
        });
        Ok(())
    }
    fn lower_hvp_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let t = th(&theta);
        let n = self.npix();
        let inv_n = 1.0 / self.n_img as f64;
        let (oh, ow) = self.geom.out_dims();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let vc = v.as_standard_layout();
        let vs = slice(&vc)?;
        fill(out, |os| {
            for ((o, xi), vi) in os.chunks_mut(n).zip(xs.chunks(n)).zip(vs.chunks(n)) {
                let r = self.sum_filters(n, &t, |_, k, a, nu, acc| {
                    let mut u = vec![0.0; oh * ow];
                    let mut kv = vec![0.0; oh * ow];
                    self.geom.correlate(xi, k, &mut u);
                    self.geom.correlate(vi, k, &mut kv);
                    for (g, ui) in kv.iter_mut().zip(&u) {
                        let r2 = ui * ui + nu * nu;
                        *g *= nu * nu / (r2 * r2.sqrt());
                    }
                    self.geom.adjoint_add(&kv, k, a, acc);
                });
                for ((oi, a), ri) in o.iter_mut().zip(vi).zip(r) {
                    *oi = (a + ri) * inv_n;
                }
            }
        });
        Ok(())
    }
    fn cross_jt_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let t = th(&theta);
        let f = self.nf;
        let k2 = self.ks * self.ks;
        let n = self.npix();
        let inv_n = 1.0 / self.n_img as f64;
        let (oh, ow) = self.geom.out_dims();
        let dim = self.dim_theta();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let qc = q.as_standard_layout();
        let qs = slice(&qc)?;
        let mut total = vec![0.0; dim];
        for (xi, qi) in xs.chunks(n).zip(qs.chunks(n)) {
            let r = self.sum_filters(dim, &t, |j, k, a, nu, acc| {
                let mut u = vec![0.0; oh * ow];
                let mut kq = vec![0.0; oh * ow];
                self.geom.correlate(xi, k, &mut u);
                self.geom.correlate(qi, k, &mut kq);
                let (mut d1, mut d2) = (0.0, 0.0);
                let mut g1 = vec![0.0; oh * ow]; // φ'(u)
                let mut g2 = vec![0.0; oh * ow]; // φ''(u)·Kq
                for p in 0..oh * ow {
                    let r2 = u[p] * u[p] + nu * nu;
                    let rr = r2.sqrt();
                    g1[p] = u[p] / rr;
                    d1 += g1[p] * kq[p];
                    d2 += -u[p] * nu * nu / (r2 * rr) * kq[p];
                    g2[p] = nu * nu / (r2 * rr) * kq[p];
                }
                acc[0] += a * d1;
                acc[1 + j] += a * d1;
                acc[1 + f + j] += a * d2;
                let tap = &mut acc[1 + 2 * f + j * k2..1 + 2 * f + (j + 1) * k2];
                self.geom.kernel_gradient_add(&g2, xi, a, tap);
                self.geom.kernel_gradient_add(&g1, qi, a, tap);
            });
            total.iter_mut().zip(r).for_each(|(a, b)| *a += b);
        }
        out.iter_mut().zip(total).for_each(|(o, v)| *o = v * inv_n);
        Ok(())
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        Ok(crate::data::upper_mse_value(x, &self.x_true, self.n_img))
    }
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        crate::data::upper_mse_grad_into(out, x, &self.x_true, self.n_img);
        Ok(())
    }
    /// Convex: `g = (1/N)·½‖x − x_true‖²`.
    fn upper_convex(&self) -> bool {
        true
    }
    fn constants(&self, _x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        let t = th(&theta);
        let pt = self.parts(&t);
        let k2 = self.ks * self.ks;
        let nn = self.n_img as f64;
        let (mut l, mut l_h) = (0.0, 0.0);
        for j in 0..self.nf {
            let k = &pt.taps[j * k2..(j + 1) * k2];
            let l1: f64 = k.iter().map(|v| v.abs()).sum();
            let l2: f64 = k.iter().map(|v| v * v).sum::<f64>().sqrt();
            l += pt.a[j] * l1 * l1 / pt.nu[j];
            l_h += pt.a[j] * l1 * l1 * l2 * c3() / (pt.nu[j] * pt.nu[j]);
        }
        let mu = 1.0 / nn;
        Ok(Constants {
            mu,
            lipschitz: (1.0 + l) / nn,
            l_g: 1.0 / nn,
            j_norm: Constant::Unknown,
            l_j: Constant::Unknown,
            l_hinv: Constant::Known(l_h / nn / (mu * mu)),
        })
    }
}
