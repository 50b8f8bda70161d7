//! The hand-written TV and field-of-experts problems as they were before they became instances
//! of the composed form (`hyperprox_bilevel::composed`): kept here as test oracles, so the
//! composed instances are checked against independent code (same numbers to 1e-10).

#![allow(dead_code)]

use hyperprox_bilevel::{BilevelProblem, Constant, Constants, TvModel};
use hyperprox_core::error::Result;
use hyperprox_core::func::{SmoothedTv, TvKind};
use hyperprox_core::ops::ValidCorrelation2d;
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use rayon::prelude::*;

fn slice<S: ndarray::Data<Elem = f64>>(a: &ndarray::ArrayBase<S, ndarray::Ix1>) -> Result<&[f64]> {
    Ok(a.as_slice().unwrap())
}

fn fill<R>(mut out: ArrayViewMut1<'_, f64>, f: impl FnOnce(&mut [f64]) -> R) -> R {
    f(out.as_slice_mut().unwrap())
}

fn upper_mse_value(x: ArrayView1<'_, f64>, x_true: &Array1<f64>, n_img: usize) -> f64 {
    let d = &x - x_true;
    0.5 * d.dot(&d) / n_img as f64
}

fn upper_mse_grad_into(
    mut out: ArrayViewMut1<'_, f64>,
    x: ArrayView1<'_, f64>,
    x_true: &Array1<f64>,
    n_img: usize,
) {
    let inv_n = 1.0 / n_img as f64;
    ndarray::Zip::from(&mut out)
        .and(&x)
        .and(x_true)
        .for_each(|o, &a, &b| *o = (a - b) * inv_n);
}

fn c3() -> f64 {
    1.5 / 1.25f64.powf(2.5)
}

fn c3_isotropic() -> f64 {
    (8.0 / 27.0 + 2304.0 / 3125.0f64).sqrt()
}

/// The hand-written TV denoising problem (this library's convention).
pub struct HandTv {
    y: Array1<f64>,
    x_true: Array1<f64>,
    n_img: usize,
    h: usize,
    w: usize,
    model: TvModel,
}

impl HandTv {
    pub fn new(clean: &[Array2<f64>], noisy: &[Array2<f64>], model: TvModel) -> Self {
        let (h, w) = clean[0].dim();
        Self {
            y: hyperprox_bilevel::data::stack(noisy),
            x_true: hyperprox_bilevel::data::stack(clean),
            n_img: clean.len(),
            h,
            w,
            model,
        }
    }
    fn params(&self, theta: ArrayView1<'_, f64>) -> (f64, f64) {
        self.model.params(theta)
    }
    fn tv(&self, theta: ArrayView1<'_, f64>) -> Result<SmoothedTv<f64>> {
        let (lam, nu) = self.params(theta);
        Ok(SmoothedTv::new(self.h, self.w, lam, nu, self.model.kind)?
            .with_boundary(self.model.boundary()))
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
        let tv = self.tv(theta)?;
        let inv_n = 1.0 / self.n_img as f64;
        let n = self.npix();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let mut c1 = vec![0.0; xs.len()];
        let mut c2 = vec![0.0; xs.len()];
        c1.par_chunks_mut(n)
            .zip(c2.par_chunks_mut(n))
            .zip(xs.par_chunks(n))
            .for_each(|((o1, o2), xi)| tv.image_log_param_gradients_add(o1, o2, xi, inv_n));
        Ok((Array1::from(c1), Array1::from(c2)))
    }
}

impl BilevelProblem for HandTv {
    fn name(&self) -> &str {
        "tv-denoising"
    }
    fn dim_x(&self) -> usize {
        self.y.len()
    }
    fn dim_theta(&self) -> usize {
        self.model.dim_theta()
    }
    fn x_start(&self) -> Array1<f64> {
        Array1::zeros(self.y.len())
    }
    fn theta_start(&self) -> Array1<f64> {
        self.model.theta((-5f64).exp(), (-5f64).exp())
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let tv = self.tv(theta)?;
        let n = self.npix();
        let xc = x.as_standard_layout();
        let xs = slice(&xc)?;
        let ys = slice(&self.y)?;
        // Per image in parallel, summed in image order (the same bits for any thread count).
        let parts: Vec<f64> = xs
            .par_chunks(n)
            .zip(ys.par_chunks(n))
            .map(|(xi, yi)| {
                let data = xi.iter().zip(yi).map(|(a, b)| (a - b) * (a - b));
                0.5 * data.sum::<f64>() + tv.image_value(xi)
            })
            .collect();
        let total: f64 = parts.iter().sum();
        Ok(total / self.n_img as f64)
    }
    fn lower_grad_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let tv = self.tv(theta)?;
        let inv_n = 1.0 / self.n_img as f64;
        let n = self.npix();
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
                    tv.image_gradient_add(o, xi, inv_n);
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
        let tv = self.tv(theta)?;
        let inv_n = 1.0 / self.n_img as f64;
        let n = self.npix();
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
                    tv.image_hvp_add(o, xi, vi, inv_n);
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
        let tv = self.tv(theta)?;
        let n = self.npix();
        let xc = x.as_standard_layout();
        let qc = q.as_standard_layout();
        let parts: Vec<(f64, f64)> = slice(&xc)?
            .par_chunks(n)
            .zip(slice(&qc)?.par_chunks(n))
            .map(|(xi, qi)| tv.image_log_param_dots(xi, qi))
            .collect();
        let (j1, j2) = parts.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let inv_n = 1.0 / self.n_img as f64;
        out[0] = j1 * inv_n;
        if self.model.fixed_smoothing.is_none() {
            out[1] = j2 * inv_n;
        }
        Ok(())
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        Ok(upper_mse_value(x, &self.x_true, self.n_img))
    }
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        upper_mse_grad_into(out, x, &self.x_true, self.n_img);
        Ok(())
    }
    /// Convex: `g = (1/N)·½‖x − x_true‖²`.
    fn upper_convex(&self) -> bool {
        true
    }
    fn constants(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<Constants> {
        let (lam, nu) = self.params(theta);
        let nn = self.n_img as f64;
        let mu = 1.0 / nn;
        let (c1, c2) = self.j_columns(x, theta)?;
        let (j_norm, l_j) = if self.model.fixed_smoothing.is_some() {
            (c1.dot(&c1).sqrt(), 8.0 * lam / (nn * nu))
        } else {
            let (a, b, c) = (c1.dot(&c1), c1.dot(&c2), c2.dot(&c2));
            // Largest eigenvalue of the 2×2 Gram matrix [[a, b], [b, c]].
            let lmax = 0.5 * (a + c) + (0.25 * (a - c) * (a - c) + b * b).sqrt();
            (
                lmax.sqrt(),
                std::f64::consts::SQRT_2 * 8.0 * lam / (nn * nu),
            )
        };
        let l_h = match self.model.kind {
            TvKind::Anisotropic => 8.0 * std::f64::consts::SQRT_2 * c3(),
            TvKind::Isotropic => 8.0 * 3f64.sqrt() * c3_isotropic(),
        } * lam
            / (nn * nu * nu);
        Ok(Constants {
            mu,
            lipschitz: (1.0 + 8.0 * lam / nu) / nn,
            l_g: 1.0 / nn,
            j_norm: Constant::Known(j_norm),
            l_j: Constant::Known(l_j),
            l_hinv: Constant::Known(l_h / (mu * mu)),
        })
    }
}

/// The field-of-experts bilevel problem (see the module docs).
pub struct HandFoe {
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

impl HandFoe {
    /// The same images, filters and starting θ as `p`.
    pub fn like(p: &hyperprox_bilevel::FieldOfExperts) -> Self {
        let (n_img, h, w, nf, ks) = p.shape();
        Self {
            y: p.noisy().clone(),
            x_true: p.clean().clone(),
            n_img,
            h,
            w,
            nf,
            ks,
            geom: ValidCorrelation2d::new(h, w, Array2::zeros((ks, ks))).unwrap(),
            theta0: p.theta_start(),
        }
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

/// Filters per parallel task of `sum_filters` (a constant, not the thread
/// count, so the summation order never depends on the machine).
const FILTERS_PER_TASK: usize = 4;

fn th(theta: &ArrayView1<'_, f64>) -> Vec<f64> {
    theta.iter().cloned().collect()
}

impl BilevelProblem for HandFoe {
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
        Ok(upper_mse_value(x, &self.x_true, self.n_img))
    }
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        upper_mse_grad_into(out, x, &self.x_true, self.n_img);
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
