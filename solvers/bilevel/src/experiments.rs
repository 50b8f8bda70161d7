//! The bilevel experiments as library functions: learn hyperparameters with MAID or HOAG on
//! TV denoising, fields of experts, multinomial logistic regression and the Lasso, and
//! evaluate the learned `θ`. Each returns a serializable report, the outer history and a
//! [`Figure`] (`hyperprox tune …` and `hyperprox demo` write these; nothing here touches files
//! except reading the images).

use crate::data::{add_noise, load_images, psnr, unstack};
use crate::{
    AccuracySequence, BilevelProblem, FieldOfExperts, Hoag, HoagParams, HoagState, LassoEval,
    LassoTuning, Maid, MaidConstants, MaidParams, MaidState, MultinomialLogistic, Oracle,
    OuterRecord, OuterResult, OuterSolver, OuterStop, TvDenoising, TvModel,
};
use hyperprox_core::bench::BenchSink;
use hyperprox_core::comm::{agree_dyn, balanced_shards, Communicator, SelfComm};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::figure::{Figure, ImagePanel, LinePlot, Series};
use hyperprox_core::func::TvKind;
use hyperprox_core::solve::Iterative;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The outer method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum OuterMethod {
    /// MAID (adaptive accuracy, certified descent).
    Maid,
    /// MAID with fixed accuracy (ablation).
    MaidFixed,
    /// HOAG, ε_k = ε₀·0.9ᵏ.
    HoagGeometric,
    /// HOAG, ε_k = ε₀/(k+1)².
    HoagQuadratic,
    /// HOAG, ε_k = ε₀/(k+1)³.
    HoagCubic,
    /// HOAG, ε_k = ε₀.
    HoagFixed,
}

impl OuterMethod {
    /// The name used in reports and figures.
    pub fn name(&self) -> &'static str {
        match self {
            OuterMethod::Maid => "maid",
            OuterMethod::MaidFixed => "maid-fixed",
            OuterMethod::HoagGeometric => "hoag-geometric",
            OuterMethod::HoagQuadratic => "hoag-quadratic",
            OuterMethod::HoagCubic => "hoag-cubic",
            OuterMethod::HoagFixed => "hoag-fixed",
        }
    }
}

/// Settings of an outer run (also the command line's options of `hyperprox tune`, whose help
/// texts are these docs).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct OuterSettings {
    /// Outer method: maid, maid-fixed (ablation), or HOAG with the accuracy sequence
    /// ε₀·0.9ᵏ (hoag-geometric), ε₀/(k+1)² (quadratic), ε₀/(k+1)³ (cubic) or ε₀ (fixed).
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = OuterMethod::Maid))]
    pub method: OuterMethod,
    /// Outer-iteration limit.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 50))]
    pub max_iters: usize,
    /// Work budget: total lower-level + CG iterations.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1_000_000))]
    pub budget: usize,
    /// Initial accuracies ε₀ = δ₀.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.1))]
    pub eps0: f64,
    /// MAID's initial step α₀.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.1))]
    pub alpha0: f64,
    /// Estimate the error bound's constants online (as the MAID reference code does) instead
    /// of using the problem's proven bounds: tighter, but the bound is no longer certified.
    #[cfg_attr(feature = "cli", arg(long))]
    pub estimated_constants: bool,
    /// MAID's line-search and accuracy constants (ignored by HOAG).
    #[cfg_attr(feature = "cli", command(flatten))]
    pub maid: MaidConstants,
    /// Stop when ‖z‖ + ω ≤ this with a certified ω, which proves ‖∇f(θ)‖ ≤ this at the
    /// returned θ (needs proven constants; 0 = off; MAID and HOAG).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 0.0))]
    pub stationarity_tol: f64,
}

impl Default for OuterSettings {
    /// MAID with its default constants, 50 outer iterations, budget 10⁶, `ε₀ = α₀ = 0.1`,
    /// proven constants, no stationarity stop.
    fn default() -> Self {
        Self {
            method: OuterMethod::Maid,
            max_iters: 50,
            budget: 1_000_000,
            eps0: 0.1,
            alpha0: 0.1,
            estimated_constants: false,
            maid: MaidConstants::default(),
            stationarity_tol: 0.0,
        }
    }
}

/// An outer run's result without the solver state.
#[derive(Clone, Debug)]
pub struct OuterRun {
    /// Learned hyperparameters.
    pub theta: ndarray::Array1<f64>,
    /// Per-iteration records.
    pub history: Vec<OuterRecord>,
    /// Why the run ended.
    pub stop: OuterStop,
    /// Wall-clock seconds.
    pub time_s: f64,
}

fn run_of<S>(r: OuterResult<S>, t0: Instant) -> OuterRun {
    OuterRun {
        theta: r.theta,
        history: r.history,
        stop: r.stop,
        time_s: t0.elapsed().as_secs_f64(),
    }
}

/// The state of an outer run after an outer iteration (θ, the lower-level warm start, ε, δ,
/// the step, the estimates of unknown constants, the work counters and the history): what a
/// checkpoint holds. It serializes (JSON numbers round-trip exactly), so a run resumed from it
/// continues bit for bit.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "solver", rename_all = "lowercase")]
pub enum OuterState {
    /// MAID's state.
    Maid(Box<MaidState>),
    /// HOAG's state.
    Hoag(Box<HoagState>),
}

impl OuterState {
    /// Applies `f` to every lower-level vector the state holds (the warm start; HOAG's last
    /// hypergradient's `x̃` and `q`): how a data-parallel run gathers its blocks into the whole
    /// vectors for a checkpoint, and takes its block on resuming, so that a checkpoint resumes
    /// on any number of ranks.
    pub fn map_x(
        &mut self,
        mut f: impl FnMut(&ndarray::Array1<f64>) -> Result<ndarray::Array1<f64>>,
    ) -> Result<()> {
        match self {
            OuterState::Maid(s) => s.x = f(&s.x)?,
            OuterState::Hoag(s) => {
                s.x = f(&s.x)?;
                if let Some(h) = s.current.as_mut() {
                    h.x = f(&h.x)?;
                    h.q = f(&h.q)?;
                }
            }
        }
        Ok(())
    }
}

/// What a checkpointed run calls after every outer iteration.
pub type SaveState<'a> = dyn FnMut(&OuterState) -> Result<()> + 'a;

/// Checkpointing of an outer run: the state to continue from (`None`: start afresh) and what to
/// do with the state after every outer iteration (write it; an `Err` ends the run with it).
pub struct Checkpointing<'a> {
    /// The state to continue from.
    pub resume: Option<OuterState>,
    /// Called after every outer iteration.
    pub save: &'a mut SaveState<'a>,
}

/// Runs the chosen outer method from `p.theta_start()`; `observer` sees every record and may
/// stop the run by returning `false`.
pub fn run_outer<P: BilevelProblem>(
    p: &P,
    o: &OuterSettings,
    observer: impl FnMut(&OuterRecord) -> bool,
) -> Result<OuterRun> {
    run_outer_checkpointed(p, o, observer, None)
}

/// Runs `solver` from `state` (fresh or resumed), saving the state after every iteration.
/// For a sharded problem the saved state holds the whole vectors (gathered from the ranks),
/// and a failed save on any rank stops every rank with the same error.
fn drive_outer<S: OuterSolver>(
    solver: &S,
    state: S::State,
    wrap: fn(&S::State) -> OuterState,
    mut observer: impl FnMut(&OuterRecord) -> bool,
    save: Option<&mut SaveState<'_>>,
    shard: Option<crate::sharded::ShardInfo<'_>>,
) -> Result<OuterResult<S::State>> {
    let mut failed = None;
    let mut save = save;
    let r = crate::outer::run_from(solver, state, |s, rec| {
        if let Some(save) = save.as_mut() {
            let mut st = wrap(s);
            let saved = match shard {
                Some(sh) => st
                    .map_x(|x| crate::sharded::gather_blocks(sh, x.view()))
                    .and_then(|_| {
                        let r = save(&st);
                        hyperprox_core::comm::agree_dyn(sh.comm.as_ref(), r)
                    }),
                None => save(&st),
            };
            if let Err(e) = saved {
                failed = Some(e);
                return false;
            }
        }
        observer(rec)
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

/// [`run_outer`] with checkpoints: continues from `ckpt.resume` if given (the state must be of
/// the method `o.method` names, and was written by a run with the same settings) and calls
/// `ckpt.save` after every outer iteration.
pub fn run_outer_checkpointed<P: BilevelProblem>(
    p: &P,
    o: &OuterSettings,
    observer: impl FnMut(&OuterRecord) -> bool,
    ckpt: Option<Checkpointing<'_>>,
) -> Result<OuterRun> {
    let (resume, save) = match ckpt {
        Some(c) => (c.resume, Some(c.save)),
        None => (None, None),
    };
    let wrong = |state: &OuterState| {
        Error::param(
            "checkpoint",
            match state {
                OuterState::Maid(_) => "maid",
                OuterState::Hoag(_) => "hoag",
            },
            format!(
                "written by another method than {}; resume with the same options",
                o.method.name()
            ),
        )
    };
    if !(o.eps0 > 0.0 && o.eps0.is_finite() && o.alpha0 > 0.0 && o.alpha0.is_finite()) {
        return Err(Error::param(
            "eps0, alpha0",
            format!("{}, {}", o.eps0, o.alpha0),
            "must be positive",
        ));
    }
    if o.max_iters == 0 {
        return Err(Error::param("max_iters", 0, "must be at least 1"));
    }
    let t0 = Instant::now();
    let theta0 = p.theta_start();
    let shard = p.sharding();
    // A checkpoint holds the whole vectors: a shard resumes from its block.
    let resume = match (resume, shard) {
        (Some(mut st), Some(sh)) => {
            let n = p.dim_x();
            st.map_x(|x| {
                hyperprox_core::linalg::check_len(
                    "checkpoint",
                    "lower-level vector",
                    sh.global_len,
                    x.len(),
                )?;
                Ok(x.slice(ndarray::s![sh.offset..sh.offset + n]).to_owned())
            })?;
            Some(st)
        }
        (r, _) => r,
    };
    let seq = match o.method {
        OuterMethod::Maid | OuterMethod::MaidFixed => {
            let params = MaidParams::default()
                .with_accuracies(o.eps0, o.eps0)
                .with_alpha0(o.alpha0)
                .with_max_iters(o.max_iters)
                .with_budget(o.budget)
                .with_fixed_accuracy(o.method == OuterMethod::MaidFixed)
                .with_estimated_constants(o.estimated_constants)
                .with_constants(o.maid)
                .with_stationarity_tol(o.stationarity_tol);
            let solver = Maid::new(p, params)?;
            let state = match resume {
                None => solver.start(&theta0)?,
                Some(OuterState::Maid(s)) => *s,
                Some(other) => return Err(wrong(&other)),
            };
            let wrap = |s: &MaidState| OuterState::Maid(Box::new(s.clone()));
            let r = drive_outer(&solver, state, wrap, observer, save, shard)?;
            return Ok(run_of(r, t0));
        }
        OuterMethod::HoagGeometric => AccuracySequence::Geometric(0.9),
        OuterMethod::HoagQuadratic => AccuracySequence::Quadratic,
        OuterMethod::HoagCubic => AccuracySequence::Cubic,
        OuterMethod::HoagFixed => AccuracySequence::Fixed,
    };
    let mut params = HoagParams {
        eps0: o.eps0,
        ..HoagParams::default()
    }
    .with_sequence(seq)
    .with_max_iters(o.max_iters)
    .with_budget(o.budget)
    .with_stationarity_tol(o.stationarity_tol);
    // HOAG's steps do not use ω; the reported ω and the stationarity test do.
    params.oracle.estimate_constants = o.estimated_constants;
    let solver = Hoag::new(p, params)?;
    let state = match resume {
        None => solver.start(&theta0)?,
        Some(OuterState::Hoag(s)) => *s,
        Some(other) => return Err(wrong(&other)),
    };
    let wrap = |s: &HoagState| OuterState::Hoag(Box::new(s.clone()));
    let r = drive_outer(&solver, state, wrap, observer, save, shard)?;
    Ok(run_of(r, t0))
}

/// What every tuning report says about the outer run.
#[derive(Clone, Debug, Serialize)]
pub struct OuterSummary {
    /// The method's name.
    pub method: &'static str,
    /// Learned hyperparameters.
    pub theta: Vec<f64>,
    /// Last upper-level value.
    pub upper_loss: Option<f64>,
    /// Outer iterations.
    pub iterations_outer: usize,
    /// Lower-level + CG iterations.
    pub iterations_total: usize,
    /// Whether every hypergradient error bound was certified.
    pub certified: bool,
    /// Why the run ended.
    pub stop: OuterStop,
    /// Wall-clock seconds of the outer run.
    pub time_s: f64,
}

impl OuterSummary {
    fn of(run: &OuterRun, method: OuterMethod) -> Self {
        let last = run.history.last();
        Self {
            method: method.name(),
            theta: run.theta.to_vec(),
            upper_loss: last.map(|r| r.upper),
            iterations_outer: run.history.len(),
            iterations_total: last.map_or(0, |r| r.work()),
            certified: run.history.iter().all(|r| r.certified),
            stop: run.stop.clone(),
            time_s: run.time_s,
        }
    }
}

/// A finished tuning experiment: its report, the outer history and the figure.
#[derive(Clone, Debug)]
pub struct Tuned<R, H = OuterRecord> {
    /// The report.
    pub report: R,
    /// One record per outer iteration.
    pub history: Vec<H>,
    /// Plots (and images) of the run.
    pub figure: Figure,
}

impl<R> Tuned<R> {
    /// The report with the run's history and its figure (the outer plots and `panels`).
    fn of(report: R, run: OuterRun, method: OuterMethod, panels: Vec<ImagePanel>) -> Self {
        let figure = Figure {
            plots: outer_plots(&run.history, method.name()),
            panels,
        };
        Self {
            report,
            history: run.history,
            figure,
        }
    }
}

/// Upper loss against work, and the accuracy `ε` per iteration.
pub fn outer_plots(h: &[OuterRecord], method: &str) -> Vec<LinePlot> {
    let work = h.iter().map(|r| (r.work() as f64, r.upper)).collect();
    let eps = h.iter().map(|r| (r.iter as f64, r.eps)).collect();
    vec![
        LinePlot::new(
            "upper loss vs work",
            "lower-level + CG iterations",
            "upper loss g(x̃)",
        )
        .with(Series::new(method, work)),
        LinePlot::new("accuracy", "outer iteration", "ε")
            .log(false, true)
            .with(Series::new(format!("{method} ε"), eps)),
    ]
}

/// Noisy, denoised and clean images captioned with their PSNR.
pub fn image_panels(
    noisy: &Array2<f64>,
    den: &Array2<f64>,
    clean: &Array2<f64>,
) -> Vec<ImagePanel> {
    vec![
        ImagePanel::new(
            format!("noisy, PSNR {:.2} dB", psnr(noisy, clean)),
            noisy.clone(),
        ),
        ImagePanel::new(
            format!("denoised, PSNR {:.2} dB", psnr(den, clean)),
            den.clone(),
        ),
        ImagePanel::new("clean", clean.clone()),
    ]
}

/// A clean image set and its noisy copy.
pub type ImagePairs = (Vec<Array2<f64>>, Vec<Array2<f64>>);

/// Loads `count` PNG images of `dir` (sorted by name) after skipping `skip`, resized to
/// `size × size`, and adds Gaussian noise of level `sigma` (seeded).
pub fn noisy_images(
    dir: &Path,
    skip: usize,
    count: usize,
    size: usize,
    sigma: f64,
    seed: u64,
) -> Result<ImagePairs> {
    if !(sigma >= 0.0 && sigma.is_finite()) {
        return Err(Error::param("sigma", sigma, "must be non-negative"));
    }
    if count == 0 {
        return Err(Error::param("images", 0, "must be at least 1"));
    }
    let total = skip
        .checked_add(count)
        .ok_or_else(|| Error::param("skip", skip, "too many images to skip"))?;
    let all = load_images(dir, total, size)?;
    let clean = all[skip..].to_vec();
    let noisy = add_noise(&clean, sigma, seed);
    Ok((clean, noisy))
}

/// Mean PSNR of the noisy and of the denoised images against the clean ones.
pub fn mean_psnr(clean: &[Array2<f64>], noisy: &[Array2<f64>], den: &[Array2<f64>]) -> (f64, f64) {
    let n = clean.len() as f64;
    let mean = |xs: &[Array2<f64>]| clean.iter().zip(xs).map(|(c, x)| psnr(x, c)).sum::<f64>() / n;
    (mean(noisy), mean(den))
}

/// Denoises with `θ` (lower level solved to `‖∇ₓh‖/μ ≤ 1e-8`) and returns the denoised images
/// with the mean PSNR of the noisy and of the denoised images.
pub fn tv_eval(
    p: &TvDenoising,
    theta: &ndarray::Array1<f64>,
) -> Result<(Vec<Array2<f64>>, f64, f64)> {
    let (den, s) = tv_score(p, theta)?;
    Ok((den, s.psnr_noisy, s.psnr_denoised))
}

/// The scores of learned TV parameters on one split of image pairs.
#[derive(Clone, Debug, Serialize)]
pub struct SplitScore {
    /// Image pairs in the split.
    pub images: usize,
    /// The upper loss `g(x̂(θ)) = (1/N)·Σᵢ ½‖x̂ᵢ(θ) − cᵢ‖²` (lower level solved to
    /// `‖x̃ − x̂‖ ≤ 1e-8`).
    pub upper_loss: f64,
    /// Mean PSNR of the noisy images.
    pub psnr_noisy: f64,
    /// Mean PSNR of the denoised images.
    pub psnr_denoised: f64,
}

/// Denoises with `θ` (lower level solved to `‖∇ₓh‖/μ ≤ 1e-8`, in the certified convention)
/// and returns the denoised images with their [`SplitScore`].
pub fn tv_score(
    p: &TvDenoising,
    theta: &ndarray::Array1<f64>,
) -> Result<(Vec<Array2<f64>>, SplitScore)> {
    // Solved in the certified convention (its step and stopping test are the true ones).
    let (pc, theta) = p.certified_equivalent(theta.view());
    let (upper_loss, ll) = Oracle::new(&pc).value(theta.view(), pc.noisy().view(), 1e-8)?;
    Ok(split_score(p, p, upper_loss, &ll.x))
}

/// The denoised images and the [`SplitScore`] of the whole `x` (on the images of `whole`).
fn split_score(
    whole_clean: &TvDenoising,
    whole_noisy: &TvDenoising,
    upper_loss: f64,
    x: &ndarray::Array1<f64>,
) -> (Vec<Array2<f64>>, SplitScore) {
    let (n, h, w) = whole_clean.shape();
    let den = unstack(x, h, w);
    let (pn, pd) = mean_psnr(
        &unstack(whole_clean.clean(), h, w),
        &unstack(whole_noisy.noisy(), h, w),
        &den,
    );
    let score = SplitScore {
        images: n,
        upper_loss,
        psnr_noisy: pn,
        psnr_denoised: pd,
    };
    (den, score)
}

/// [`tv_score`] on this rank's shard `local` of the whole problem `whole`: each rank solves
/// its images, the loss is summed and the denoised images gathered (every rank gets them).
fn tv_score_sharded(
    whole: &TvDenoising,
    local: &TvDenoising,
    comm: &Arc<dyn Communicator>,
    theta: &ndarray::Array1<f64>,
) -> Result<(Vec<Array2<f64>>, SplitScore)> {
    let (pc, theta) = local.certified_equivalent(theta.view());
    let sp = crate::sharded::Sharded::new(pc, Arc::clone(comm))?;
    let (upper_loss, ll) = Oracle::new(&sp).value(theta.view(), sp.local().noisy().view(), 1e-8)?;
    let x = sp.gather(ll.x.view())?;
    Ok(split_score(whole, whole, upper_loss, &x))
}

/// This rank's contiguous shard of `items` image pairs, balanced by pixels
/// ([`balanced_shards`]).
pub fn shard_range(
    clean: &[Array2<f64>],
    comm: &dyn Communicator,
) -> Result<std::ops::Range<usize>> {
    let weights: Vec<usize> = clean.iter().map(|c| c.len()).collect();
    let b = balanced_shards(&weights, comm.size())?;
    Ok(b[comm.rank()]..b[comm.rank() + 1])
}

/// How a TV problem is set up: the lower-level model, the start and the convention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TvSpec {
    /// Which TV, and whether `ν` is learned.
    pub model: TvModel,
    /// The starting weight `λ₀` (the paper: `e^{−5}`).
    pub lambda0: f64,
    /// The starting smoothing `ν₀` where learned (the paper: `e^{−5}`).
    pub smoothing0: f64,
    /// The MAID reference code's convention (the paper's model only).
    pub reference: bool,
}

impl Default for TvSpec {
    /// The paper's: anisotropic, `θ₀ = (−5, −5)`, this library's convention.
    fn default() -> Self {
        Self {
            model: TvModel::default(),
            lambda0: (-5f64).exp(),
            smoothing0: (-5f64).exp(),
            reference: false,
        }
    }
}

impl TvSpec {
    /// The paper's setting, in the reference convention if `reference`.
    pub fn paper(reference: bool) -> Self {
        Self {
            reference,
            ..Self::default()
        }
    }

    /// The problem on the pairs.
    pub fn problem(&self, clean: &[Array2<f64>], noisy: &[Array2<f64>]) -> Result<TvDenoising> {
        let p = TvDenoising::new(clean, noisy)?
            .with_model(self.model)?
            .with_start(self.lambda0, self.smoothing0)?;
        if self.reference {
            p.with_reference_convention()
        } else {
            Ok(p)
        }
    }
}

/// Reads pairs of clean and degraded images a user brings: both `.npy` files holding an
/// `N × H × W` stack (or one `H × W` image), or both folders of PNG images paired by file name
/// (every name in one folder must be in the other). Images are grayscale in `[0, 1]` for PNG
/// (as stored for `.npy`); all must have one size and finite values.
pub fn load_image_pairs(clean: &Path, noisy: &Path) -> Result<ImagePairs> {
    let c = load_image_stack(clean)?;
    let n = load_image_stack(noisy)?;
    if c.folder != n.folder {
        return Err(Error::param(
            "image pairs",
            format!("{} and {}", clean.display(), noisy.display()),
            "pass both as .npy stacks or both as folders of PNG images",
        ));
    }
    if c.folder && c.names != n.names {
        let missing = c
            .names
            .iter()
            .find(|x| !n.names.contains(x))
            .map(|x| (x, noisy, clean))
            .or_else(|| {
                n.names
                    .iter()
                    .find(|x| !c.names.contains(x))
                    .map(|x| (x, clean, noisy))
            });
        let why = match missing {
            Some((name, lacks, has)) => format!(
                "{name} of {} has no counterpart in {}",
                has.display(),
                lacks.display()
            ),
            None => format!("{} clean and {} noisy images", c.names.len(), n.names.len()),
        };
        return Err(Error::param(
            "image pairs",
            why,
            "pass clean and noisy sets of the same images (.npy stacks of equal length, or PNG folders with the same file names)",
        ));
    }
    crate::data::check_image_pairs("image pairs", &c.images, &n.images, 2)?;
    Ok((c.images, n.images))
}

/// Images with the names that pair them (file names in a folder).
struct ImageStack {
    folder: bool,
    names: Vec<String>,
    images: Vec<Array2<f64>>,
}

/// At most 2²⁸ pixels in a set of image pairs (the problem holds several copies).
const MAX_PAIR_PIXELS: usize = 1 << 28;

fn load_image_stack(path: &Path) -> Result<ImageStack> {
    let io_err = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    if path.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .map_err(io_err)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.to_ascii_lowercase().ends_with(".png"))
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(Error::param(
                "image folder",
                path.display(),
                "holds no .png image; pass a folder of PNG images or an .npy stack",
            ));
        }
        let mut images = Vec::with_capacity(names.len());
        let mut pixels = 0usize;
        for name in &names {
            let im = hyperprox_core::io::read_image(path.join(name))?;
            pixels = pixels.saturating_add(im.len());
            if pixels > MAX_PAIR_PIXELS {
                return Err(Error::param(
                    "image folder",
                    path.display(),
                    "more than 2²⁸ pixels in all: use fewer or smaller images",
                ));
            }
            images.push(im);
        }
        return Ok(ImageStack {
            folder: true,
            names,
            images,
        });
    }
    let a = hyperprox_core::io::read_npy(path)?;
    let a = match a.ndim() {
        2 => a.insert_axis(ndarray::Axis(0)),
        3 => a,
        d => {
            return Err(Error::param(
                "image stack",
                format!("{} ({d}-D)", path.display()),
                "pass an N × H × W stack of images (or one H × W image) as .npy, or a folder of PNG images",
            ))
        }
    };
    if a.len() > MAX_PAIR_PIXELS {
        return Err(Error::param(
            "image stack",
            path.display(),
            "more than 2²⁸ pixels in all: use fewer or smaller images",
        ));
    }
    let a = a
        .into_dimensionality::<ndarray::Ix3>()
        .map_err(|e| Error::param("image stack", path.display(), e.to_string()))?;
    let images: Vec<Array2<f64>> = a.outer_iter().map(|im| im.to_owned()).collect();
    if images.is_empty() {
        return Err(Error::param(
            "image stack",
            path.display(),
            "holds no image (N = 0)",
        ));
    }
    Ok(ImageStack {
        folder: false,
        names: vec![],
        images,
    })
}

/// Splits pairs into a training set and (for `fraction > 0`) a held-out validation set made of
/// the last `round(fraction·N)` pairs (in name or stack order). `fraction` in `[0, 1)`; both
/// sets must keep at least one pair.
pub fn split_pairs(
    (clean, noisy): ImagePairs,
    fraction: f64,
) -> Result<(ImagePairs, Option<ImagePairs>)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::param(
            "val-fraction",
            fraction,
            "pass a fraction in [0, 1) of the pairs to hold out",
        ));
    }
    if fraction == 0.0 {
        return Ok(((clean, noisy), None));
    }
    let n = clean.len();
    let n_val = (fraction * n as f64).round() as usize;
    if n_val == 0 || n_val >= n {
        return Err(Error::param(
            "val-fraction",
            fraction,
            format!(
                "holds out {n_val} of {n} pairs: both splits need at least one pair (use more pairs or another fraction)"
            ),
        ));
    }
    let (mut clean, mut noisy) = (clean, noisy);
    let val = (clean.split_off(n - n_val), noisy.split_off(n - n_val));
    Ok(((clean, noisy), Some(val)))
}

/// The image pairs of a TV tuning run.
#[derive(Clone, Debug)]
pub struct TvData {
    /// The pairs the parameters are learned on.
    pub train: ImagePairs,
    /// Held-out pairs, scored only.
    pub validation: Option<ImagePairs>,
    /// The noise level where the noise was added here (the report's `sigma`), `None` for a
    /// user's pairs.
    pub sigma: Option<f64>,
}

/// The report of TV-denoising tuning.
#[derive(Clone, Debug, Serialize)]
pub struct TvTuning {
    /// Always `tv`.
    pub problem: &'static str,
    /// `anisotropic` (interior differences) or `isotropic` (Neumann boundary).
    pub tv: TvKind,
    /// `interior` or `neumann` (see [`TvModel::boundary`]).
    pub boundary: hyperprox_core::func::TvBoundary,
    /// Training images.
    pub images: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Noise level (when the noise was added here).
    pub sigma: Option<f64>,
    /// The TV weight: `λ = e^θ₀` (`½e^θ₀` in the reference convention), so that
    /// `½‖x − y‖² + λ·TV_ν(x)` is the denoising problem (`hyperprox denoise tv --params`).
    pub lambda: f64,
    /// `ν = e^θ₁`, or the fixed smoothing.
    pub smoothing: f64,
    /// Whether `ν` was held fixed (only `λ` learned).
    pub smoothing_fixed: bool,
    /// The scores on the training pairs (upper loss from a tight solve at the learned `θ`).
    pub train: SplitScore,
    /// The scores on the held-out pairs.
    pub validation: Option<SplitScore>,
    /// The outer run.
    #[serde(flatten)]
    pub outer: OuterSummary,
}

/// Learns `log λ` (and `log ν` unless fixed) of TV denoising on the training pairs, in this
/// library's convention or (`spec.reference`) in the MAID reference code's
/// ([`TvDenoising::with_reference_convention`]; the reported `λ` is then the TV weight
/// `½e^θ₁`), and scores the result on both splits.
pub fn tune_tv(
    data: &TvData,
    spec: &TvSpec,
    o: &OuterSettings,
    observer: impl FnMut(&OuterRecord) -> bool,
    ckpt: Option<Checkpointing<'_>>,
) -> Result<Tuned<TvTuning>> {
    let comm: Arc<dyn Communicator> = Arc::new(SelfComm::new());
    tune_tv_on(&comm, data, spec, o, observer, ckpt)
}

/// [`tune_tv`] on the ranks of `comm` (data parallel, see [`crate::sharded`]): each rank
/// holds a shard of the training images (balanced by pixels) and every rank returns the same
/// result. With one rank it is [`tune_tv`].
pub fn tune_tv_on(
    comm: &Arc<dyn Communicator>,
    data: &TvData,
    spec: &TvSpec,
    o: &OuterSettings,
    observer: impl FnMut(&OuterRecord) -> bool,
    ckpt: Option<Checkpointing<'_>>,
) -> Result<Tuned<TvTuning>> {
    let (clean, noisy) = &data.train;
    let p = spec.problem(clean, noisy)?;
    let val = match &data.validation {
        Some((c, n)) => Some(spec.problem(c, n)?),
        None => None,
    };
    let (run, (den, train)) = if comm.size() == 1 {
        let run = run_outer_checkpointed(&p, o, observer, ckpt)?;
        let score = tv_score(&p, &run.theta)?;
        (run, score)
    } else {
        let range = shard_range(clean, comm.as_ref())?;
        let local = agree_dyn(
            comm.as_ref(),
            spec.problem(&clean[range.clone()], &noisy[range])
                .and_then(|l| l.with_normalization(clean.len())),
        )?;
        let sp = crate::sharded::Sharded::new(local, Arc::clone(comm))?;
        let run = run_outer_checkpointed(&sp, o, observer, ckpt)?;
        let score = tv_score_sharded(&p, sp.local(), comm, &run.theta)?;
        (run, score)
    };
    // Held-out pairs: scored whole on every rank.
    let validation = match &val {
        Some(v) => Some(tv_score(v, &run.theta)?.1),
        None => None,
    };
    let (lambda, smoothing) = p.params(p.certified_theta(run.theta.view()).view());
    let (_, h, w) = p.shape();
    let report = TvTuning {
        problem: "tv",
        tv: spec.model.kind,
        boundary: spec.model.boundary(),
        images: clean.len(),
        height: h,
        width: w,
        sigma: data.sigma,
        lambda,
        smoothing,
        smoothing_fixed: spec.model.fixed_smoothing.is_some(),
        train,
        validation,
        outer: OuterSummary::of(&run, o.method),
    };
    Ok(Tuned::of(
        report,
        run,
        o.method,
        image_panels(&noisy[0], &den[0], &clean[0]),
    ))
}

/// The report of [`denoise_learned_tv`].
#[derive(Clone, Debug, Serialize)]
pub struct LearnedTvReport {
    /// Always `smoothed-tv`.
    pub problem: &'static str,
    /// The TV of the learned model.
    pub tv: TvKind,
    /// The TV weight `λ`.
    pub lambda: f64,
    /// The smoothing `ν`.
    pub smoothing: f64,
    /// `½‖x̃ − y‖² + λ·TV_ν(x̃)`.
    pub objective: f64,
    /// Certified `‖x̃ − x̂‖ ≤ ‖∇h(x̃)‖` (the problem is 1-strongly convex).
    pub error_bound: f64,
    /// Always `gradient_norm`.
    pub certificate: &'static str,
    /// FISTA iterations.
    pub iterations: usize,
    /// Solve time in seconds.
    pub time_s: f64,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

/// Denoises `y` with learned smoothed-TV parameters: `argmin_x ½‖x − y‖² + λ·TV_ν(x)` (the
/// lower level of [`TvDenoising`] for one image, the same solver), to a certified
/// `‖x̃ − x̂‖ ≤ tol`.
pub fn denoise_learned_tv(
    y: ndarray::ArrayView2<'_, f64>,
    kind: TvKind,
    lambda: f64,
    smoothing: f64,
    tol: f64,
) -> Result<(Array2<f64>, LearnedTvReport)> {
    hyperprox_core::experiments::check_tol(tol)?;
    if !(lambda > 0.0 && lambda.is_finite()) {
        return Err(Error::param("lambda", lambda, "must be finite and > 0"));
    }
    let y = y.to_owned();
    let spec = TvSpec {
        model: TvModel {
            kind,
            fixed_smoothing: Some(smoothing),
        },
        ..TvSpec::default()
    };
    // The clean image is not used by the lower level.
    let p = spec.problem(std::slice::from_ref(&y), std::slice::from_ref(&y))?;
    let theta = ndarray::array![lambda.ln()];
    let t0 = Instant::now();
    let ll = Oracle::new(&p).solve_lower(theta.view(), p.noisy().view(), tol)?;
    let time_s = t0.elapsed().as_secs_f64();
    let objective = p.lower_value(ll.x.view(), theta.view())?;
    let (h, w) = y.dim();
    let report = LearnedTvReport {
        problem: "smoothed-tv",
        tv: kind,
        lambda,
        smoothing,
        objective,
        error_bound: ll.accuracy,
        certificate: "gradient_norm",
        iterations: ll.iterations,
        time_s,
        height: h,
        width: w,
    };
    let x = unstack(&ll.x, h, w).pop().unwrap_or_default();
    Ok((x, report))
}

/// One method of a [`compare_tv`] run.
#[derive(Clone, Debug, Serialize)]
pub struct ComparedRun {
    /// The method's name.
    pub method: &'static str,
    /// `f(θ_W)` from a tight lower-level solve (`‖∇ₓh‖/μ ≤ 1e-8`), `θ_W` the last iterate
    /// reached within the common work `W` (the start if none was).
    pub f_at_common_work: f64,
    /// The run's last upper loss `g(x̃)` (inexact, at the run's own accuracy).
    pub upper_loss: Option<f64>,
    /// The run's total lower-level + CG iterations.
    pub work: usize,
    /// Outer iterations.
    pub iterations_outer: usize,
    /// Why the run ended.
    pub stop: OuterStop,
}

/// A record of one method in a [`compare_tv`] history.
#[derive(Clone, Debug, Serialize)]
pub struct ComparedRecord {
    /// The method's name.
    pub method: &'static str,
    /// Its record.
    #[serde(flatten)]
    pub record: OuterRecord,
}

/// The report of [`compare_tv`]: MAID against HOAG at equal work on TV denoising.
#[derive(Clone, Debug, Serialize)]
pub struct TvComparison {
    /// Always `tv`.
    pub problem: &'static str,
    /// Images, side, noise level.
    pub images: usize,
    /// Side of the (square) images.
    pub size: usize,
    /// Noise level.
    pub sigma: f64,
    /// `reference` (the MAID code's convention) or `certified` (this library's).
    pub convention: &'static str,
    /// Initial step and accuracies, iteration limit and budget of every run.
    pub alpha0: f64,
    /// `ε₀ = δ₀`.
    pub eps0: f64,
    /// The common work `W`: the smallest total work among the runs.
    pub common_work: usize,
    /// One entry per method.
    pub runs: Vec<ComparedRun>,
    /// The paper's ordering: MAID's `f(θ_W)` is below every HOAG run's.
    pub maid_below_hoag: bool,
}

/// Runs each of `methods` on TV denoising with the settings `o` (the method field is
/// ignored) and compares them at equal work: `W` is the smallest total work among the runs,
/// and each run is scored by the exact loss `f(θ_W)` at its last iterate within `W`. With
/// `reference`, the problem uses the MAID reference code's convention
/// ([`TvDenoising::with_reference_convention`]). `observer(method, record)` sees every record.
pub fn compare_tv(
    (clean, noisy): &ImagePairs,
    sigma: f64,
    reference: bool,
    o: &OuterSettings,
    methods: &[OuterMethod],
    mut observer: impl FnMut(&'static str, &OuterRecord) -> bool,
) -> Result<Tuned<TvComparison, ComparedRecord>> {
    if methods.is_empty() {
        return Err(Error::param("methods", "[]", "name at least one method"));
    }
    let p = TvSpec::paper(reference).problem(clean, noisy)?;
    let mut runs = Vec::with_capacity(methods.len());
    for &m in methods {
        let om = OuterSettings { method: m, ..*o };
        runs.push((m, run_outer(&p, &om, |r| observer(m.name(), r))?));
    }
    let w = runs
        .iter()
        .map(|(_, r)| r.history.last().map_or(0, OuterRecord::work))
        .min()
        .unwrap_or(0);
    // f is evaluated in this library's convention (certified constants, true step).
    let (exact, _) = p.certified_equivalent(p.theta_start().view());
    let oracle = Oracle::new(&exact);
    let mut plot = LinePlot::new(
        "upper loss vs work",
        "lower-level + CG iterations",
        "upper loss g(x̃)",
    );
    let mut compared = Vec::with_capacity(runs.len());
    for (m, r) in &runs {
        let theta_w = r
            .history
            .iter()
            .rev()
            .find(|h| h.work() <= w)
            .map_or_else(|| p.theta_start(), |h| h.theta.clone());
        let theta_w = p.certified_theta(theta_w.view());
        let (f_w, _) = oracle.value(theta_w.view(), exact.x_start().view(), 1e-8)?;
        plot = plot.with(Series::new(
            m.name(),
            r.history
                .iter()
                .map(|h| (h.work() as f64, h.upper))
                .collect(),
        ));
        compared.push(ComparedRun {
            method: m.name(),
            f_at_common_work: f_w,
            upper_loss: r.history.last().map(|h| h.upper),
            work: r.history.last().map_or(0, OuterRecord::work),
            iterations_outer: r.history.len(),
            stop: r.stop.clone(),
        });
    }
    let best = |maid: bool| {
        compared
            .iter()
            .filter(move |c| c.method.starts_with("maid") == maid)
            .map(|c| c.f_at_common_work)
    };
    let maid_f = best(true).fold(f64::INFINITY, f64::min);
    let maid_below_hoag = maid_f.is_finite() && best(false).all(|f| maid_f < f);
    let report = TvComparison {
        problem: "tv",
        images: clean.len(),
        size: clean[0].nrows(),
        sigma,
        convention: if reference { "reference" } else { "certified" },
        alpha0: o.alpha0,
        eps0: o.eps0,
        common_work: w,
        runs: compared,
        maid_below_hoag,
    };
    let history = runs
        .into_iter()
        .flat_map(|(m, r)| {
            r.history.into_iter().map(move |record| ComparedRecord {
                method: m.name(),
                record,
            })
        })
        .collect();
    Ok(Tuned {
        report,
        history,
        figure: Figure {
            plots: vec![plot.log(false, true)],
            panels: Vec::new(),
        },
    })
}

/// The report of field-of-experts tuning.
#[derive(Clone, Debug, Serialize)]
pub struct FoeTuning {
    /// Always `foe`.
    pub problem: &'static str,
    /// Images.
    pub images: usize,
    /// Side of the (square) images.
    pub size: usize,
    /// Filters.
    pub filters: usize,
    /// Filter side.
    pub filter_size: usize,
    /// Noise level.
    pub sigma: f64,
    /// Number of hyperparameters.
    pub n_hyperparameters: usize,
    /// Mean PSNR of the noisy images.
    pub psnr_noisy: f64,
    /// Mean PSNR after denoising with the learned `θ`.
    pub psnr_denoised: f64,
    /// The outer run (never certified: the lower level is non-convex in general).
    #[serde(flatten)]
    pub outer: OuterSummary,
}

/// Learns the filters, weights and smoothings of a field of experts (`filters` filters of
/// `filter_size²` taps, initialized from `seed`).
pub fn tune_foe(
    pairs: &ImagePairs,
    filters: (usize, usize, u64),
    sigma: f64,
    o: &OuterSettings,
    observer: impl FnMut(&OuterRecord) -> bool,
    ckpt: Option<Checkpointing<'_>>,
) -> Result<Tuned<FoeTuning>> {
    let comm: Arc<dyn Communicator> = Arc::new(SelfComm::new());
    tune_foe_on(&comm, pairs, filters, sigma, o, observer, ckpt)
}

/// [`tune_foe`] on the ranks of `comm` (data parallel, see [`crate::sharded`]).
#[allow(clippy::too_many_arguments)]
pub fn tune_foe_on(
    comm: &Arc<dyn Communicator>,
    (clean, noisy): &ImagePairs,
    (filters, filter_size, seed): (usize, usize, u64),
    sigma: f64,
    o: &OuterSettings,
    observer: impl FnMut(&OuterRecord) -> bool,
    ckpt: Option<Checkpointing<'_>>,
) -> Result<Tuned<FoeTuning>> {
    let (run, x) = if comm.size() == 1 {
        let p = FieldOfExperts::new(clean, noisy, filters, filter_size, seed)?;
        let run = run_outer_checkpointed(&p, o, observer, ckpt)?;
        let (_, ll) = Oracle::new(&p).value(run.theta.view(), p.noisy().view(), 1e-6)?;
        (run, ll.x)
    } else {
        let range = shard_range(clean, comm.as_ref())?;
        let local = agree_dyn(
            comm.as_ref(),
            FieldOfExperts::new(
                &clean[range.clone()],
                &noisy[range],
                filters,
                filter_size,
                seed,
            )
            .and_then(|l| l.with_normalization(clean.len())),
        )?;
        let sp = crate::sharded::Sharded::new(local, Arc::clone(comm))?;
        let run = run_outer_checkpointed(&sp, o, observer, ckpt)?;
        let (_, ll) = Oracle::new(&sp).value(run.theta.view(), sp.local().noisy().view(), 1e-6)?;
        let x = sp.gather(ll.x.view())?;
        (run, x)
    };
    let (h, w) = clean[0].dim();
    let den = unstack(&x, h, w);
    let (psnr_noisy, psnr_denoised) = mean_psnr(clean, noisy, &den);
    let mut outer = OuterSummary::of(&run, o.method);
    outer.certified = false;
    let report = FoeTuning {
        problem: "foe",
        images: clean.len(),
        size: clean[0].nrows(),
        filters,
        filter_size,
        sigma,
        n_hyperparameters: run.theta.len(),
        psnr_noisy,
        psnr_denoised,
        outer,
    };
    Ok(Tuned::of(
        report,
        run,
        o.method,
        image_panels(&noisy[0], &den[0], &clean[0]),
    ))
}

/// One learned term of a variational model.
#[derive(Clone, Debug, Serialize)]
pub struct TermReport {
    /// `"regularizer ∘ operator"`.
    pub term: String,
    /// Its weight at the learned `θ`.
    pub weight: f64,
}

/// The report of `hyperprox tune variational`.
#[derive(Clone, Debug, Serialize)]
pub struct VariationalTuning {
    /// Always `variational`.
    pub problem: &'static str,
    /// The model.
    pub spec: crate::composed::spec::ModelSpec,
    /// Images, height, width.
    pub images: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// The noise level added to synthesize the degraded images (`None`: the user's).
    pub sigma: Option<f64>,
    /// The terms and their learned weights.
    pub terms: Vec<TermReport>,
    /// Every hyperparameter with what it is.
    pub hyperparameters: Vec<(String, f64)>,
    /// Mean PSNR of the degraded images.
    pub psnr_degraded: f64,
    /// Mean PSNR of the restorations at the learned `θ` (lower level solved to `1e-6`).
    pub psnr_restored: f64,
    /// The outer run.
    #[serde(flatten)]
    pub outer: OuterSummary,
}

/// Learns the weights (and learned smoothings) of the model `spec` (paths relative to `base`)
/// on clean/degraded pairs and restores them with the learned `θ`.
pub fn tune_variational(
    spec: &crate::composed::spec::ModelSpec,
    base: &Path,
    (clean, degraded): &ImagePairs,
    sigma: Option<f64>,
    o: &OuterSettings,
    observer: impl FnMut(&OuterRecord) -> bool,
    ckpt: Option<Checkpointing<'_>>,
) -> Result<Tuned<VariationalTuning>> {
    let p = spec.build(base, clean, degraded)?;
    let run = run_outer_checkpointed(&p, o, observer, ckpt)?;
    let (_, ll) = Oracle::new(&p).value(run.theta.view(), p.x_start().view(), 1e-6)?;
    let (h, w) = clean[0].dim();
    let restored = unstack(&ll.x, h, w);
    let (psnr_degraded, psnr_restored) = mean_psnr(clean, degraded, &restored);
    let terms = p
        .describe()
        .into_iter()
        .zip(p.weights(run.theta.view()))
        .map(|(term, weight)| TermReport { term, weight })
        .collect();
    let hyperparameters = p
        .labels()
        .iter()
        .cloned()
        .zip(run.theta.iter().copied())
        .collect();
    let report = VariationalTuning {
        problem: "variational",
        spec: spec.clone(),
        images: clean.len(),
        height: h,
        width: w,
        sigma,
        terms,
        hyperparameters,
        psnr_degraded,
        psnr_restored,
        outer: OuterSummary::of(&run, o.method),
    };
    let mut panels = image_panels(&degraded[0], &restored[0], &clean[0]);
    panels[0].caption = panels[0].caption.replace("noisy", "degraded");
    panels[1].caption = panels[1].caption.replace("denoised", "restored");
    Ok(Tuned::of(report, run, o.method, panels))
}

/// The report of multinomial-logistic tuning.
#[derive(Clone, Debug, Serialize)]
pub struct LogregTuning {
    /// Always `logreg`.
    pub problem: &'static str,
    /// Training samples.
    pub n_train: usize,
    /// Validation samples.
    pub n_val: usize,
    /// Features.
    pub features: usize,
    /// Classes.
    pub classes: usize,
    /// Number of hyperparameters.
    pub n_hyperparameters: usize,
    /// Upper loss at the start.
    pub upper_loss_start: f64,
    /// Validation accuracy with the learned `θ`.
    pub val_accuracy: f64,
    /// Validation accuracy at the start.
    pub val_accuracy_start: f64,
    /// The outer run (`upper_loss` is re-evaluated at a tight lower-level accuracy).
    #[serde(flatten)]
    pub outer: OuterSummary,
}

/// Learns one weight decay per weight of a multinomial logistic regression.
pub fn tune_logreg(
    p: &MultinomialLogistic,
    o: &OuterSettings,
    observer: impl FnMut(&OuterRecord) -> bool,
    ckpt: Option<Checkpointing<'_>>,
) -> Result<Tuned<LogregTuning>> {
    let oracle = Oracle::new(p);
    let eval = |theta: ndarray::ArrayView1<'_, f64>| -> Result<(f64, f64)> {
        let (g, ll) = oracle.value(theta, p.x_start().view(), 1e-8)?;
        Ok((g, p.val_accuracy(ll.x.view())?))
    };
    let (g0, acc0) = eval(p.theta_start().view())?;
    let run = run_outer_checkpointed(p, o, observer, ckpt)?;
    let (g, acc) = eval(run.theta.view())?;
    let (n_train, n_val, features, classes) = p.shape();
    let mut outer = OuterSummary::of(&run, o.method);
    outer.upper_loss = Some(g);
    let report = LogregTuning {
        problem: "logreg",
        n_train,
        n_val,
        features,
        classes,
        n_hyperparameters: run.theta.len(),
        upper_loss_start: g0,
        val_accuracy: acc,
        val_accuracy_start: acc0,
        outer,
    };
    Ok(Tuned::of(report, run, o.method, vec![]))
}

/// The grid search the Lasso tuning is compared with.
#[derive(Clone, Debug, Serialize)]
pub struct LassoGrid {
    /// Grid points.
    pub points: usize,
    /// λ of the grid's best validation MSE.
    pub best_lambda: f64,
    /// The grid's best validation MSE.
    pub best_val_mse: f64,
    /// Coordinate-descent epochs of the grid.
    pub iterations_total: usize,
    /// Wall-clock seconds of the grid.
    pub time_s: f64,
}

/// The report of Lasso tuning.
#[derive(Clone, Debug, Serialize)]
pub struct LassoTuningReport {
    /// Always `lasso`.
    pub problem: &'static str,
    /// Always `implicit-gradient`.
    pub method: &'static str,
    /// Learned λ.
    pub lambda: f64,
    /// `[log λ]`.
    pub theta: Vec<f64>,
    /// `λ_max` of the training data.
    pub lambda_max: f64,
    /// Validation MSE at λ.
    pub val_mse: f64,
    /// Same as `val_mse` (the upper loss).
    pub upper_loss: f64,
    /// Nonzeros of the solution at λ.
    pub nnz: usize,
    /// Coordinate-descent epochs of the tuning.
    pub iterations_total: usize,
    /// Gradient steps taken.
    pub gradient_steps: usize,
    /// Wall-clock seconds of the tuning.
    pub time_s: f64,
    /// The grid search.
    pub grid: LassoGrid,
}

/// Tunes the Lasso λ by gradient descent on `log λ` (implicit gradient over the support) from
/// `0.1·λ_max`, and compares with a `grid_points` grid.
pub fn tune_lasso(
    t: &LassoTuning,
    max_iters: usize,
    grid_points: usize,
) -> Result<Tuned<LassoTuningReport, LassoEval>> {
    let t0 = Instant::now();
    let tuned = t.tune(0.1 * t.lambda_max(), max_iters)?;
    let time_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (grid, grid_epochs) = t.grid(grid_points)?;
    let grid_time = t1.elapsed().as_secs_f64();
    let gbest = grid
        .iter()
        .min_by(|x, y| x.val_mse.total_cmp(&y.val_mse))
        .ok_or_else(|| Error::param("grid points", grid_points, "must be at least 1"))?;
    let b = &tuned.best;
    let report = LassoTuningReport {
        problem: "lasso",
        method: "implicit-gradient",
        lambda: b.lambda,
        theta: vec![b.lambda.ln()],
        lambda_max: t.lambda_max(),
        val_mse: b.val_mse,
        upper_loss: b.val_mse,
        nnz: b.x.iter().filter(|v| **v != 0.0).count(),
        iterations_total: tuned.epochs_total,
        gradient_steps: tuned.history.len() - 1,
        time_s,
        grid: LassoGrid {
            points: grid_points,
            best_lambda: gbest.lambda,
            best_val_mse: gbest.val_mse,
            iterations_total: grid_epochs,
            time_s: grid_time,
        },
    };
    let path = |e: &[LassoEval]| e.iter().map(|e| (e.lambda, e.val_mse)).collect();
    let plot = LinePlot::new("validation MSE", "λ", "validation MSE")
        .log(true, false)
        .with(Series::new(
            format!("{grid_points}-point grid"),
            path(&grid),
        ))
        .with(Series::new("implicit gradient path", path(&tuned.history)));
    Ok(Tuned {
        report,
        history: tuned.history,
        figure: Figure {
            plots: vec![plot],
            panels: vec![],
        },
    })
}

/// The report of the demo: TV parameters learned on 6 images, PSNR on 6 held-out ones.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    /// Always `tv`.
    pub problem: &'static str,
    /// Training images.
    pub train_images: usize,
    /// Held-out images.
    pub test_images: usize,
    /// Side of the images.
    pub size: usize,
    /// Noise level.
    pub sigma: f64,
    /// `λ = e^θ₀`.
    pub lambda: f64,
    /// `ν = e^θ₁`.
    pub smoothing: f64,
    /// Mean PSNR of the noisy training images.
    pub psnr_train_noisy: f64,
    /// Mean PSNR of the denoised training images.
    pub psnr_train_denoised: f64,
    /// Mean PSNR of the noisy held-out images.
    pub psnr_test_noisy: f64,
    /// Mean PSNR of the denoised held-out images.
    pub psnr_test_denoised: f64,
    /// The outer run.
    #[serde(flatten)]
    pub outer: OuterSummary,
}

/// The demo: learns TV denoising parameters with MAID on the first 6 images of `dir` (96×96,
/// σ = 0.1, seed 19) and evaluates them on the next 6.
pub fn demo(
    dir: &Path,
    max_iters: usize,
    observer: impl FnMut(&OuterRecord) -> bool,
) -> Result<Tuned<DemoReport>> {
    let all = load_images(dir, 12, 96)?;
    let noisy = add_noise(&all, 0.1, 19);
    let (train_c, test_c) = all.split_at(6);
    let (train_n, test_n) = noisy.split_at(6);
    let train = TvDenoising::new(train_c, train_n)?;
    let test = TvDenoising::new(test_c, test_n)?;
    let o = OuterSettings {
        max_iters,
        ..OuterSettings::default()
    };
    let run = run_outer(&train, &o, observer)?;
    let (_, pn_tr, pd_tr) = tv_eval(&train, &run.theta)?;
    let (den, pn, pd) = tv_eval(&test, &run.theta)?;
    let report = DemoReport {
        problem: "tv",
        train_images: 6,
        test_images: 6,
        size: 96,
        sigma: 0.1,
        lambda: run.theta[0].exp(),
        smoothing: run.theta[1].exp(),
        psnr_train_noisy: pn_tr,
        psnr_train_denoised: pd_tr,
        psnr_test_noisy: pn,
        psnr_test_denoised: pd,
        outer: OuterSummary::of(&run, o.method),
    };
    Ok(Tuned::of(
        report,
        run,
        o.method,
        image_panels(&test_n[0], &den[0], &test_c[0]),
    ))
}

/// The bilevel TV-denoising case: the first `images` shipped Kodak images resized to
/// `size × size`, Gaussian noise `σ = 0.1` (seed 19).
pub fn bench_case(images: usize, size: usize) -> Result<crate::TvDenoising> {
    use hyperprox_core::io::{add_noise_all as add_noise, load_images};
    let clean = load_images(
        &hyperprox_core::io::shipped_data_dir().join("kodak/gray96"),
        images,
        size,
    )?;
    let noisy = add_noise(&clean, 0.1, 19);
    crate::TvDenoising::new(&clean, &noisy)
}

/// The bilevel TV case: one implicit hypergradient (ε = δ = 1e-6, certified bound) against the
/// unrolled hypergradient through 200 gradient steps, both compared with a tight (1e-10)
/// implicit one; then 20 outer iterations of MAID and of HOAG (geometric).
pub fn bench(images: usize, sink: &mut BenchSink<'_>) -> Result<()> {
    use crate::Estimates;
    use hyperprox_core::bench::{emit, timed, BenchLine};
    let p = bench_case(images, 96)?;
    let case = format!("bilevel-tv-{images}x96");
    let o = Oracle::new(&p);
    let (theta, x0) = (p.theta_start(), p.x_start());
    let exact = o.exact(theta.view(), x0.view(), 1e-10)?;
    let err = |z: &ndarray::Array1<f64>| (z - &exact.z).mapv(|v| v * v).sum().sqrt();
    let bytes = (p.dim_x() * 8 * 4) as f64;
    let (hg, dt) = timed(|| {
        let mut est = Estimates::default();
        o.hypergradient(theta.view(), x0.view(), 1e-6, 1e-6, &mut est)
    })?;
    let line = BenchLine::new(
        &case,
        "implicit-eps1e-6",
        dt,
        hg.ll_iters + hg.cg_iters,
        (err(&hg.z), hg.omega),
    );
    emit(
        sink,
        line.with("hypergradient_error_vs_certified_bound", bytes),
    );
    let ((_, gu), dt) = timed(|| o.unrolled(theta.view(), x0.view(), 200))?;
    let line = BenchLine::new(&case, "unrolled-200", dt, 400, (err(&gu), f64::NAN));
    emit(sink, line.with("hypergradient_error", bytes));
    for (name, method) in [
        ("maid-20-outer", OuterMethod::Maid),
        ("hoag-geometric-20-outer", OuterMethod::HoagGeometric),
    ] {
        let settings = OuterSettings {
            method,
            max_iters: 20,
            ..OuterSettings::default()
        };
        let r = run_outer(&p, &settings, |_| true)?;
        let last = r.history.last();
        let values = last.map_or((f64::NAN, f64::NAN), |l| (l.upper, l.hypergrad_norm));
        let line = BenchLine::new(&case, name, r.time_s, last.map_or(0, |l| l.work()), values);
        emit(sink, line.with("upper_loss_and_hypergradient_norm", bytes));
    }
    Ok(())
}
