//! A small image prior: an LPN on the shipped 8×8 handwritten digits (σ = 0.1), how its
//! regularizer reacts to noise and blur, and plug-and-play deblurring against TV.
//!
//! The network is dense on the 64 pixels (`d = 64`, three layers of width 128) or
//! convolutional (three 3×3 layers of 16 channels), with `β = 10`, `α = 0.01` as in the paper's
//! MNIST model; the schedule has the paper's shape (ℓ1
//! pre-training, then proximal matching with `γ = 8, 4, 2, 1 × 0.08·√64`).

use crate::icnn::{Icnn, IcnnConfig};
use crate::pnp::LpnProx;
use crate::prior::{regularizer_rows, InvertParams};
use hyperprox_core::error::Result;
use hyperprox_core::prelude::*;
use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The dense digits network: three layers of 128 units.
pub fn config() -> IcnnConfig {
    IcnnConfig {
        dim: 64,
        widths: vec![128, 128, 128],
        beta: 10.0,
        alpha: 0.01,
        arch: crate::icnn::Arch::Dense,
    }
}

/// The convolutional digits network: three 3×3 convolutional layers of 16 channels on the
/// 8×8 image, then the dense non-negative output.
pub fn conv_config() -> IcnnConfig {
    IcnnConfig {
        dim: 64,
        widths: vec![16, 16, 16],
        beta: 10.0,
        alpha: 0.01,
        arch: crate::icnn::Arch::Conv {
            height: 8,
            width: 8,
            kernel: 3,
        },
    }
}

/// Seeded split of the digits (rows in `[0, 1]`) into `n_train` training and the rest test rows.
pub fn split(data: &Array2<f64>, n_train: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut idx: Vec<usize> = (0..data.nrows()).collect();
    idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let n_train = n_train.min(data.nrows());
    (
        data.select(Axis(0), &idx[..n_train]),
        data.select(Axis(0), &idx[n_train..]),
    )
}

/// The 8×8 Gaussian blur (5×5 kernel of width `sigma`, reflecting boundary) as a dense
/// 64×64 matrix (identity for `sigma = 0`).
pub fn blur_matrix(sigma: f64) -> Result<Array2<f64>> {
    if sigma == 0.0 {
        return Ok(Array2::eye(64));
    }
    let k = Conv2d::<f64>::gaussian_kernel(5, sigma)?;
    let c = Conv2d::new(8, 8, k, Boundary::Reflect, ConvMethod::Direct)?;
    let mut m = Array2::zeros((64, 64));
    for j in 0..64 {
        let mut e = Array1::zeros(64);
        e[j] = 1.0;
        m.column_mut(j).assign(&c.apply(e.view())?);
    }
    Ok(m)
}

pub use hyperprox_core::io::{add_noise, psnr};

/// Mean `R_θ` (and the worst inversion residual) of `rows` perturbed by each noise level and by
/// each blur width: `(noise curve, blur curve)` as `(level, mean R, max residual)` triples.
#[allow(clippy::type_complexity)]
pub fn prior_curves(
    net: &Icnn,
    rows: &Array2<f64>,
    noise: &[f64],
    blur: &[f64],
    seed: u64,
) -> Result<(Vec<(f64, f64, f64)>, Vec<(f64, f64, f64)>)> {
    let eval = |x: &Array2<f64>| -> Result<(f64, f64)> {
        // 60 Newton steps suffice for a trained model (a few are used); the residual is reported.
        let (r, res) = regularizer_rows(
            net,
            x.view(),
            InvertParams {
                max_iters: 60,
                ..InvertParams::default()
            },
        )?;
        Ok((
            r.mean().unwrap_or(f64::NAN),
            res.iter().cloned().fold(0.0, f64::max),
        ))
    };
    let mut nc = Vec::new();
    for (i, &s) in noise.iter().enumerate() {
        let (m, e) = eval(&add_noise(rows, s, seed + i as u64))?;
        nc.push((s, m, e));
    }
    let mut bc = Vec::new();
    for &s in blur {
        let b = blur_matrix(s)?;
        let (m, e) = eval(&rows.dot(&b.t()))?;
        bc.push((s, m, e));
    }
    Ok((nc, bc))
}

/// One deblurring method's result on a test set.
#[derive(Clone, Debug)]
pub struct DeblurRow {
    /// Method name.
    pub method: String,
    /// Its tuning parameter (data weight λ or TV weight).
    pub parameter: f64,
    /// Mean PSNR over the images.
    pub psnr: f64,
}

/// Plug-and-play deblurring of `clean` rows (blur `sigma_blur`, noise `sigma_noise`):
/// the degraded input, TV (PDHG, box `[0, 1]`, best weight of a grid), PnP proximal gradient
/// (`F = (λ/2)‖Ax − y‖² + R_θ`, step 1, `λ = 0.99/‖A‖²`, `iters` iterations) and PnP-ADMM
/// (`ρ = 1`, best `λ` of a grid). Grids are chosen on the same images (oracle tuning for every
/// method alike).
pub fn deblur_table(
    net: &Icnn,
    clean: &Array2<f64>,
    sigma_blur: f64,
    sigma_noise: f64,
    iters: usize,
    seed: u64,
) -> Result<Vec<DeblurRow>> {
    let a = blur_matrix(sigma_blur)?;
    let y = add_noise(&clean.dot(&a.t()), sigma_noise, seed);
    let n = clean.nrows();
    let mean_psnr = |xs: &[Array1<f64>]| {
        xs.iter()
            .zip(clean.rows())
            .map(|(x, c)| psnr(x, &c))
            .sum::<f64>()
            / n as f64
    };
    let mut rows = vec![DeblurRow {
        method: "degraded input".into(),
        parameter: f64::NAN,
        psnr: mean_psnr(
            &y.rows()
                .into_iter()
                .map(|r| r.to_owned())
                .collect::<Vec<_>>(),
        ),
    }];
    // TV: min over [0,1] of ½‖Ax − y‖² + λ TV(x), PDHG.
    let mut best_tv = DeblurRow {
        method: "TV (PDHG)".into(),
        parameter: 0.0,
        psnr: f64::NEG_INFINITY,
    };
    let aop = DenseMatrix::new(a.clone())?;
    for lam in [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1] {
        let mut xs = Vec::new();
        for yi in y.rows() {
            let kop = Stack::new(&aop, Gradient2d::new(8, 8)?)?;
            let pairs: Vec<Vec<usize>> = (0..64).map(|p| vec![p, 64 + p]).collect();
            let g = SeparableSum::new(vec![
                (
                    64,
                    Box::new(Translate::new(SqrNormL2::new(1.0)?, yi.to_owned())?)
                        as Box<dyn Prox<f64>>,
                ),
                (128, Box::new(NormL21::new(Groups::new(128, pairs)?, lam)?)),
            ])?;
            let f = IndBox::new(0.0, 1.0)?;
            let sol = Pdhg::new(
                &f,
                &g,
                &kop,
                PdhgParams::default()
                    .with_tol(1e-6)
                    .relative(true)
                    .with_max_iters(20_000),
            )
            .run(yi.mapv(|v| v.clamp(0.0, 1.0)).view(), NoObserver)?;
            xs.push(sol.x);
        }
        let p = mean_psnr(&xs);
        if p > best_tv.psnr {
            best_tv = DeblurRow {
                method: "TV (PDHG)".into(),
                parameter: lam,
                psnr: p,
            };
        }
    }
    rows.push(best_tv);
    let prior = LpnProx::vector(net.clone());
    // PnP proximal gradient with step 1 on (λ/2)‖Ax − y‖², λ‖A‖² < 1.
    let (_, s, _) = <f64 as Real>::thin_svd(a.view())?;
    let lam = 0.99 / (s[0] * s[0]);
    let mut xs = Vec::new();
    for yi in y.rows() {
        let h = LeastSquares::new(
            DenseMatrix::new(&a * lam.sqrt())?,
            yi.to_owned() * lam.sqrt(),
        )?;
        let sol = Fista::new(
            &h,
            &prior,
            FistaParams::ista()
                .with_step(StepRule::Constant(1.0))
                .with_max_iters(iters)
                .with_tol(0.0),
        )
        .run(yi.view(), NoObserver)?;
        xs.push(sol.x);
    }
    rows.push(DeblurRow {
        method: "LPN PnP-PGD".into(),
        parameter: lam,
        psnr: mean_psnr(&xs),
    });
    // PnP-ADMM, ρ = 1: min (λ/2)‖Ax − y‖² + R_θ.
    let mut best = DeblurRow {
        method: "LPN PnP-ADMM".into(),
        parameter: 0.0,
        psnr: f64::NEG_INFINITY,
    };
    for lam in [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0] {
        let scaled = DenseMatrix::new(&a * f64::sqrt(lam))?;
        let mut xs = Vec::new();
        for yi in y.rows() {
            let sol = Admm::dense(
                &scaled,
                yi.to_owned() * f64::sqrt(lam),
                &prior,
                AdmmParams::default()
                    .with_rho(1.0)
                    .with_max_iters(iters)
                    .with_tol(0.0),
            )?
            .run(yi.view(), NoObserver)?;
            xs.push(sol.x);
        }
        let p = mean_psnr(&xs);
        if p > best.psnr {
            best = DeblurRow {
                method: "LPN PnP-ADMM".into(),
                parameter: lam,
                psnr: p,
            };
        }
    }
    rows.push(best);
    Ok(rows)
}
