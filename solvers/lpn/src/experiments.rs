//! The LPN experiments as library functions: the 1-D Laplacian evaluation (learned prox
//! against soft thresholding, the MMSE and the posterior median; the recovered prior against
//! `|x|`), the digits evaluation (denoising PSNR, the prior under noise and blur) and the
//! plug-and-play deblurring table. Each returns a serializable report and a [`Figure`];
//! `hyperprox lpn …` writes them.

use crate::digits;
use crate::laplace;
use crate::train::{Stage, TrainState};
use crate::{regularizer_rows, Icnn, InvertParams};
use hyperprox_core::error::Result;
use hyperprox_core::figure::{Figure, ImagePanel, LinePlot, Series};
use ndarray::{Array1, Array2, ArrayView1, Axis};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The loss of the 1-D experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LaplacianLoss {
    /// Mean squared error (learns the MMSE denoiser).
    L2,
    /// Mean absolute error (posterior median).
    L1,
    /// Proximal matching after ℓ1 pre-training (learns the MAP denoiser).
    ProxMatching,
}

impl LaplacianLoss {
    /// `l2`, `l1` or `prox-matching` (the names the schedules take).
    pub fn as_str(&self) -> &'static str {
        match self {
            LaplacianLoss::L2 => "l2",
            LaplacianLoss::L1 => "l1",
            LaplacianLoss::ProxMatching => "prox-matching",
        }
    }
}

/// One stage of a schedule, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct StageInfo {
    /// Steps.
    pub steps: u64,
    /// Learning rate.
    pub lr: f64,
    /// Loss name.
    pub loss: String,
}

/// What a training run did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainingInfo {
    /// Steps done.
    pub steps: u64,
    /// Minibatch size.
    pub batch: usize,
    /// The schedule.
    pub schedule: Vec<StageInfo>,
    /// Wall-clock seconds of training.
    pub time_s: f64,
    /// Loss of the last logged batch.
    pub final_batch_loss: Option<f64>,
}

impl TrainingInfo {
    /// The summary of `state` trained on `schedule`.
    pub fn of(state: &TrainState, schedule: &[Stage], batch: usize, time_s: f64) -> Self {
        Self {
            steps: state.step,
            batch,
            schedule: schedule
                .iter()
                .map(|s| StageInfo {
                    steps: s.steps,
                    lr: s.lr,
                    loss: s.loss.name(),
                })
                .collect(),
            time_s,
            final_batch_loss: state.history.last().map(|h| h.1),
        }
    }
}

/// The training loss per logged step.
pub fn loss_plot(state: &TrainState) -> LinePlot {
    let points = state.history.iter().map(|(s, l)| (*s as f64, *l)).collect();
    LinePlot::new("training loss (batch)", "step", "loss")
        .log(false, true)
        .with(Series::new("loss", points))
}

/// The 1-D Laplacian evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct LaplacianEval {
    /// `max |f(y) − soft(y)|` on `y ∈ [−4, 4]` (the MAP denoiser).
    pub max_dev_soft_threshold: f64,
    /// `max |f(y) − E[x|y]|`.
    pub max_dev_mmse: f64,
    /// `max |f(y) − median(x|y)|`.
    pub max_dev_posterior_median: f64,
    /// `max |f(y)|` on `|y| ≤ 0.8` (the dead zone of soft thresholding).
    pub max_abs_f_on_abs_y_le_0_8: f64,
    /// `f(0.5)`.
    pub f_at_0_5: f64,
    /// `E[x | y = 0.5]`.
    pub mmse_at_0_5: f64,
    /// `max |R(x) − min R − |x||` on `x ∈ [−3, 3]`.
    pub max_dev_prior_from_abs_x: f64,
    /// Worst residual of the inversions behind `R`.
    pub max_inversion_residual: f64,
}

fn max_abs_dev(a: &[f64], b: impl Fn(usize) -> f64) -> f64 {
    a.iter()
        .enumerate()
        .map(|(i, v)| (v - b(i)).abs())
        .fold(0.0, f64::max)
}

/// Evaluates a 1-D model against the Laplacian experiment's references (161 points on
/// `[−4, 4]`, the prior on 121 points of `[−3, 3]`).
pub fn laplacian_eval(net: &Icnn, loss_name: &str) -> Result<(LaplacianEval, Vec<LinePlot>)> {
    let grid = Array1::linspace(-4.0, 4.0, 161);
    let f = net.prox_scalar(grid.view())?.to_vec();
    let refs: Vec<(f64, f64)> = grid
        .iter()
        .map(|y| laplace::posterior_mean_median(*y))
        .collect();
    let dead = (0..grid.len())
        .filter(|&i| grid[i].abs() <= 0.8)
        .map(|i| f[i].abs())
        .fold(0.0, f64::max);
    let xs = Array1::linspace(-3.0, 3.0, 121);
    let col = xs.clone().insert_axis(Axis(1));
    let (r, res) = regularizer_rows(net, col.view(), InvertParams::default())?;
    let rmin = r.iter().cloned().fold(f64::INFINITY, f64::min);
    let dev_abs = max_abs_dev(&(&r - rmin).to_vec(), |i| xs[i].abs());
    let eval = LaplacianEval {
        max_dev_soft_threshold: max_abs_dev(&f, |i| laplace::soft(grid[i])),
        max_dev_mmse: max_abs_dev(&f, |i| refs[i].0),
        max_dev_posterior_median: max_abs_dev(&f, |i| refs[i].1),
        max_abs_f_on_abs_y_le_0_8: dead,
        f_at_0_5: net.prox_scalar(ndarray::array![0.5].view())?[0],
        mmse_at_0_5: laplace::posterior_mean_median(0.5).0,
        max_dev_prior_from_abs_x: dev_abs,
        max_inversion_residual: res.iter().cloned().fold(0.0, f64::max),
    };
    let on_grid = |v: &dyn Fn(usize) -> f64| (0..grid.len()).map(|i| (grid[i], v(i))).collect();
    let prox = LinePlot::new("learned prox f(y)", "y", "f(y)")
        .with(Series::new(
            format!("LPN ({loss_name})"),
            on_grid(&|i| f[i]),
        ))
        .with(Series::new(
            "soft threshold (MAP)",
            on_grid(&|i| laplace::soft(grid[i])),
        ))
        .with(Series::new("MMSE", on_grid(&|i| refs[i].0)))
        .with(Series::new("posterior median", on_grid(&|i| refs[i].1)));
    let prior = LinePlot::new("recovered prior", "x", "R(x) − min R")
        .with(Series::new(
            "R_θ",
            xs.iter().zip(&r).map(|(x, v)| (*x, v - rmin)).collect(),
        ))
        .with(Series::new(
            "|x|",
            xs.iter().map(|x| (*x, x.abs())).collect(),
        ));
    Ok((eval, vec![prox, prior]))
}

/// The shipped digits split into 1500 training and the remaining test images (seed 0).
pub fn digits_split() -> Result<(Array2<f64>, Array2<f64>)> {
    let path = hyperprox_core::io::shipped_data_dir().join("digits/digits.csv");
    let data = hyperprox_core::io::read_digits_csv(&path)?.0;
    Ok(digits::split(&data, 1500, 0))
}

/// Mean `R_θ` of test digits perturbed by one noise or blur level.
#[derive(Clone, Debug, Serialize)]
pub struct PriorPoint {
    /// Noise or blur level.
    pub sigma: f64,
    /// Mean `R_θ`.
    pub mean_r: f64,
    /// Worst inversion residual.
    pub max_inversion_residual: f64,
}

/// The digits evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct DigitsEval {
    /// Test digits.
    pub test_images: usize,
    /// Mean PSNR of the noisy test digits (σ = 0.1).
    pub psnr_noisy: f64,
    /// Mean PSNR of `f(y)`.
    pub psnr_denoised: f64,
    /// `R_θ` against the noise level.
    pub prior_vs_noise: Vec<PriorPoint>,
    /// `R_θ` against the blur width.
    pub prior_vs_blur: Vec<PriorPoint>,
}

fn mean_row_psnr(x: &Array2<f64>, clean: &Array2<f64>) -> f64 {
    x.rows()
        .into_iter()
        .zip(clean.rows())
        .map(|(r, c)| digits::psnr(&r, &c))
        .sum::<f64>()
        / clean.nrows() as f64
}

fn digit(r: ArrayView1<'_, f64>) -> Array2<f64> {
    Array2::from_shape_fn((8, 8), |(i, j)| r[8 * i + j])
}

/// Evaluates a digits model: denoising PSNR on `test` (σ = 0.1, seed 77) and the mean prior
/// of the first `prior_samples` test digits under noise (0–0.3) and blur (0–2).
pub fn digits_eval(
    net: &Icnn,
    test: &Array2<f64>,
    prior_samples: usize,
) -> Result<(DigitsEval, Figure)> {
    if prior_samples == 0 {
        return Err(hyperprox_core::Error::param(
            "prior samples",
            0,
            "must be at least 1",
        ));
    }
    let noisy = digits::add_noise(test, 0.1, 77);
    let den = net.prox(noisy.view())?;
    let sub = test
        .slice(ndarray::s![..prior_samples.min(test.nrows()), ..])
        .to_owned();
    let noise_levels = [0.0, 0.05, 0.1, 0.2, 0.3];
    let blur_levels = [0.0, 0.5, 1.0, 2.0];
    let (nc, bc) = digits::prior_curves(net, &sub, &noise_levels, &blur_levels, 5)?;
    let points = |c: &[(f64, f64, f64)]| -> Vec<PriorPoint> {
        c.iter()
            .map(|p| PriorPoint {
                sigma: p.0,
                mean_r: p.1,
                max_inversion_residual: p.2,
            })
            .collect()
    };
    let p0 = |x: &Array2<f64>| digits::psnr(&x.row(0), &test.row(0));
    let panels = vec![
        ImagePanel::new(
            format!("noisy σ=0.1 ({:.1} dB)", p0(&noisy)),
            digit(noisy.row(0)),
        ),
        ImagePanel::new(format!("LPN f(y) ({:.1} dB)", p0(&den)), digit(den.row(0))),
        ImagePanel::new("clean", digit(test.row(0))),
    ];
    let curve = |title: &str, x: &str, c: &[(f64, f64, f64)]| {
        LinePlot::new(title, x, "mean R_θ").with(Series::new(
            format!("{} test digits", sub.nrows()),
            c.iter().map(|p| (p.0, p.1)).collect(),
        ))
    };
    let eval = DigitsEval {
        test_images: test.nrows(),
        psnr_noisy: mean_row_psnr(&noisy, test),
        psnr_denoised: mean_row_psnr(&den, test),
        prior_vs_noise: points(&nc),
        prior_vs_blur: points(&bc),
    };
    let plots = vec![
        curve("R_θ under noise", "noise σ", &nc),
        curve("R_θ under blur", "blur σ", &bc),
    ];
    Ok((eval, Figure { plots, panels }))
}

/// One row of the plug-and-play table.
#[derive(Clone, Debug, Serialize)]
pub struct PnpRow {
    /// Method.
    pub method: String,
    /// Its tuning parameter (`None` where there is none).
    pub parameter: Option<f64>,
    /// Mean PSNR.
    pub psnr: f64,
}

/// The plug-and-play deblurring table.
#[derive(Clone, Debug, Serialize)]
pub struct PnpReport {
    /// Always `digits deblurring`.
    pub problem: &'static str,
    /// Test digits.
    pub images: usize,
    /// Blur width.
    pub blur: f64,
    /// Noise level.
    pub noise: f64,
    /// PnP iterations.
    pub iters: usize,
    /// Input, TV, PnP-PGD, PnP-ADMM.
    pub table: Vec<PnpRow>,
    /// Wall-clock seconds.
    pub time_s: f64,
}

/// Plug-and-play deblurring of the first `images` test digits with a digits model (see
/// [`digits::deblur_table`]).
pub fn pnp(
    net: &Icnn,
    images: usize,
    (blur, noise): (f64, f64),
    iters: usize,
) -> Result<(PnpReport, Figure)> {
    let (_, te) = digits_split()?;
    let clean = te
        .slice(ndarray::s![..images.min(te.nrows()), ..])
        .to_owned();
    let t0 = Instant::now();
    let rows = digits::deblur_table(net, &clean, blur, noise, iters, 3)?;
    let table: Vec<PnpRow> = rows
        .into_iter()
        .map(|r| PnpRow {
            method: r.method,
            parameter: r.parameter.is_finite().then_some(r.parameter),
            psnr: r.psnr,
        })
        .collect();
    let psnrs: Vec<f64> = table.iter().map(|r| r.psnr).collect();
    let plot = LinePlot::new(
        "mean PSNR (dB)",
        "method (0 input, 1 TV, 2 PnP-PGD, 3 PnP-ADMM)",
        "PSNR",
    )
    .with(Series::indexed("PSNR", &psnrs, 0));
    let report = PnpReport {
        problem: "digits deblurring",
        images: clean.nrows(),
        blur,
        noise,
        iters,
        table,
        time_s: t0.elapsed().as_secs_f64(),
    };
    Ok((
        report,
        Figure {
            plots: vec![plot],
            panels: vec![],
        },
    ))
}
