//! Training LPNs: losses (ℓ2, ℓ1, proximal matching), staged schedules, Adam with projection,
//! deterministic minibatches, checkpoint/resume.
//!
//! **Proximal matching** (Fang, Buchanan & Sulam 2024): `m_γ(r) = 1 − exp(−(r/γ)²)` with `r`
//! the per-sample norm `‖f(y) − x‖`; as `γ → 0` its minimizer tends to the MAP denoiser, i.e.
//! the prox of `−σ² log p_x`, whereas ℓ2 gives the MMSE denoiser and ℓ1 the posterior median.
//! As in the paper's code the normalizing constant is omitted and the loss is the batch mean.

use crate::icnn::Icnn;
use hyperprox_core::comm::{balanced_shards, sum_checked, Communicator, SelfComm};
use hyperprox_core::diff::Adam;
use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, Array2, Zip};

/// A training loss on `f(y)` against the clean `x` (batch mean).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// `‖f − x‖²`.
    L2,
    /// `‖f − x‖₁`.
    L1,
    /// `1 − exp(−(‖f − x‖/γ)²)`.
    ProxMatching {
        /// The scale `γ`.
        gamma: f64,
    },
}

impl Loss {
    /// Name for reports.
    pub fn name(&self) -> String {
        match self {
            Loss::L2 => "l2".into(),
            Loss::L1 => "l1".into(),
            Loss::ProxMatching { gamma } => format!("prox-matching(γ={gamma})"),
        }
    }

    /// The loss of one sample from its residual `r = f − x`, overwriting `r` with `∂ℓ/∂r`.
    /// Proximal matching uses the sample's Euclidean norm `‖r‖` (not a sum over entries).
    /// [`Loss::value_and_grad`] and the Laplacian population loss
    /// ([`crate::laplace::Population`]) are both built on it.
    pub fn sample_value_grad(&self, r: &mut [f64]) -> f64 {
        match *self {
            Loss::L2 => {
                let v = r.iter().map(|v| v * v).sum();
                r.iter_mut().for_each(|v| *v *= 2.0);
                v
            }
            Loss::L1 => {
                let v = r.iter().map(|v| v.abs()).sum();
                r.iter_mut().for_each(|v| *v = v.signum());
                v
            }
            Loss::ProxMatching { gamma } => {
                let g2 = gamma * gamma;
                let e = (-r.iter().map(|v| v * v).sum::<f64>() / g2).exp();
                let scale = 2.0 * e / g2;
                r.iter_mut().for_each(|v| *v *= scale);
                1.0 - e
            }
        }
    }

    /// Batch-mean loss and its gradient with respect to `f` (rows are samples).
    pub fn value_and_grad(&self, f: &Array2<f64>, x: &Array2<f64>) -> (f64, Array2<f64>) {
        let b = f.nrows().max(1) as f64;
        let mut grad = f - x;
        let mut total = 0.0;
        for mut r in grad.rows_mut() {
            match r.as_slice_mut() {
                Some(s) => total += self.sample_value_grad(s),
                None => {
                    let mut row = r.to_vec();
                    total += self.sample_value_grad(&mut row);
                    r.assign(&Array1::from(row));
                }
            }
        }
        grad.mapv_inplace(|v| v / b);
        (total / b, grad)
    }
}

/// One stage of a schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    /// Steps in this stage.
    pub steps: u64,
    /// Adam learning rate.
    pub lr: f64,
    /// The loss.
    pub loss: Loss,
}

/// The paper's 1-D Laplacian schedules (batch 2000, Adam): ℓ2 and ℓ1 take 10 000 steps at
/// 1e-3 then 10 000 at 1e-4; proximal matching *continues from the ℓ1 model*: γ = 0.5
/// (2000 @ 1e-3, 2000 @ 1e-4), 0.4 (4000 @ 1e-4), 0.3 (4000 @ 1e-4), 0.2 (4000 @ 1e-5),
/// 0.1 (4000 @ 1e-5, 4000 @ 1e-6). `scale` multiplies every stage's length (`--quick`).
pub fn laplacian_schedule(loss: &str, scale: f64) -> Result<Vec<Stage>> {
    let n = |s: u64| ((s as f64 * scale).round() as u64).max(1);
    let base = |l: Loss| {
        vec![
            Stage {
                steps: n(10_000),
                lr: 1e-3,
                loss: l,
            },
            Stage {
                steps: n(10_000),
                lr: 1e-4,
                loss: l,
            },
        ]
    };
    Ok(match loss {
        "l2" => base(Loss::L2),
        "l1" => base(Loss::L1),
        "prox-matching" => {
            let mut s = base(Loss::L1);
            let pm = |g: f64| Loss::ProxMatching { gamma: g };
            s.extend([
                Stage {
                    steps: n(2000),
                    lr: 1e-3,
                    loss: pm(0.5),
                },
                Stage {
                    steps: n(2000),
                    lr: 1e-4,
                    loss: pm(0.5),
                },
                Stage {
                    steps: n(4000),
                    lr: 1e-4,
                    loss: pm(0.4),
                },
                Stage {
                    steps: n(4000),
                    lr: 1e-4,
                    loss: pm(0.3),
                },
                Stage {
                    steps: n(4000),
                    lr: 1e-5,
                    loss: pm(0.2),
                },
                Stage {
                    steps: n(4000),
                    lr: 1e-5,
                    loss: pm(0.1),
                },
                Stage {
                    steps: n(4000),
                    lr: 1e-6,
                    loss: pm(0.1),
                },
            ]);
            s
        }
        other => return Err(Error::param("loss", other, "use l2, l1 or prox-matching")),
    })
}

/// The paper's image schedule shape: ℓ1 pre-training, then proximal matching in 4 stages with
/// `γ = 8, 4, 2, 1 × γ_min`, `γ_min = 0.08·√d` (0.8 × the norm of σ = 0.1 noise). The paper
/// uses 20 000 + 4 × 5000 steps at 1e-3 / 1e-4; `steps` sets the ℓ1 length (each PM stage is
/// a quarter of it).
pub fn image_schedule(dim: usize, steps: u64) -> Vec<Stage> {
    let gmin = 0.08 * (dim as f64).sqrt();
    let mut s = vec![Stage {
        steps,
        lr: 1e-3,
        loss: Loss::L1,
    }];
    for k in 0..4 {
        s.push(Stage {
            steps: (steps / 4).max(1),
            lr: 1e-4,
            loss: Loss::ProxMatching {
                gamma: gmin * 2f64.powi(3 - k),
            },
        });
    }
    s
}

/// Everything a resumed run needs.
#[derive(Clone, Debug)]
pub struct TrainState {
    /// The network.
    pub net: Icnn,
    /// The optimizer.
    pub adam: Adam,
    /// Steps done.
    pub step: u64,
    /// `(step, loss)` every `log_every` steps.
    pub history: Vec<(u64, f64)>,
}

impl TrainState {
    /// A fresh state.
    pub fn new(net: Icnn) -> Result<Self> {
        let adam = Adam::new(net.n_params(), 1e-3)?;
        Ok(Self {
            net,
            adam,
            step: 0,
            history: Vec::new(),
        })
    }

    /// Serializes the state (model, Adam moments, step, history) as JSON (format
    /// `hyperprox-lpn-checkpoint-v1`).
    pub fn to_json(&self) -> String {
        let (m, v, t) = self.adam.state();
        let file = CheckpointFile {
            model: self.net.to_json_value(),
            adam_m: m.to_vec(),
            adam_v: v.to_vec(),
            adam_t: t,
            step: self.step,
            history: self.history.clone(),
        };
        // Numbers and lists always serialize.
        hyperprox_core::io::to_tagged_json(CHECKPOINT_FORMAT, &file)
            .unwrap_or_default()
            .to_string()
    }

    /// Reads a state written by [`TrainState::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::param("checkpoint", "invalid JSON", e.to_string()))?;
        let f: CheckpointFile = hyperprox_core::io::from_tagged_json(
            CHECKPOINT_FORMAT,
            "checkpoint",
            "not a hyperprox LPN checkpoint; train without --resume",
            v,
        )?;
        let net = Icnn::from_json_value(f.model)?;
        let adam = Adam::from_state(1e-3, f.adam_m, f.adam_v, f.adam_t)?;
        hyperprox_core::linalg::check_len(
            "checkpoint",
            "Adam moments",
            net.n_params(),
            adam.state().0.len(),
        )?;
        Ok(Self {
            net,
            adam,
            step: f.step,
            history: f.history,
        })
    }
}

const CHECKPOINT_FORMAT: &str = "hyperprox-lpn-checkpoint-v1";

/// A checkpoint file's payload.
#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointFile {
    model: serde_json::Value,
    adam_m: Vec<f64>,
    adam_v: Vec<f64>,
    #[serde(default)]
    adam_t: u64,
    #[serde(default)]
    step: u64,
    #[serde(default)]
    history: Vec<(u64, f64)>,
}

/// A minibatch source: `sample(step)` returns `(x, y)` (clean, noisy; rows are samples). It
/// must be a deterministic function of `step` so that a resumed run continues exactly.
pub trait Sampler {
    /// The batch for `step`.
    fn sample(&self, step: u64) -> (Array2<f64>, Array2<f64>);
}

impl<F: Fn(u64) -> (Array2<f64>, Array2<f64>)> Sampler for F {
    fn sample(&self, step: u64) -> (Array2<f64>, Array2<f64>) {
        self(step)
    }
}

/// The stage and learning rate at a global step, or `None` past the end.
pub fn stage_at(schedule: &[Stage], step: u64) -> Option<Stage> {
    let mut s = step;
    for st in schedule {
        if s < st.steps {
            return Some(*st);
        }
        s -= st.steps;
    }
    None
}

/// Total steps of a schedule.
pub fn total_steps(schedule: &[Stage]) -> u64 {
    schedule.iter().map(|s| s.steps).sum()
}

/// Trains from `state.step` to the end of `schedule` (or until `observer(step, loss)` returns
/// `false`): each step draws `sampler.sample(step)`, evaluates the stage's loss on `f(y)`,
/// takes an Adam step at the stage's rate, and projects (`W_k, w ≥ 0`). The batch loss is
/// logged every `log_every` steps. `Err` on a non-finite loss (the state keeps the last good
/// parameters).
pub fn train(
    state: &mut TrainState,
    schedule: &[Stage],
    sampler: &impl Sampler,
    log_every: u64,
    observer: impl FnMut(u64, f64) -> bool,
) -> Result<()> {
    train_ranks(
        &SelfComm::new(),
        state,
        schedule,
        sampler,
        log_every,
        observer,
    )
}

/// [`train`] data parallel over the ranks of `comm` (threads or MPI processes, see
/// [`hyperprox_core::comm`]): every rank draws the same seeded minibatch and takes its
/// contiguous, balanced share of the rows; the loss (a mean over the batch) and its gradient
/// are the ranks' means weighted by their shares `b_r/b`, summed in rank order, so every rank
/// takes the same Adam step. With one rank it is [`train`], bit for bit; with more, the
/// parameters equal the one-process run's up to the rounding of the sums. Return `false` from
/// `observer` on every rank alike (it sees the same step and loss everywhere).
pub fn train_ranks(
    comm: &dyn Communicator,
    state: &mut TrainState,
    schedule: &[Stage],
    sampler: &impl Sampler,
    log_every: u64,
    mut observer: impl FnMut(u64, f64) -> bool,
) -> Result<()> {
    let ranks = comm.size();
    while let Some(st) = stage_at(schedule, state.step) {
        let (x, y) = sampler.sample(state.step);
        let (x, y, share) = if ranks > 1 {
            let b = balanced_shards(&vec![1; x.nrows()], ranks)?;
            let rows = b[comm.rank()]..b[comm.rank() + 1];
            let share = rows.len() as f64 / x.nrows() as f64;
            let pick = |a: &Array2<f64>| a.slice(ndarray::s![rows.clone(), ..]).to_owned();
            (pick(&x), pick(&y), share)
        } else {
            (x, y, 1.0)
        };
        if x.dim() != y.dim() || x.ncols() != state.net.config().dim {
            return Err(Error::shape(
                "LPN training",
                "batch",
                format!("x and y with {} columns", state.net.config().dim),
                format!("{:?} and {:?}", x.dim(), y.dim()),
            ));
        }
        let mut loss = 0.0;
        let local = state.net.prox_then_grad(y.view(), |f| {
            let (l, g) = st.loss.value_and_grad(f, &x);
            loss = l;
            g
        });
        let grad = if ranks > 1 {
            // [loss, gradient] weighted by this rank's share, summed over the ranks.
            let np = state.net.params.len();
            let local = local.map(|(_, g)| {
                std::iter::once(loss * share)
                    .chain(g.iter().map(|v| v * share))
                    .collect()
            });
            let mut r = sum_checked(comm, local, 1 + np)?;
            loss = r[0];
            Array1::from(r.split_off(1))
        } else {
            local?.1
        };
        if !loss.is_finite() {
            return Err(Error::Diverged {
                method: "LPN training".into(),
                iteration: state.step as usize,
                detail: format!("loss {loss}; lower the learning rate"),
            });
        }
        state.adam.lr = st.lr;
        let p = state.net.params.as_slice_mut().expect("contiguous");
        state.adam.step(p, grad.as_slice().expect("contiguous"))?;
        state.net.project();
        state.step += 1;
        if state.step % log_every.max(1) == 0 || stage_at(schedule, state.step).is_none() {
            state.history.push((state.step, loss));
        }
        if !observer(state.step, loss) {
            break;
        }
    }
    Ok(())
}

/// `(x, y)` rows as a sampler over a fixed data set: each step draws `batch` rows (seeded by
/// `seed` and the step) and adds `σ·N(0, 1)` noise.
pub fn dataset_sampler(data: Array2<f64>, batch: usize, sigma: f64, seed: u64) -> impl Sampler {
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, StandardNormal};
    move |step: u64| {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let idx: Vec<usize> = (0..batch)
            .map(|_| rng.random_range(0..data.nrows()))
            .collect();
        let x = data.select(ndarray::Axis(0), &idx);
        let mut y = x.clone();
        Zip::from(&mut y).for_each(|v| {
            let e: f64 = StandardNormal.sample(&mut rng);
            *v += sigma * e;
        });
        (x, y)
    }
}

/// Mean loss of `net` on a fixed validation batch.
pub fn validation_loss(net: &Icnn, loss: Loss, x: &Array2<f64>, y: &Array2<f64>) -> Result<f64> {
    let f = net.prox(y.view())?;
    Ok(loss.value_and_grad(&f, x).0)
}

/// Per-sample errors `‖f(y) − x‖` (for reports).
pub fn errors(net: &Icnn, x: &Array2<f64>, y: &Array2<f64>) -> Result<Array1<f64>> {
    let f = net.prox(y.view())?;
    Ok((&f - x)
        .rows()
        .into_iter()
        .map(|r| r.dot(&r).sqrt())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IcnnConfig;

    #[test]
    fn checkpoints_round_trip_and_old_model_files_still_load() {
        let net = Icnn::new(IcnnConfig::paper_1d(), 3).unwrap();
        let mut st = TrainState::new(net).unwrap();
        st.step = 42;
        st.history = vec![(0, 1.5), (20, 0.25)];
        let back = TrainState::from_json(&st.to_json()).unwrap();
        assert_eq!(back.step, 42);
        assert_eq!(back.history, st.history);
        assert_eq!(back.net.to_json(), st.net.to_json());
        assert_eq!(back.net.config(), st.net.config());
        // A model file without "arch" (written before convolutional layers existed) is dense.
        let mut v: serde_json::Value = serde_json::from_str(&st.net.to_json()).unwrap();
        v.as_object_mut().unwrap().remove("arch");
        let old = Icnn::from_json(&v.to_string()).unwrap();
        assert_eq!(old.config().arch, crate::Arch::Dense);
        assert!(
            TrainState::from_json(&st.net.to_json()).is_err(),
            "a model is no checkpoint"
        );
        assert!(
            Icnn::from_json(&st.to_json()).is_err(),
            "a checkpoint is no model"
        );
    }
}
