//! `hyperprox tune …` and `hyperprox demo`: bilevel learning of hyperparameters.

use super::common::{
    check_out_dir, create_dir, print_line, progress, read_json, usage, write_outputs, CliError,
    CliResult,
};
use clap::{Args, Subcommand, ValueEnum};
use hyperprox::bilevel::composed::spec::ModelSpec;
use hyperprox::bilevel::experiments::{
    self, noisy_images, Checkpointing, OuterMethod, OuterSettings, OuterState, Tuned, TvData,
    TvSpec,
};
use hyperprox::bilevel::{LassoTuning, MultinomialLogistic, OuterRecord, TvModel};
use hyperprox::core::func::TvKind;
use hyperprox::core::io::{read_npy_1d, read_npy_2d, shipped_data_dir};
use indicatif::ProgressBar;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Problems for `hyperprox tune`.
#[derive(Subcommand, Debug, Clone)]
pub enum TuneProblem {
    /// TV denoising: learn log λ (and log ν) of ½‖x − y‖² + λ·TV_ν(x) on Kodak images with
    /// added noise, or on your own clean/noisy pairs (--clean, --noisy).
    Tv(ImageArgs),
    /// TV denoising: MAID against HOAG at equal work (the MAID paper's comparison), scored by
    /// the exact loss at the smallest total work of the runs.
    TvCompare(CompareArgs),
    /// Field-of-experts denoising: learn filters, weights and smoothings (2449 parameters with
    /// the paper's 48 filters 7×7).
    Foe(FoeArgs),
    /// Multinomial logistic regression on the shipped digits with one weight decay per weight.
    Logreg(LogregArgs),
    /// Lasso λ on held-out data (implicit gradient over the support), against a 50-point grid.
    Lasso(LassoArgs),
    /// Your own variational model from a JSON spec (forward operator, regularizers, starting
    /// weights; see examples/deblur_tv_huber.json): learns its weights (and smoothings) on
    /// clean/degraded pairs with certified hypergradients, no derivatives to write.
    Variational(VariationalArgs),
}

/// Options of `tune variational`.
#[derive(Args, Debug, Clone)]
pub struct VariationalArgs {
    /// The model: a JSON spec (paths in it are relative to its folder).
    #[arg(long)]
    spec: PathBuf,
    /// Clean images: an .npy stack (N × H × W) or a folder of PNG images (default: the shipped
    /// Kodak set, --images of them at --size).
    #[arg(long)]
    clean: Option<PathBuf>,
    /// Degraded images in the same form as --clean (paired by file name). Without it they are
    /// made from the clean ones by the spec's forward operator and noise --sigma.
    #[arg(long, requires = "clean", conflicts_with_all = ["sigma", "seed"])]
    noisy: Option<PathBuf>,
    /// Number of shipped images (without --clean).
    #[arg(long, default_value_t = 4, conflicts_with = "clean")]
    images: usize,
    /// Side of the shipped images (without --clean).
    #[arg(long, default_value_t = 64, conflicts_with = "clean")]
    size: usize,
    /// Noise level added to the synthesized degraded images.
    #[arg(long)]
    sigma: Option<f64>,
    /// Seed of that noise.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    outer: OuterArgs,
}

impl VariationalArgs {
    /// The clean/degraded pairs and the noise level when synthesized.
    fn pairs(
        &self,
        spec: &ModelSpec,
        base: &Path,
    ) -> hyperprox::core::Result<(experiments::ImagePairs, Option<f64>)> {
        if let (Some(c), Some(n)) = (&self.clean, &self.noisy) {
            return Ok((experiments::load_image_pairs(c, n)?, None));
        }
        let clean = match &self.clean {
            Some(c) => experiments::load_image_pairs(c, c)?.0,
            None => {
                let dir = shipped_data_dir().join("kodak/gray96");
                hyperprox::bilevel::data::load_images(&dir, self.images, self.size)?
            }
        };
        let sigma = self.sigma.unwrap_or(0.01);
        let degraded = spec.degrade(base, &clean, sigma, self.seed.unwrap_or(7))?;
        Ok(((clean, degraded), Some(sigma)))
    }
}

/// Settings of the outer method and the output folder.
#[derive(Args, Debug, Clone)]
pub struct OuterArgs {
    #[command(flatten)]
    settings: OuterSettings,
    /// Output folder (created if missing): report.json, history.json, figure.png, and
    /// checkpoint.json after every outer iteration.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run whose checkpoint.json is in the output folder (same options); the
    /// result is bit for bit that of an uninterrupted run.
    #[arg(long)]
    resume: bool,
}

/// Image options (TV).
#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    #[command(flatten)]
    set: ImageSet,
    #[command(flatten)]
    model: TvModelArgs,
    #[command(flatten)]
    outer: OuterArgs,
}

/// The TV model of `tune tv`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TvChoice {
    /// Σ_p √((D_h x)_p² + ν²) + √((D_v x)_p² + ν²) over the differences inside the image (the
    /// MAID paper's).
    Anisotropic,
    /// Σ_p √((D_h x)_p² + (D_v x)_p² + ν²), forward differences, Neumann boundary.
    Isotropic,
}

/// Your own data and the lower-level model of `tune tv`.
#[derive(Args, Debug, Clone)]
pub struct TvModelArgs {
    /// Clean images: an .npy stack (N × H × W) or a folder of PNG images (paired by file name
    /// with --noisy). Replaces --data, --images, --size, --sigma and --seed.
    #[arg(long, requires = "noisy", conflicts_with_all = ["data", "images", "size", "sigma", "seed"])]
    clean: Option<PathBuf>,
    /// Noisy (degraded) images, in the same form as --clean.
    #[arg(long, requires = "clean")]
    noisy: Option<PathBuf>,
    /// The smoothed TV of the lower level.
    #[arg(long = "tv", value_enum, default_value_t = TvChoice::Anisotropic)]
    tv: TvChoice,
    /// The starting smoothing ν (learned), or its value with --fix-smoothing (default e^-5).
    #[arg(long, allow_negative_numbers = true)]
    smoothing: Option<f64>,
    /// Keep ν fixed at --smoothing and learn the weight λ only.
    #[arg(long, requires = "smoothing")]
    fix_smoothing: bool,
    /// The starting weight λ (default e^-5, the paper's).
    #[arg(long, allow_negative_numbers = true)]
    lambda0: Option<f64>,
    /// Hold out the last round(f·N) pairs (name or stack order) and report the upper loss and
    /// PSNR on them.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    val_fraction: f64,
}

impl TvModelArgs {
    /// The problem set-up (checked).
    fn spec(&self, reference: bool) -> hyperprox::core::Result<TvSpec> {
        let d = TvSpec::default();
        let kind = match self.tv {
            TvChoice::Anisotropic => TvKind::Anisotropic,
            TvChoice::Isotropic => TvKind::Isotropic,
        };
        let smoothing0 = self.smoothing.unwrap_or(d.smoothing0);
        Ok(TvSpec {
            model: TvModel {
                kind,
                fixed_smoothing: self.fix_smoothing.then_some(smoothing0),
            },
            lambda0: self.lambda0.unwrap_or(d.lambda0),
            smoothing0,
            reference,
        })
    }

    /// The pairs: the user's (--clean, --noisy) or the image set with added noise, split.
    fn data(&self, set: &ImageSet) -> hyperprox::core::Result<TvData> {
        let (pairs, sigma) = match (&self.clean, &self.noisy) {
            (Some(c), Some(n)) => (experiments::load_image_pairs(c, n)?, None),
            _ => (set.pairs()?, Some(set.sigma)),
        };
        let (train, validation) = experiments::split_pairs(pairs, self.val_fraction)?;
        Ok(TvData {
            train,
            validation,
            sigma,
        })
    }
}

/// TV comparison options.
#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    #[command(flatten)]
    set: ImageSet,
    /// The methods, comma-separated (replaces --method).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [
        OuterMethod::Maid, OuterMethod::HoagGeometric, OuterMethod::HoagQuadratic,
        OuterMethod::HoagCubic,
    ])]
    methods: Vec<OuterMethod>,
    #[command(flatten)]
    run: OuterArgs,
}

/// The TV image set.
#[derive(Args, Debug, Clone)]
pub struct ImageSet {
    /// Folder of PNG images (default: the shipped Kodak set at 96×96).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Number of images (sorted by name).
    #[arg(long, default_value_t = 25)]
    images: usize,
    /// Images resized to size × size.
    #[arg(long, default_value_t = 96)]
    size: usize,
    /// Noise level.
    #[arg(long, default_value_t = 0.1)]
    sigma: f64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 19)]
    seed: u64,
    /// Use the MAID reference code's convention: TV weight ½λ, constants μ = L_g = 1 and
    /// L = 1 + √8·λ/ν of the un-averaged problem, ‖J‖, L_J, L_{H⁻¹} estimated (not certified).
    #[arg(long)]
    reference_convention: bool,
}

impl ImageSet {
    fn pairs(&self) -> hyperprox::core::Result<experiments::ImagePairs> {
        let dir = self
            .data
            .clone()
            .unwrap_or_else(|| shipped_data_dir().join("kodak").join("gray96"));
        noisy_images(&dir, 0, self.images, self.size, self.sigma, self.seed)
    }
}

/// Field-of-experts options.
#[derive(Args, Debug, Clone)]
pub struct FoeArgs {
    /// Folder of PNG images (default: the shipped Kodak set at 256×256).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Skip the first images (the paper uses Kodak 6..25).
    #[arg(long, default_value_t = 5)]
    skip: usize,
    /// Number of images.
    #[arg(long, default_value_t = 20)]
    images: usize,
    /// Images resized to size × size.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Noise level.
    #[arg(long, default_value_t = 0.1)]
    sigma: f64,
    /// Seed of the noise and of the filter initialization.
    #[arg(long, default_value_t = 31)]
    seed: u64,
    /// Number of filters.
    #[arg(long, default_value_t = 48)]
    filters: usize,
    /// Filter size.
    #[arg(long, default_value_t = 7)]
    filter_size: usize,
    #[command(flatten)]
    outer: OuterArgs,
}

/// Multinomial-logistic options.
#[derive(Args, Debug, Clone)]
pub struct LogregArgs {
    /// Digits CSV (default: the shipped data/digits/digits.csv).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training samples (the rest is the validation set).
    #[arg(long, default_value_t = 900)]
    n_train: usize,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    outer: OuterArgs,
}

/// Lasso options.
#[derive(Args, Debug, Clone)]
pub struct LassoArgs {
    /// Training design matrix (.npy, n × p).
    #[arg(long)]
    a_train: PathBuf,
    /// Training targets (.npy, n).
    #[arg(long)]
    b_train: PathBuf,
    /// Validation design matrix (.npy, n_v × p).
    #[arg(long)]
    a_val: PathBuf,
    /// Validation targets (.npy, n_v).
    #[arg(long)]
    b_val: PathBuf,
    /// Maximum gradient steps on log λ.
    #[arg(long, default_value_t = 50)]
    max_iters: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// An observer that moves a progress bar over the outer iterations.
fn outer_progress(pb: &ProgressBar) -> impl FnMut(&OuterRecord) -> bool + '_ {
    move |r: &OuterRecord| {
        pb.set_position(r.iter as u64);
        pb.set_message(format!(
            "loss {:.5e}  ε {:.2e}  work {}",
            r.upper,
            r.eps,
            r.work()
        ));
        true
    }
}

const CHECKPOINT_FORMAT: &str = "hyperprox-tune-checkpoint-v1";

/// The options of a run as its checkpoint records them (`--resume` aside).
fn fingerprint(problem: &TuneProblem) -> String {
    let mut p = problem.clone();
    match &mut p {
        TuneProblem::Tv(a) => a.outer.resume = false,
        TuneProblem::Foe(a) => a.outer.resume = false,
        TuneProblem::Logreg(a) => a.outer.resume = false,
        TuneProblem::TvCompare(a) => a.run.resume = false,
        TuneProblem::Variational(a) => a.outer.resume = false,
        TuneProblem::Lasso(_) => {}
    }
    format!("{p:?}")
}

/// Reads `out/checkpoint.json` for `--resume`, checking that it was written with the same
/// options.
fn read_checkpoint(out: &Path, options: &str) -> CliResult<OuterState> {
    let path = out.join("checkpoint.json");
    let v = read_json(&path, "run without --resume to start afresh")?;
    if v["format"] != CHECKPOINT_FORMAT {
        return usage(format!("{}: not a tune checkpoint", path.display()));
    }
    if v["options"] != options {
        return usage(format!(
            "{}: written with other options ({}); resume with the same options",
            path.display(),
            v["options"]
        ));
    }
    serde_json::from_value(v["state"].clone())
        .map_err(|e| CliError::Usage(format!("{}: damaged checkpoint ({e})", path.display())))
}

/// Runs an experiment with a progress bar over `max_iters` outer iterations and writes its
/// outputs to `out`; with `ckpt = Some((options, resume))` it writes `out/checkpoint.json`
/// after every outer iteration (creating `out` then) and, if `resume`, continues from it.
fn with_progress<R: Serialize, H: Serialize>(
    out: &Path,
    max_iters: usize,
    ckpt: Option<(String, bool)>,
    f: impl FnOnce(&ProgressBar, Option<Checkpointing<'_>>) -> hyperprox::core::Result<Tuned<R, H>>,
) -> CliResult<R> {
    check_out_dir(out)?;
    let resume = match &ckpt {
        Some((options, true)) => Some(read_checkpoint(out, options)?),
        _ => None,
    };
    let path = out.join("checkpoint.json");
    let options = ckpt.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    let root = super::parallel::is_root();
    let mut save = |state: &OuterState| -> hyperprox::core::Result<()> {
        let step = match state {
            OuterState::Maid(s) => s.iter,
            OuterState::Hoag(s) => s.iter,
        };
        super::parallel::injected_failure(step as u64)?;
        // Only rank 0 writes; the ranks agree on its outcome (see experiments::drive_outer).
        if !root {
            return Ok(());
        }
        std::fs::create_dir_all(out).map_err(|e| hyperprox::core::Error::Io {
            path: out.display().to_string(),
            source: e,
        })?;
        let v = serde_json::json!({
            "format": CHECKPOINT_FORMAT,
            "options": options,
            "state": state,
        });
        hyperprox::core::io::write_atomic(&path, (v.to_string() + "\n").as_bytes())
    };
    let checkpointing = ckpt.is_some().then(|| Checkpointing {
        resume,
        save: &mut save,
    });
    let pb = if root {
        progress(max_iters as u64, "outer its")
    } else {
        ProgressBar::hidden()
    };
    let t = f(&pb, checkpointing);
    pb.finish_and_clear();
    let t = t?;
    // Created only now: bad input (an empty image folder, 0 images) leaves nothing behind.
    super::parallel::root_writes(|| {
        create_dir(out)?;
        write_outputs(out, &t.report, Some(&t.history), &t.figure)?;
        print_line(&t.report);
        Ok(())
    })?;
    Ok(t.report)
}

/// Runs `hyperprox tune tv-compare`.
fn compare(a: CompareArgs) -> CliResult<()> {
    let o = a.run.settings;
    let total = o.max_iters * a.methods.len();
    with_progress(&a.run.out, total, None, |pb, _| {
        let pairs = a.set.pairs()?;
        let mut done = 0;
        let mut last = "";
        let (sigma, reference) = (a.set.sigma, a.set.reference_convention);
        experiments::compare_tv(&pairs, sigma, reference, &o, &a.methods, |m, r| {
            if m != last {
                done += usize::from(!last.is_empty()) * o.max_iters;
                last = m;
            }
            pb.set_position((done + r.iter) as u64);
            pb.set_message(format!("{m}: loss {:.5e}  work {}", r.upper, r.work()));
            true
        })
    })?;
    Ok(())
}

/// Runs `hyperprox tune …`.
pub fn tune(problem: TuneProblem) -> CliResult<()> {
    let options = fingerprint(&problem);
    if let TuneProblem::TvCompare(a) = &problem {
        if a.run.resume {
            return usage(
                "tv-compare runs several methods and keeps no checkpoint: --resume applies to tv, foe and logreg",
            );
        }
    }
    match problem {
        TuneProblem::Tv(a) => {
            let o = a.outer.settings;
            let ckpt = Some((options, a.outer.resume));
            let spec = a.model.spec(a.set.reference_convention)?;
            with_progress(&a.outer.out, o.max_iters, ckpt, |pb, c| {
                let data = a.model.data(&a.set)?;
                let comm = super::parallel::comm();
                experiments::tune_tv_on(&comm, &data, &spec, &o, outer_progress(pb), c)
            })?;
        }
        TuneProblem::TvCompare(a) => compare(a)?,
        TuneProblem::Foe(a) => {
            let o = a.outer.settings;
            let ckpt = Some((options, a.outer.resume));
            with_progress(&a.outer.out, o.max_iters, ckpt, |pb, c| {
                let dir = a
                    .data
                    .clone()
                    .unwrap_or_else(|| shipped_data_dir().join("kodak/gray256"));
                let pairs = noisy_images(&dir, a.skip, a.images, a.size, a.sigma, a.seed)?;
                let filters = (a.filters, a.filter_size, a.seed);
                let comm = super::parallel::comm();
                experiments::tune_foe_on(&comm, &pairs, filters, a.sigma, &o, outer_progress(pb), c)
            })?;
        }
        TuneProblem::Logreg(a) => {
            let o = a.outer.settings;
            let ckpt = Some((options, a.outer.resume));
            with_progress(&a.outer.out, o.max_iters, ckpt, |pb, c| {
                let path = a
                    .data
                    .clone()
                    .unwrap_or_else(|| shipped_data_dir().join("digits/digits.csv"));
                let p = MultinomialLogistic::from_digits(&path, a.n_train, a.seed)?;
                experiments::tune_logreg(&p, &o, outer_progress(pb), c)
            })?;
        }
        TuneProblem::Variational(a) => {
            let o = a.outer.settings;
            let (spec, base) = ModelSpec::load(&a.spec)?;
            let ckpt = Some((format!("{options} {spec:?}"), a.outer.resume));
            with_progress(&a.outer.out, o.max_iters, ckpt, |pb, c| {
                let (pairs, sigma) = a.pairs(&spec, &base)?;
                experiments::tune_variational(
                    &spec,
                    &base,
                    &pairs,
                    sigma,
                    &o,
                    outer_progress(pb),
                    c,
                )
            })?;
        }
        TuneProblem::Lasso(a) => {
            let t = LassoTuning::new(
                read_npy_2d(&a.a_train)?,
                read_npy_1d(&a.b_train)?,
                read_npy_2d(&a.a_val)?,
                read_npy_1d(&a.b_val)?,
            )?;
            with_progress(&a.out, a.max_iters, None, |pb, _| {
                pb.set_message("gradient descent on log λ");
                experiments::tune_lasso(&t, a.max_iters, 50)
            })?;
        }
    }
    Ok(())
}

/// Runs `hyperprox demo`: learns the TV parameters on 6 shipped Kodak images (96×96,
/// σ = 0.1) with MAID and reports the PSNR on 6 other images.
pub fn demo(out: &Path, max_iters: usize) -> CliResult<()> {
    println!(
        "Learning TV denoising parameters (λ, ν) with MAID on 6 Kodak images (96×96, σ = 0.1)…"
    );
    let dir = shipped_data_dir().join("kodak/gray96");
    let r = with_progress(out, max_iters, None, |pb, _| {
        experiments::demo(&dir, max_iters, outer_progress(pb))
    })?;
    let (theta, o) = (&r.outer.theta, &r.outer);
    println!(
        "learned: λ = e^θ₁ = {:.4e}, ν = e^θ₂ = {:.4e} (θ = [{:.4}, {:.4}]) in {} outer iterations, {:.1} s",
        r.lambda, r.smoothing, theta[0], theta[1], o.iterations_outer, o.time_s
    );
    println!(
        "test PSNR (6 held-out images): noisy {:.2} dB -> denoised {:.2} dB (+{:.2} dB)",
        r.psnr_test_noisy,
        r.psnr_test_denoised,
        r.psnr_test_denoised - r.psnr_test_noisy
    );
    println!("report: {}", out.join("report.json").display());
    Ok(())
}
