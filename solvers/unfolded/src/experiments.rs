//! The deep-unfolding experiment as a library function: a trained model against ISTA, FISTA
//! and IHT with the same number of iterations, and against the Lasso optimum, on a fresh test
//! set (possibly from another distribution). [`compare`] returns a serializable
//! [`Comparison`] and its [`Figure`]; `hyperprox unfold train` and `unfold eval` write them.

use crate::baselines::{fista, ista, lasso_optimum, Curves};
use crate::train::StageRecord;
use crate::{evaluate, nmse_db, sample, Penalty, Problem, Signal, Unfolded, UnfoldedModel};
use hyperprox_core::bench::BenchSink;
use hyperprox_core::error::Result;
use hyperprox_core::figure::{Figure, LinePlot, Series};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// Per-layer test curves of one method.
#[derive(Clone, Debug, Serialize)]
pub struct CurvesReport {
    /// NMSE (dB) after t = 0…T layers / iterations.
    pub nmse_db: Vec<f64>,
    /// Mean objective of the original problem.
    pub objective: Vec<f64>,
    /// `(F − F*)/F*` with `F*` the mean Lasso optimum (ℓ1 problems; not for IHT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_objective_gap: Option<Vec<f64>>,
}

/// The three classical baselines.
#[derive(Clone, Debug, Serialize)]
pub struct Baselines {
    /// ISTA with step 1/L.
    pub ista: CurvesReport,
    /// FISTA with step 1/L.
    pub fista: CurvesReport,
    /// IHT with step 1/L.
    pub iht: CurvesReport,
}

/// The problem and the train/test distributions.
#[derive(Clone, Debug, Serialize)]
pub struct Setting {
    /// Signal length N.
    pub n: usize,
    /// Measurements M.
    pub m: usize,
    /// Seed of `A`.
    pub matrix_seed: u64,
    /// `L = ‖A‖₂²`.
    pub lipschitz: f64,
    /// Training sparsity.
    pub train_p: f64,
    /// Training SNR (dB; `None`: noiseless).
    pub train_snr_db: Option<f64>,
    /// Test sparsity.
    pub test_p: f64,
    /// Test SNR.
    pub test_snr_db: Option<f64>,
    /// Test samples.
    pub test_size: usize,
}

/// How the model was trained (`unfold train` only).
#[derive(Clone, Debug, Serialize)]
pub struct TrainingSummary {
    /// Whether all minibatches of the schedule ran.
    pub finished: bool,
    /// Minibatches done.
    pub minibatches: u64,
    /// Minibatches of the schedule.
    pub total_minibatches: u64,
    /// Wall-clock seconds of training.
    pub time_s: f64,
    /// Minibatches skipped for a non-finite gradient.
    pub skipped_minibatches: u64,
    /// The training configuration.
    pub config: Value,
    /// Finished stages.
    pub stages: Vec<StageRecord>,
}

/// A model against the baselines on a test set.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Model family.
    pub model: &'static str,
    /// Training loss (`supervised`, `unsupervised`, or `unknown`).
    pub loss: String,
    /// Layers T.
    pub layers: usize,
    /// λ of the original problem.
    pub lambda: f64,
    /// `l1` or `l0`.
    pub penalty: &'static str,
    /// The model's curves.
    #[serde(flatten)]
    pub curves: CurvesReport,
    /// Mean Lasso optimum `F*` of the test set.
    pub lasso_objective_optimum: f64,
    /// NMSE of the Lasso optimum.
    pub lasso_optimum_nmse_db: f64,
    /// FISTA iterations to the optimum (relative gap 1e-9).
    pub lasso_optimum_fista_iterations: usize,
    /// Learned parameters per layer, by name.
    pub params: BTreeMap<String, Vec<f64>>,
    /// ISTA, FISTA and IHT.
    pub baselines: Baselines,
    /// The setting.
    pub setting: Setting,
    /// Wall-clock seconds of the evaluation.
    pub eval_time_s: f64,
    /// Training summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSummary>,
}

fn report_of(c: Curves, fstar: Option<f64>) -> CurvesReport {
    let gap = fstar.map(|f| c.objective.iter().map(|o| (o - f) / f).collect());
    CurvesReport {
        nmse_db: c.nmse_db,
        objective: c.objective,
        relative_objective_gap: gap,
    }
}

/// Evaluates `model` on `test_size` fresh samples of `test` (seeded from `seed`) against ISTA,
/// FISTA and IHT with as many iterations as it has layers, and the Lasso optimum.
pub fn compare(
    model: &Unfolded,
    (train, test): (Signal, Signal),
    test_size: usize,
    seed: u64,
    loss: &str,
) -> Result<Comparison> {
    let t0 = Instant::now();
    let problem: &Problem = model.problem();
    let test_seed = hyperprox_core::diff::batch_seed(seed, u64::MAX - 1);
    let batch = sample(problem, &test, test_size, test_seed)?;
    let depth = model.depth();
    let (lambda, penalty) = model.objective();
    let curves = evaluate(model, problem, &batch)?;
    let y = batch.y.view();
    let of = |xs: &[ndarray::Array2<f64>], pen| Curves::of(problem, &batch, xs, lambda, pen);
    let ista_c = of(&ista(problem, y, lambda, Penalty::L1, depth)?, Penalty::L1);
    let fista_c = of(&fista(problem, y, lambda, depth)?, Penalty::L1);
    let iht_c = of(&ista(problem, y, lambda, Penalty::L0, depth)?, Penalty::L0);
    let (xstar, fstar, fista_iters) = lasso_optimum(problem, y, lambda, 1e-9, 200_000)?;
    let fstar_mean = fstar.iter().sum::<f64>() / fstar.len() as f64;
    let l1 = (penalty == Penalty::L1).then_some(fstar_mean);
    Ok(Comparison {
        model: model.spec().kind.as_str(),
        loss: loss.into(),
        layers: depth,
        lambda,
        penalty: penalty.as_str(),
        curves: report_of(curves, l1),
        lasso_objective_optimum: fstar_mean,
        lasso_optimum_nmse_db: nmse_db(xstar.view(), batch.x.view()),
        lasso_optimum_fista_iterations: fista_iters,
        params: model.layer_params().into_iter().collect(),
        baselines: Baselines {
            ista: report_of(ista_c, l1),
            fista: report_of(fista_c, l1),
            iht: report_of(iht_c, None),
        },
        setting: Setting {
            n: problem.n(),
            m: problem.m(),
            matrix_seed: problem.seed,
            lipschitz: problem.lipschitz,
            train_p: train.p,
            train_snr_db: train.snr_db,
            test_p: test.p,
            test_snr_db: test.snr_db,
            test_size,
        },
        eval_time_s: t0.elapsed().as_secs_f64(),
        training: None,
    })
}

impl Comparison {
    /// The legend name of the model, e.g. `alista (supervised)`.
    pub fn name(&self) -> String {
        format!("{} ({})", self.model, self.loss)
    }

    /// NMSE per layer of all methods; the relative Lasso gap (ℓ1) or the ℓ0 objective; the
    /// learned parameters per layer.
    pub fn figure(&self) -> Figure {
        let name = self.name();
        let b = &self.baselines;
        let nmse = LinePlot::new("test NMSE per layer", "layer / iteration t", "NMSE (dB)")
            .with(Series::indexed(&name, &self.curves.nmse_db, 0))
            .with(Series::indexed("ISTA", &b.ista.nmse_db, 0))
            .with(Series::indexed("FISTA", &b.fista.nmse_db, 0))
            .with(Series::indexed("IHT", &b.iht.nmse_db, 0));
        let second = match &self.curves.relative_objective_gap {
            Some(gap) => LinePlot::new(
                "relative LASSO objective gap",
                "layer / iteration t",
                "(F − F*)/F*",
            )
            .log(false, true)
            .with(Series::indexed(&name, gap, 0))
            .with(Series::indexed("ISTA", opt(&b.ista), 0))
            .with(Series::indexed("FISTA", opt(&b.fista), 0)),
            None => LinePlot::new("ℓ0 objective", "layer / iteration t", "½‖y − Ax‖² + λ‖x‖₀")
                .log(false, true)
                .with(Series::indexed(&name, &self.curves.objective, 0))
                .with(Series::indexed("IHT", &b.iht.objective, 0)),
        };
        let mut params = LinePlot::new("learned parameters per layer", "layer t", "value");
        for (k, v) in &self.params {
            let label = if k == "alpha" {
                format!("α_t (1/L = {:.3})", 1.0 / self.setting.lipschitz)
            } else {
                k.clone()
            };
            params = params.with(Series::indexed(label, v, 1));
        }
        Figure {
            plots: vec![nmse, second, params],
            panels: vec![],
        }
    }

    /// One line: the final NMSE of all methods and the objective against `F*`.
    pub fn summary(&self) -> String {
        let t = self.layers;
        let b = &self.baselines;
        format!(
            "{}, T = {t}: test NMSE {:.2} dB (ISTA {:.2}, FISTA {:.2}, IHT {:.2}); objective {:.5} (LASSO F* = {:.5})",
            self.name(),
            self.curves.nmse_db[t],
            b.ista.nmse_db[t],
            b.fista.nmse_db[t],
            b.iht.nmse_db[t],
            self.curves.objective[t],
            self.lasso_objective_optimum,
        )
    }
}

fn opt(c: &CurvesReport) -> &[f64] {
    c.relative_objective_gap.as_deref().unwrap_or(&[])
}

/// The deep-unfolding throughput case: the default setting (N = 500, M = 250, p = 0.1,
/// 40 dB), T = 16 layers, one minibatch of 64. Returns the problem, the batch and a model
/// of each kind at its classical initialization.
pub fn bench_case() -> Result<(crate::Problem, crate::Batch, Vec<crate::Unfolded>)> {
    use crate::{sample, ModelKind, ModelSpec, Problem, Signal, Unfolded};
    let problem = Problem::gaussian(250, 500, 1)?;
    let batch = sample(&problem, &Signal::default(), 64, 2)?;
    let models = [
        ModelKind::DuIsta,
        ModelKind::DuIht,
        ModelKind::ListaCp,
        ModelKind::Alista,
        ModelKind::Tista,
    ]
    .into_iter()
    .map(|k| Unfolded::new(ModelSpec::new(k, 16), &problem))
    .collect::<Result<Vec<_>>>()?;
    Ok((problem, batch, models))
}

/// Deep-unfolding training throughput (samples/s of one forward + backward pass of T = 16
/// layers, N = 500, M = 250, batch 64), with 16 forward-only ISTA iterations on the same batch
/// as the baseline of the same run (`ratio_to_ista_forward`); `reps` timed repetitions.
pub fn bench(reps: usize, sink: &mut BenchSink<'_>) -> Result<()> {
    use crate::train::{loss_and_grad_ws, loss_for, TrainWorkspace};
    use crate::{LossKind, Penalty, UnfoldedModel};
    use hyperprox_core::bench::timed;
    let (problem, batch, models) = bench_case()?;
    let b = batch.len() as f64;
    let reps = reps.max(1);
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        f()?; // warm-up
        let (_, dt) = timed(|| (0..reps).try_for_each(|_| f()))?;
        Ok(dt / reps as f64)
    };
    let base = time(&mut || ista(&problem, batch.y.view(), 0.1, Penalty::L1, 16).map(drop))?;
    let mut line = |solver: &str, dt: f64| {
        sink(
            serde_json::json!({"case": "unfolded-T16-500x250-batch64", "solver": solver, "time_s": dt,
               "samples_per_s": b / dt, "ratio_to_ista_forward": dt / base, "reps": reps}),
        )
    };
    line("ista-16-forward-only", base);
    for m in &models {
        let loss = loss_for(m, &problem, LossKind::Supervised);
        // One workspace per model, reused across calls, as in training.
        let mut ws = TrainWorkspace::default();
        let dt = time(&mut || loss_and_grad_ws(m, loss.as_ref(), &batch, 16, &mut ws).map(drop))?;
        line(&format!("{}-forward-backward", m.name()), dt);
    }
    Ok(())
}

/// The deep-unfolding throughput on a device against the CPU, in one run
/// (`hyperprox bench --device cuda`): DU-ISTA and DU-IHT with T = 16 layers on the default
/// setting (N = 500, M = 250), for minibatches of 64 and 1024:
///
/// * `…-pass`: one supervised forward + backward pass (loss and parameter gradient) on the
///   same minibatch on the CPU and on `device` (`reps` timed repetitions; the minibatch is
///   uploaded every call on the device, as in training), samples/s and the speed-up;
/// * `…-train`: `train` end to end for 48 minibatches of 100 (3 per layer, incremental) on both,
///   minibatches/s, and the relative difference of the learned step sizes (they must agree to
///   rounding: the same Adam steps on the same gradients). Sampling the minibatches is on the
///   host in both runs.
pub fn bench_device(
    device: hyperprox_core::device::Device,
    reps: usize,
    sink: &mut BenchSink<'_>,
) -> Result<()> {
    use crate::train::{loss_and_grad_ws, loss_for, train, TrainConfig, TrainWorkspace};
    use crate::{LossKind, ModelKind, ModelSpec, SparseSource};
    use hyperprox_core::bench::timed;
    use hyperprox_core::device::Device;
    let problem = Problem::gaussian(250, 500, 1)?;
    let reps = reps.max(1);
    let source = SparseSource {
        problem: &problem,
        signal: Signal::default(),
    };
    for kind in [ModelKind::DuIsta, ModelKind::DuIht] {
        let model = Unfolded::new(ModelSpec::new(kind, 16), &problem)?;
        let loss = loss_for(&model, &problem, LossKind::Supervised);
        for b in [64usize, 1024] {
            let batch = sample(&problem, &Signal::default(), b, 2)?;
            let mut times = vec![];
            for dev in [Device::Cpu, device] {
                let mut ws =
                    TrainWorkspace::for_device(dev, &model, LossKind::Supervised, &source)?;
                loss_and_grad_ws(&model, loss.as_ref(), &batch, 16, &mut ws)?;
                let (_, dt) = timed(|| {
                    (0..reps).try_for_each(|_| {
                        loss_and_grad_ws(&model, loss.as_ref(), &batch, 16, &mut ws).map(drop)
                    })
                })?;
                times.push(dt / reps as f64);
            }
            for (dev, dt) in [(Device::Cpu, times[0]), (device, times[1])] {
                sink(serde_json::json!({
                    "case": format!("{}-T16-500x250-batch{b}-pass", kind.as_str()),
                    "solver": format!("hyperprox-{dev}"), "time_s": dt,
                    "samples_per_s": b as f64 / dt, "speedup_vs_cpu": times[0] / dt, "reps": reps,
                }));
            }
        }
        let mut params = vec![];
        let mut rates = vec![];
        for dev in [Device::Cpu, device] {
            let mut m = Unfolded::new(ModelSpec::new(kind, 16), &problem)?;
            let cfg = TrainConfig {
                batch: 100,
                steps_per_layer: 3,
                final_steps: 0,
                val_size: 100,
                device: dev,
                ..Default::default()
            };
            let (st, dt) = timed(|| train(&mut m, &problem, &cfg, None, None, &mut |_| {}))?;
            rates.push(st.step as f64 / dt);
            params.push(m.params().to_vec());
        }
        let diff = params[0]
            .iter()
            .zip(&params[1])
            .map(|(a, b)| (a - b).abs() / a.abs().max(1e-300))
            .fold(0.0f64, f64::max);
        for (dev, r) in [(Device::Cpu, rates[0]), (device, rates[1])] {
            sink(serde_json::json!({
                "case": format!("{}-T16-500x250-batch100-train", kind.as_str()),
                "solver": format!("hyperprox-{dev}"), "minibatches_per_s": r,
                "speedup_vs_cpu": r / rates[0], "max_rel_diff_of_step_sizes": diff,
            }));
        }
    }
    Ok(())
}
