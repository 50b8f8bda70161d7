//! `hyperprox lpn …`: learned proximal networks.

use clap::{Args, Subcommand, ValueEnum};
use hyperprox::core::io::shipped_data_dir;
use hyperprox::lpn::train::{image_schedule, laplacian_schedule, total_steps};
use hyperprox::lpn::{
    digits, laplace, regularizer_rows, Icnn, IcnnConfig, InvertParams, Stage, TrainState,
};
use hyperprox::report::{write_figure, ImagePanel, LinePlot, Series};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2, Axis};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

type CliResult<T> = Result<T, String>;

fn e2s(e: hyperprox::core::Error) -> String {
    e.to_string()
}

/// `hyperprox lpn` subcommands.
#[derive(Subcommand, Debug)]
pub enum LpnCommand {
    /// Train an LPN: `--data laplacian` (the paper's 1-D experiment) or `--data digits` (an
    /// 8×8 image prior). Writes OUT/model.json, OUT/checkpoint.json, OUT/report.json,
    /// OUT/figure.png.
    Train(TrainArgs),
    /// Apply f_θ to each row of a 2-D .npy array (or each entry of a 1-D array for a 1-D model).
    Apply(IoArgs),
    /// Evaluate the learned regularizer R_θ (f_θ = prox of R_θ) at each row / entry.
    Prior(IoArgs),
    /// Plug-and-play deblurring of test digits with a digits model: PnP-PGD and PnP-ADMM
    /// against TV; writes OUT/report.json and OUT/figure.png.
    Pnp(PnpArgs),
}

/// Data sets for training.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum DataSet {
    /// x ~ Laplace(0, 1), y = x + N(0, 1).
    Laplacian,
    /// The shipped handwritten digits (8×8), σ = 0.1.
    Digits,
}

/// Layer types.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ArchArg {
    /// Fully connected.
    Dense,
    /// Convolutional (images).
    Conv,
}

/// Training losses.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum LossArg {
    /// Mean squared error (learns the MMSE denoiser).
    L2,
    /// Mean absolute error (posterior median).
    L1,
    /// Proximal matching after ℓ1 pre-training (learns the MAP denoiser).
    ProxMatching,
}

/// Options of `lpn train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Data set.
    #[arg(long, value_enum)]
    data: DataSet,
    /// Loss (digits always use ℓ1 pre-training then proximal matching).
    #[arg(long, value_enum, default_value_t = LossArg::ProxMatching)]
    loss: LossArg,
    /// A shortened run (about a minute on 2 cores). Laplacian: the expected loss by quadrature
    /// (noise-free full-batch gradients, 2000–4500 steps, down to γ = 0.05) instead of the
    /// paper's 48 000 minibatch steps; digits: 600 + 4×150 steps instead of 4000 + 4×1000.
    #[arg(long)]
    quick: bool,
    /// Layers of the digits network: dense (3 × 128 units) or conv (3 × 16 channels, 3×3).
    #[arg(long, value_enum, default_value_t = ArchArg::Dense)]
    arch: ArchArg,
    /// Minibatch size (default: 2000 for laplacian as in the paper, 64 for digits).
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of the initialization and the minibatches.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Continue from OUT/checkpoint.json.
    #[arg(long)]
    resume: bool,
    /// Stop after this many steps in total (resume later with --resume).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Test digits on which the prior curves (R under noise and blur) are averaged.
    #[arg(long, default_value_t = 100)]
    prior_samples: usize,
    /// Write OUT/checkpoint.json every this many steps.
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// Options of `lpn apply` and `lpn prior`.
#[derive(Args, Debug)]
pub struct IoArgs {
    /// A model written by `lpn train` (model.json).
    #[arg(long)]
    model: PathBuf,
    /// Input .npy (2-D: one sample per row; 1-D: entries, for a 1-D model).
    #[arg(long)]
    input: PathBuf,
    /// Output .npy.
    #[arg(long)]
    out: PathBuf,
}

/// Options of `lpn pnp`.
#[derive(Args, Debug)]
pub struct PnpArgs {
    /// A digits model (model.json from `lpn train --data digits`).
    #[arg(long)]
    model: PathBuf,
    /// Number of test digits.
    #[arg(long, default_value_t = 20)]
    images: usize,
    /// Width of the Gaussian blur (5×5 kernel).
    #[arg(long, default_value_t = 1.0)]
    blur: f64,
    /// Noise level after blurring.
    #[arg(long, default_value_t = 0.02)]
    noise: f64,
    /// Iterations of PnP-PGD and PnP-ADMM.
    #[arg(long, default_value_t = 100)]
    iters: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

fn write_json(path: &Path, v: &serde_json::Value) -> CliResult<()> {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json") + "\n")
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn load_model(p: &Path) -> CliResult<Icnn> {
    let text = std::fs::read_to_string(p).map_err(|e| {
        format!(
            "{}: {e}; pass a model.json written by `hyperprox lpn train`",
            p.display()
        )
    })?;
    Icnn::from_json(&text).map_err(|e| format!("{}: {}", p.display(), e2s(e)))
}

/// Runs `hyperprox lpn …`.
pub fn run(cmd: LpnCommand) -> CliResult<()> {
    match cmd {
        LpnCommand::Train(a) => train_cmd(a),
        LpnCommand::Apply(a) => apply_or_prior(a, false),
        LpnCommand::Prior(a) => apply_or_prior(a, true),
        LpnCommand::Pnp(a) => pnp_cmd(a),
    }
}

fn read_rows(net: &Icnn, p: &Path) -> CliResult<(Array2<f64>, bool)> {
    let a = hyperprox::core::io::read_npy(p).map_err(e2s)?;
    let d = net.config().dim;
    match a.ndim() {
        1 if d == 1 => {
            let n = a.len();
            Ok((
                a.into_shape_with_order((n, 1)).map_err(|e| e.to_string())?,
                true,
            ))
        }
        1 => Err(format!(
            "{}: a 1-D array needs a 1-D model (this model has dim {d}); pass one sample per row",
            p.display()
        )),
        2 => {
            let a = a
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|e| e.to_string())?;
            if a.ncols() != d {
                return Err(format!(
                    "{}: {} columns, but the model expects {d}",
                    p.display(),
                    a.ncols()
                ));
            }
            Ok((a, false))
        }
        k => Err(format!(
            "{}: {k}-D array; pass a 1-D or 2-D array",
            p.display()
        )),
    }
}

fn apply_or_prior(a: IoArgs, prior: bool) -> CliResult<()> {
    if a.out.extension().and_then(|e| e.to_str()) != Some("npy") {
        return Err(format!("{}: the output must end in .npy", a.out.display()));
    }
    let net = load_model(&a.model)?;
    let (rows, flat) = read_rows(&net, &a.input)?;
    let t0 = Instant::now();
    if prior {
        let (r, res) = regularizer_rows(&net, rows.view(), InvertParams::default()).map_err(e2s)?;
        hyperprox::core::io::write_npy(&a.out, &r).map_err(e2s)?;
        println!(
            "{}",
            json!({"command": "lpn prior", "n": r.len(), "max_inversion_residual": res.iter().cloned().fold(0.0, f64::max), "time_s": t0.elapsed().as_secs_f64()})
        );
    } else {
        let f = net.prox(rows.view()).map_err(e2s)?;
        if flat {
            hyperprox::core::io::write_npy(&a.out, &f.column(0).to_owned()).map_err(e2s)?;
        } else {
            hyperprox::core::io::write_npy(&a.out, &f).map_err(e2s)?;
        }
        println!(
            "{}",
            json!({"command": "lpn apply", "n": f.nrows(), "time_s": t0.elapsed().as_secs_f64()})
        );
    }
    Ok(())
}

fn progress(n: u64) -> ProgressBar {
    let pb = ProgressBar::new(n);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed}<{eta}]")
            .expect("template"),
    );
    pb
}

/// How one training segment advances the state: `(state, target step, observer)`.
type Segment<'a> = dyn FnMut(&mut TrainState, &mut dyn FnMut(u64, f64) -> bool) -> hyperprox::core::Result<()>
    + 'a;

fn run_training(
    state: &mut TrainState,
    schedule: &[Stage],
    seg: &mut Segment<'_>,
    out: &Path,
    every: u64,
    max_steps: Option<u64>,
) -> CliResult<()> {
    let end = total_steps(schedule).min(max_steps.unwrap_or(u64::MAX));
    let pb = progress(end);
    pb.set_position(state.step);
    let mut err = None;
    let mut last_ckpt = state.step;
    // Train in segments so a checkpoint can be written between them.
    loop {
        let target = ((state.step / every.max(1) + 1) * every.max(1)).min(end);
        if state.step >= end {
            break;
        }
        seg(state, &mut |step, loss| {
            if step % 20 == 0 {
                pb.set_position(step);
                pb.set_message(format!("loss {loss:.4e}"));
            }
            step < target
        })
        .map_err(e2s)?;
        if state.step > last_ckpt {
            if let Err(e) = std::fs::write(out.join("checkpoint.json"), state.to_json()) {
                err = Some(format!("{}: {e}", out.join("checkpoint.json").display()));
                break;
            }
            last_ckpt = state.step;
        }
        if state.step >= end {
            break;
        }
    }
    pb.finish_and_clear();
    err.map_or(Ok(()), Err)
}

fn train_cmd(a: TrainArgs) -> CliResult<()> {
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let t0 = Instant::now();
    match a.data {
        DataSet::Laplacian => {
            if a.arch == ArchArg::Conv {
                return Err(
                    "--arch conv applies to images (--data digits); the 1-D model is dense".into(),
                );
            }
            let loss = match a.loss {
                LossArg::L2 => "l2",
                LossArg::L1 => "l1",
                LossArg::ProxMatching => "prox-matching",
            };
            let schedule = if a.quick {
                laplace::population_schedule(loss)
            } else {
                laplacian_schedule(loss, 1.0)
            }
            .map_err(e2s)?;
            let batch = a.batch.unwrap_or(2000);
            if batch == 0 {
                return Err("--batch must be at least 1".into());
            }
            let mut state = start_state(&a, IcnnConfig::paper_1d())?;
            if a.quick {
                let pop = laplace::Population::new(400, 561);
                let mut seg = |st: &mut TrainState, obs: &mut dyn FnMut(u64, f64) -> bool| {
                    laplace::train_population(st, &schedule, &pop, 50, obs)
                };
                run_training(
                    &mut state,
                    &schedule,
                    &mut seg,
                    &a.out,
                    a.checkpoint_every,
                    a.max_steps,
                )?;
            } else {
                let sampler = laplace::sampler(batch, a.seed);
                let mut seg = |st: &mut TrainState, obs: &mut dyn FnMut(u64, f64) -> bool| {
                    hyperprox::lpn::train(st, &schedule, &sampler, 50, obs)
                };
                run_training(
                    &mut state,
                    &schedule,
                    &mut seg,
                    &a.out,
                    a.checkpoint_every,
                    a.max_steps,
                )?;
            }
            let train_time = t0.elapsed().as_secs_f64();
            laplacian_report(&a, &state, &schedule, batch, train_time)
        }
        DataSet::Digits => {
            let data =
                hyperprox::core::io::read_digits_csv(&shipped_data_dir().join("digits/digits.csv"))
                    .map_err(e2s)?
                    .0;
            let (tr, te) = digits::split(&data, 1500, 0);
            let steps = if a.quick { 600 } else { 4000 };
            let schedule = image_schedule(64, steps);
            let batch = a.batch.unwrap_or(64);
            let cfg = if a.arch == ArchArg::Conv {
                digits::conv_config()
            } else {
                digits::config()
            };
            let mut state = start_state(&a, cfg)?;
            let sampler = hyperprox::lpn::train::dataset_sampler(tr, batch, 0.1, a.seed);
            let mut seg = |st: &mut TrainState, obs: &mut dyn FnMut(u64, f64) -> bool| {
                hyperprox::lpn::train(st, &schedule, &sampler, 50, obs)
            };
            run_training(
                &mut state,
                &schedule,
                &mut seg,
                &a.out,
                a.checkpoint_every,
                a.max_steps,
            )?;
            let train_time = t0.elapsed().as_secs_f64();
            digits_report(&a, &state, &schedule, &te, batch, train_time)
        }
    }
}

fn start_state(a: &TrainArgs, cfg: IcnnConfig) -> CliResult<TrainState> {
    if a.resume {
        let p = a.out.join("checkpoint.json");
        let text = std::fs::read_to_string(&p)
            .map_err(|e| format!("{}: {e}; run without --resume first", p.display()))?;
        let st = TrainState::from_json(&text).map_err(e2s)?;
        if st.net.config() != &cfg {
            return Err(format!(
                "{}: the checkpoint's architecture differs from --data {:?}",
                p.display(),
                a.data
            ));
        }
        Ok(st)
    } else {
        TrainState::new(Icnn::new(cfg, a.seed).map_err(e2s)?).map_err(e2s)
    }
}

fn loss_plot(state: &TrainState) -> LinePlot {
    LinePlot {
        title: "training loss (batch)".into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        log_x: false,
        log_y: true,
        series: vec![Series {
            name: "loss".into(),
            points: state.history.iter().map(|(s, l)| (*s as f64, *l)).collect(),
        }],
    }
}

fn schedule_json(s: &[Stage]) -> serde_json::Value {
    json!(s
        .iter()
        .map(|st| json!({"steps": st.steps, "lr": st.lr, "loss": st.loss.name()}))
        .collect::<Vec<_>>())
}

fn laplacian_report(
    a: &TrainArgs,
    state: &TrainState,
    schedule: &[Stage],
    batch: usize,
    train_time: f64,
) -> CliResult<()> {
    let net = &state.net;
    let grid = Array1::linspace(-4.0, 4.0, 161);
    let f = net.prox_scalar(grid.view()).map_err(e2s)?;
    let refs: Vec<(f64, f64)> = grid
        .iter()
        .map(|y| laplace::posterior_mean_median(*y))
        .collect();
    let maxdev = |g: &dyn Fn(usize) -> f64| {
        (0..grid.len())
            .map(|i| (f[i] - g(i)).abs())
            .fold(0.0, f64::max)
    };
    let dev_soft = maxdev(&|i| laplace::soft(grid[i]));
    let dev_mmse = maxdev(&|i| refs[i].0);
    let dev_median = maxdev(&|i| refs[i].1);
    let dead = (0..grid.len())
        .filter(|&i| grid[i].abs() <= 0.8)
        .map(|i| f[i].abs())
        .fold(0.0, f64::max);
    let f05 = net.prox_scalar(ndarray::array![0.5].view()).map_err(e2s)?[0];
    let xs = Array1::linspace(-3.0, 3.0, 121);
    let (r, res) = regularizer_rows(
        net,
        xs.clone().insert_axis(Axis(1)).view(),
        InvertParams::default(),
    )
    .map_err(e2s)?;
    let rmin = r.iter().cloned().fold(f64::INFINITY, f64::min);
    let dev_abs = xs
        .iter()
        .zip(&r)
        .map(|(x, v)| (v - rmin - x.abs()).abs())
        .fold(0.0, f64::max);
    let model_path = a.out.join("model.json");
    std::fs::write(&model_path, net.to_json())
        .map_err(|e| format!("{}: {e}", model_path.display()))?;
    let pts =
        |v: &dyn Fn(usize) -> f64| (0..grid.len()).map(|i| (grid[i], v(i))).collect::<Vec<_>>();
    let plots = vec![
        LinePlot {
            title: "learned prox f(y)".into(),
            x_label: "y".into(),
            y_label: "f(y)".into(),
            log_x: false,
            log_y: false,
            series: vec![
                Series {
                    name: format!(
                        "LPN ({})",
                        schedule.last().map(|s| s.loss.name()).unwrap_or_default()
                    ),
                    points: pts(&|i| f[i]),
                },
                Series {
                    name: "soft threshold (MAP)".into(),
                    points: pts(&|i| laplace::soft(grid[i])),
                },
                Series {
                    name: "MMSE".into(),
                    points: pts(&|i| refs[i].0),
                },
                Series {
                    name: "posterior median".into(),
                    points: pts(&|i| refs[i].1),
                },
            ],
        },
        LinePlot {
            title: "recovered prior".into(),
            x_label: "x".into(),
            y_label: "R(x) − min R".into(),
            log_x: false,
            log_y: false,
            series: vec![
                Series {
                    name: "R_θ".into(),
                    points: xs.iter().zip(&r).map(|(x, v)| (*x, v - rmin)).collect(),
                },
                Series {
                    name: "|x|".into(),
                    points: xs.iter().map(|x| (*x, x.abs())).collect(),
                },
            ],
        },
        loss_plot(state),
    ];
    write_figure(&a.out.join("figure.png"), &plots, &[])?;
    let report = json!({
        "data": "laplacian", "loss": match a.loss { LossArg::L2 => "l2", LossArg::L1 => "l1", LossArg::ProxMatching => "prox-matching" }, "quick": a.quick,
        "estimator": if a.quick { "population (quadrature)" } else { "minibatch" },
        "steps": state.step, "batch": batch, "schedule": schedule_json(schedule), "time_s": train_time,
        "final_batch_loss": state.history.last().map(|h| h.1),
        "max_dev_soft_threshold": dev_soft, "max_dev_mmse": dev_mmse, "max_dev_posterior_median": dev_median,
        "max_abs_f_on_abs_y_le_0_8": dead, "f_at_0_5": f05, "mmse_at_0_5": laplace::posterior_mean_median(0.5).0,
        "max_dev_prior_from_abs_x": dev_abs, "max_inversion_residual": res.iter().cloned().fold(0.0, f64::max),
        "model": model_path.display().to_string(),
    });
    write_json(&a.out.join("report.json"), &report)?;
    println!("{report}");
    Ok(())
}

fn digits_report(
    a: &TrainArgs,
    state: &TrainState,
    schedule: &[Stage],
    test: &Array2<f64>,
    batch: usize,
    train_time: f64,
) -> CliResult<()> {
    let net = &state.net;
    let model_path = a.out.join("model.json");
    std::fs::write(&model_path, net.to_json())
        .map_err(|e| format!("{}: {e}", model_path.display()))?;
    let noisy = digits::add_noise(test, 0.1, 77);
    let den = net.prox(noisy.view()).map_err(e2s)?;
    let mean_psnr = |x: &Array2<f64>| {
        x.rows()
            .into_iter()
            .zip(test.rows())
            .map(|(r, c)| digits::psnr(&r, &c))
            .sum::<f64>()
            / test.nrows() as f64
    };
    let (pn, pd) = (mean_psnr(&noisy), mean_psnr(&den));
    let sub = test
        .slice(ndarray::s![..100.min(test.nrows()), ..])
        .to_owned();
    let noise_levels = [0.0, 0.05, 0.1, 0.2, 0.3];
    let blur_levels = [0.0, 0.5, 1.0, 2.0];
    let (nc, bc) = digits::prior_curves(net, &sub, &noise_levels, &blur_levels, 5).map_err(e2s)?;
    let img =
        |r: ndarray::ArrayView1<'_, f64>| r.to_owned().into_shape_with_order((8, 8)).expect("8x8");
    let panels = vec![
        ImagePanel {
            caption: format!(
                "noisy σ=0.1 ({:.1} dB)",
                digits::psnr(&noisy.row(0), &test.row(0))
            ),
            image: img(noisy.row(0)),
        },
        ImagePanel {
            caption: format!(
                "LPN f(y) ({:.1} dB)",
                digits::psnr(&den.row(0), &test.row(0))
            ),
            image: img(den.row(0)),
        },
        ImagePanel {
            caption: "clean".into(),
            image: img(test.row(0)),
        },
    ];
    let plots = vec![
        LinePlot {
            title: "R_θ under noise".into(),
            x_label: "noise σ".into(),
            y_label: "mean R_θ".into(),
            log_x: false,
            log_y: false,
            series: vec![Series {
                name: format!("{} test digits", sub.nrows()),
                points: nc.iter().map(|p| (p.0, p.1)).collect(),
            }],
        },
        LinePlot {
            title: "R_θ under blur".into(),
            x_label: "blur σ".into(),
            y_label: "mean R_θ".into(),
            log_x: false,
            log_y: false,
            series: vec![Series {
                name: format!("{} test digits", sub.nrows()),
                points: bc.iter().map(|p| (p.0, p.1)).collect(),
            }],
        },
        loss_plot(state),
    ];
    write_figure(&a.out.join("figure.png"), &plots, &panels)?;
    let report = json!({
        "data": "digits", "arch": format!("{:?}", a.arch).to_lowercase(), "loss": "l1 then prox-matching", "quick": a.quick, "steps": state.step, "batch": batch,
        "schedule": schedule_json(schedule), "time_s": train_time,
        "test_images": test.nrows(), "psnr_noisy": pn, "psnr_denoised": pd,
        "prior_vs_noise": nc.iter().map(|p| json!({"sigma": p.0, "mean_r": p.1, "max_inversion_residual": p.2})).collect::<Vec<_>>(),
        "prior_vs_blur": bc.iter().map(|p| json!({"sigma": p.0, "mean_r": p.1, "max_inversion_residual": p.2})).collect::<Vec<_>>(),
        "model": model_path.display().to_string(),
    });
    write_json(&a.out.join("report.json"), &report)?;
    println!("{report}");
    Ok(())
}

fn pnp_cmd(a: PnpArgs) -> CliResult<()> {
    let net = load_model(&a.model)?;
    if net.config().dim != 64 {
        return Err(format!(
            "{}: pnp needs a digits model (dim 64), this one has dim {}",
            a.model.display(),
            net.config().dim
        ));
    }
    if a.images == 0 || !(a.blur >= 0.0) || !(a.noise >= 0.0) || a.iters == 0 {
        return Err(
            "--images and --iters must be positive, --blur and --noise non-negative".into(),
        );
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let data = hyperprox::core::io::read_digits_csv(&shipped_data_dir().join("digits/digits.csv"))
        .map_err(e2s)?
        .0;
    let (_, te) = digits::split(&data, 1500, 0);
    let clean = te
        .slice(ndarray::s![..a.images.min(te.nrows()), ..])
        .to_owned();
    let t0 = Instant::now();
    let rows = digits::deblur_table(&net, &clean, a.blur, a.noise, a.iters, 3).map_err(e2s)?;
    let report = json!({
        "problem": "digits deblurring", "images": clean.nrows(), "blur": a.blur, "noise": a.noise, "iters": a.iters,
        "table": rows.iter().map(|r| json!({"method": r.method, "parameter": if r.parameter.is_finite() { json!(r.parameter) } else { json!(null) }, "psnr": r.psnr})).collect::<Vec<_>>(),
        "time_s": t0.elapsed().as_secs_f64(),
    });
    let plot = LinePlot {
        title: "mean PSNR (dB)".into(),
        x_label: "method (0 input, 1 TV, 2 PnP-PGD, 3 PnP-ADMM)".into(),
        y_label: "PSNR".into(),
        log_x: false,
        log_y: false,
        series: vec![Series {
            name: "PSNR".into(),
            points: rows
                .iter()
                .enumerate()
                .map(|(i, r)| (i as f64, r.psnr))
                .collect(),
        }],
    };
    write_figure(&a.out.join("figure.png"), &[plot], &[])?;
    write_json(&a.out.join("report.json"), &report)?;
    println!("{report}");
    Ok(())
}
