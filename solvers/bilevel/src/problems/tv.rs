//! Learning the weight and smoothing of total-variation denoising (MAID paper §4.2).
//!
//! For `N` noisy images `yᵢ = xᵢ,true + σ·noise` stacked into `x`, with `λ = e^{θ₁}`,
//! `ν = e^{θ₂}` and `φ_ν(t) = √(t² + ν²)`:
//!
//! ```text
//! h(x, θ) = (1/N) Σᵢ [ ½‖xᵢ − yᵢ‖² + λ Σ_p φ_ν((D_h xᵢ)_p) + λ Σ_p φ_ν((D_v xᵢ)_p) ],
//! g(x)    = (1/N) Σᵢ ½‖xᵢ − xᵢ,true‖²,
//! ```
//!
//! with forward differences `D_h`, `D_v` without boundary padding (as in the paper's code).
//! Paper setting: the 25 Kodak images at 96×96, `σ = 0.1`, `θ₀ = (−5, −5)`.
//!
//! **Constants (all proven, so the error bound is certified).** `μ = 1/N` (data term; the TV
//! part is convex), `L = (1 + 8λ/ν)/N` (`φ_ν'' ≤ 1/ν`, `‖D‖² ≤ 8`), `L_g = 1/N`, `‖J(x̃)‖`
//! exactly from its two columns, `L_J ≤ √2·8λ/(Nν)` (both `φ_ν'` and `∂_{θ₂}φ_ν'` are
//! `1/ν`-Lipschitz), `L_{H⁻¹} ≤ L_H/μ²` with `L_H ≤ 8√2·c₃·λ/(Nν²)`, `c₃ = max|φ₁'''| =
//! 1.5/1.25^{5/2}` (each row of `D` has two entries ±1, so `‖Dv‖_∞ ≤ √2‖v‖`).

use crate::data::{fill, slice};
use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::Result;
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use rayon::prelude::*;

/// `max |d³/dt³ √(t² + 1)| = 1.5/1.25^{5/2}`, attained at `t = 1/2`.
pub(crate) fn c3() -> f64 {
    1.5 / 1.25f64.powf(2.5)
}

/// Calls `f(a, b)` for every forward-difference pair (`t = x[b] − x[a]`) of an `h × w` image.
#[inline]
fn for_pairs(h: usize, w: usize, mut f: impl FnMut(usize, usize)) {
    for r in 0..h {
        for c in 0..w - 1 {
            let a = r * w + c;
            f(a, a + 1);
        }
    }
    for r in 0..h - 1 {
        for c in 0..w {
            let a = r * w + c;
            f(a, a + w);
        }
    }
}

/// The TV-denoising bilevel problem (see the module docs).
#[derive(Clone, Debug)]
pub struct TvDenoising {
    y: Array1<f64>,
    x_true: Array1<f64>,
    n_img: usize,
    h: usize,
    w: usize,
    theta0: Array1<f64>,
}

impl TvDenoising {
    /// From clean and noisy images (equal sizes, at least 2×2, finite).
    pub fn new(clean: &[Array2<f64>], noisy: &[Array2<f64>]) -> Result<Self> {
        let (h, w) = crate::data::check_image_pairs("TV denoising", clean, noisy, 2)?;
        Ok(Self {
            y: crate::data::stack(noisy),
            x_true: crate::data::stack(clean),
            n_img: clean.len(),
            h,
            w,
            theta0: ndarray::array![-5.0, -5.0],
        })
    }

    /// Image height and width, and the number of images.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.n_img, self.h, self.w)
    }

    /// The noisy images, stacked.
    pub fn noisy(&self) -> &Array1<f64> {
        &self.y
    }

    /// The clean images, stacked.
    pub fn clean(&self) -> &Array1<f64> {
        &self.x_true
    }

    fn params(theta: ArrayView1<'_, f64>) -> (f64, f64) {
        (theta[0].exp(), theta[1].exp())
    }

    fn npix(&self) -> usize {
        self.h * self.w
    }

    /// The two columns of `J(x) = ∂²_{xθ}h` (for `‖J‖`).
    fn j_columns(
        &self,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<(Array1<f64>, Array1<f64>)> {
        let (lam, nu) = Self::params(theta);
        let s = lam / self.n_img as f64;
        let n = self.npix();
        let (h, w) = (self.h, self.w);
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let mut c1 = vec![0.0; xs.len()];
        let mut c2 = vec![0.0; xs.len()];
        c1.par_chunks_mut(n)
            .zip(c2.par_chunks_mut(n))
            .zip(xs.par_chunks(n))
            .for_each(|((o1, o2), xi)| {
                for_pairs(h, w, |a, b| {
                    let t = xi[b] - xi[a];
                    let r2 = t * t + nu * nu;
                    let d1 = s * t / r2.sqrt();
                    let d2 = -s * t * nu * nu / (r2 * r2.sqrt());
                    o1[b] += d1;
                    o1[a] -= d1;
                    o2[b] += d2;
                    o2[a] -= d2;
                });
            });
        Ok((Array1::from(c1), Array1::from(c2)))
    }
}

impl BilevelProblem for TvDenoising {
    fn name(&self) -> &str {
        "tv-denoising"
    }
    fn dim_x(&self) -> usize {
        self.y.len()
    }
    fn dim_theta(&self) -> usize {
        2
    }
    fn x_start(&self) -> Array1<f64> {
        Array1::zeros(self.y.len())
    }
    fn theta_start(&self) -> Array1<f64> {
        self.theta0.clone()
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let (lam, nu) = Self::params(theta);
        let n = self.npix();
        let (h, w) = (self.h, self.w);
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let ys = slice(&self.y)?;
        let total: f64 = xs
            .par_chunks(n)
            .zip(ys.par_chunks(n))
            .map(|(xi, yi)| {
                let mut v = 0.5
                    * xi.iter()
                        .zip(yi)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>();
                let mut tv = 0.0;
                for_pairs(h, w, |a, b| {
                    let t = xi[b] - xi[a];
                    tv += (t * t + nu * nu).sqrt();
                });
                v += lam * tv;
                v
            })
            .sum();
        Ok(total / self.n_img as f64)
    }
    fn lower_grad_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let (lam, nu) = Self::params(theta);
        let inv_n = 1.0 / self.n_img as f64;
        let n = self.npix();
        let (h, w) = (self.h, self.w);
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let ys = slice(&self.y)?;
        fill(out, |os| {
            os.par_chunks_mut(n)
                .zip(xs.par_chunks(n).zip(ys.par_chunks(n)))
                .for_each(|(o, (xi, yi))| {
                    for ((oi, a), b) in o.iter_mut().zip(xi).zip(yi) {
                        *oi = (a - b) * inv_n;
                    }
                    let s = lam * inv_n;
                    for_pairs(h, w, |a, b| {
                        let t = xi[b] - xi[a];
                        let d = s * t / (t * t + nu * nu).sqrt();
                        o[b] += d;
                        o[a] -= d;
                    });
                });
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
        let (lam, nu) = Self::params(theta);
        let inv_n = 1.0 / self.n_img as f64;
        let n = self.npix();
        let (h, w) = (self.h, self.w);
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let vc = v.as_standard_layout();
        let vs = slice(&vc)?;
        fill(out, |os| {
            os.par_chunks_mut(n)
                .zip(xs.par_chunks(n).zip(vs.par_chunks(n)))
                .for_each(|(o, (xi, vi))| {
                    for (oi, a) in o.iter_mut().zip(vi) {
                        *oi = a * inv_n;
                    }
                    let s = lam * inv_n * nu * nu;
                    for_pairs(h, w, |a, b| {
                        let t = xi[b] - xi[a];
                        let r2 = t * t + nu * nu;
                        let d = s / (r2 * r2.sqrt()) * (vi[b] - vi[a]);
                        o[b] += d;
                        o[a] -= d;
                    });
                });
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
        let (lam, nu) = Self::params(theta);
        let s = lam / self.n_img as f64;
        let n = self.npix();
        let (h, w) = (self.h, self.w);
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let qc = q.as_standard_layout();
        let qs = slice(&qc)?;
        let (j1, j2) = xs
            .par_chunks(n)
            .zip(qs.par_chunks(n))
            .map(|(xi, qi)| {
                let (mut j1, mut j2) = (0.0, 0.0);
                for_pairs(h, w, |a, b| {
                    let t = xi[b] - xi[a];
                    let dq = qi[b] - qi[a];
                    let r2 = t * t + nu * nu;
                    let r = r2.sqrt();
                    j1 += t / r * dq;
                    j2 += -t * nu * nu / (r2 * r) * dq;
                });
                (j1, j2)
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        out[0] = s * j1;
        out[1] = s * j2;
        Ok(())
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        Ok(crate::data::upper_mse_value(x, &self.x_true, self.n_img))
    }
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        crate::data::upper_mse_grad_into(out, x, &self.x_true, self.n_img);
        Ok(())
    }
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        let (lam, nu) = Self::params(theta);
        let nn = self.n_img as f64;
        let mu = 1.0 / nn;
        let (c1, c2) = self.j_columns(x, theta)?;
        let (a, b, c) = (c1.dot(&c1), c1.dot(&c2), c2.dot(&c2));
        // Largest eigenvalue of the 2×2 Gram matrix [[a, b], [b, c]].
        let lmax = 0.5 * (a + c) + (0.25 * (a - c) * (a - c) + b * b).sqrt();
        let l_h = 8.0 * std::f64::consts::SQRT_2 * c3() * lam / (nn * nu * nu);
        Ok(Constants {
            mu,
            lipschitz: (1.0 + 8.0 * lam / nu) / nn,
            l_g: 1.0 / nn,
            j_norm: Constant::Known(lmax.sqrt()),
            l_j: Constant::Known(std::f64::consts::SQRT_2 * 8.0 * lam / (nn * nu)),
            l_hinv: Constant::Known(l_h / (mu * mu)),
        })
    }
}
