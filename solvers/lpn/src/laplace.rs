//! The 1-D Laplacian experiment of the LPN paper: `x ~ Laplace(0, 1)`, `y = x + N(0, 1)`.
//!
//! The MAP denoiser is the prox of `σ²|x|/b = |x|`, i.e. soft thresholding at 1, with prior
//! `R* = |x|`; the MMSE denoiser (what ℓ2 training learns) and the posterior median (ℓ1) are
//! smooth shrinkers without a dead zone. References are computed here by quadrature of the
//! posterior `p(x | y) ∝ exp(−|x|/b − (y − x)²/(2σ²))` (at `y = 0.5`: MMSE 0.241, median
//! 0.190).

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// Scale `b` of the Laplace prior and the noise level `σ` of the paper's experiment.
pub const B: f64 = 1.0;
/// Noise level.
pub const SIGMA: f64 = 1.0;

/// A batch sampler: `batch` pairs `(x, y)` drawn from a generator seeded by `seed` and `step`.
pub fn sampler(batch: usize, seed: u64) -> impl Fn(u64) -> (Array2<f64>, Array2<f64>) {
    move |step: u64| {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut x = Array2::zeros((batch, 1));
        let mut y = Array2::zeros((batch, 1));
        for i in 0..batch {
            let u: f64 = rng.random::<f64>() - 0.5;
            let xi = -B * u.signum() * (1.0 - 2.0 * u.abs()).max(f64::MIN_POSITIVE).ln();
            let e: f64 = StandardNormal.sample(&mut rng);
            x[[i, 0]] = xi;
            y[[i, 0]] = xi + SIGMA * e;
        }
        (x, y)
    }
}

/// Soft thresholding at 1 (the MAP denoiser).
pub fn soft(y: f64) -> f64 {
    hyperprox_core::func::soft_threshold(y, 1.0)
}

/// Posterior mean and median of `x` given `y` by quadrature on `[y − 12, y + 12]`.
pub fn posterior_mean_median(y: f64) -> (f64, f64) {
    let n = 24_001;
    let (lo, hi) = (y - 12.0, y + 12.0);
    let h = (hi - lo) / (n - 1) as f64;
    let w: Vec<f64> = (0..n)
        .map(|i| {
            let x = lo + i as f64 * h;
            (-(x.abs()) / B - (y - x) * (y - x) / (2.0 * SIGMA * SIGMA)).exp()
        })
        .collect();
    let z: f64 = w.iter().sum();
    let mean = w
        .iter()
        .enumerate()
        .map(|(i, wi)| (lo + i as f64 * h) * wi)
        .sum::<f64>()
        / z;
    let mut acc = 0.0;
    let mut median = y;
    for (i, wi) in w.iter().enumerate() {
        let next = acc + wi;
        if next >= 0.5 * z {
            // Linear interpolation inside the cell.
            let frac = (0.5 * z - acc) / wi;
            median = lo + (i as f64 - 0.5 + frac) * h;
            break;
        }
        acc = next;
    }
    (mean, median)
}

/// The expected ("population") loss of the Laplacian experiment by quadrature, a noise-free
/// alternative to minibatches: `y` on a grid over `[−8, 8]` weighted by `p_y(y)Δy`, and for each
/// `y` the posterior `p(x | y)` on a grid over `[y − 7, y + 7]`. Training on it (see
/// [`train_population`]) needs far fewer steps than the paper's stochastic schedule, which is
/// what the CI tests use; `hyperprox lpn train` uses minibatches as in the paper.
#[derive(Clone, Debug)]
pub struct Population {
    /// The `y` grid as a batch (`n × 1`).
    pub ys: Array2<f64>,
    /// `p_y(y)Δy` (sums to ≈ 1).
    pub weight: Vec<f64>,
    xs: Vec<f64>,
    post: Vec<Vec<f64>>,
}

impl Population {
    /// Grids with `n_y` points for `y` and `n_x` points per posterior.
    pub fn new(n_y: usize, n_x: usize) -> Self {
        let (ylo, yhi) = (-8.0, 8.0);
        let dy = (yhi - ylo) / (n_y - 1) as f64;
        let half = 7.0;
        let dx = 2.0 * half / (n_x - 1) as f64;
        let xs: Vec<f64> = (0..n_x).map(|j| -half + j as f64 * dx).collect();
        let norm = 1.0 / (2.0 * B) / (2.0 * std::f64::consts::PI * SIGMA * SIGMA).sqrt();
        let mut ys = Array2::zeros((n_y, 1));
        let mut weight = Vec::with_capacity(n_y);
        let mut post = Vec::with_capacity(n_y);
        for i in 0..n_y {
            let y = ylo + i as f64 * dy;
            ys[[i, 0]] = y;
            // Joint density p(x) p(y | x) at x = y + offset.
            let joint: Vec<f64> = xs
                .iter()
                .map(|o| {
                    let x = y + o;
                    norm * (-(x.abs()) / B - o * o / (2.0 * SIGMA * SIGMA)).exp()
                })
                .collect();
            let py: f64 = joint.iter().sum::<f64>() * dx;
            weight.push(py * dy);
            post.push(joint.iter().map(|j| j * dx / py).collect());
        }
        Self {
            ys,
            weight,
            xs,
            post,
        }
    }

    /// The expected loss `Σ_i w_i Σ_j p_ij ℓ(f_i − x_ij)` and its gradient in `f` (`n × 1`).
    pub fn loss_and_grad(&self, f: &Array2<f64>, loss: crate::train::Loss) -> (f64, Array2<f64>) {
        let mut total = 0.0;
        let mut grad = Array2::zeros(f.raw_dim());
        for i in 0..self.ys.nrows() {
            let (y, fi) = (self.ys[[i, 0]], f[[i, 0]]);
            let (mut l, mut g) = (0.0, 0.0);
            for (o, p) in self.xs.iter().zip(&self.post[i]) {
                let mut r = [fi - (y + o)];
                l += p * loss.sample_value_grad(&mut r);
                g += p * r[0];
            }
            total += self.weight[i] * l;
            grad[[i, 0]] = self.weight[i] * g;
        }
        (total, grad)
    }
}

/// The schedule for [`train_population`]: ℓ2/ℓ1 take 1000 steps at 1e-2 then 1000 at 1e-3;
/// proximal matching starts from that ℓ1 schedule, visits γ = 0.5, 0.4, 0.3, 0.2 (250 steps
/// each at 2e-3), 0.1 (500 at 2e-3, 250 at 2e-4) like the paper, then **γ = 0.05** (500 at
/// 2e-3, 250 at 2e-4). The last stage is needed for a dead zone `|f| < 0.05` on `|y| ≤ 0.8`:
/// the exact minimizer of the γ = 0.1 loss has `f(0.8) = 0.076`, `f(1) = 0.111` (quadrature),
/// that of γ = 0.05 has `f(0.8) = 0.041`, `f(1) = 0.065`.
pub fn population_schedule(loss: &str) -> hyperprox_core::Result<Vec<crate::train::Stage>> {
    use crate::train::{Loss, Stage};
    let base = |l: Loss| {
        vec![
            Stage {
                steps: 1000,
                lr: 1e-2,
                loss: l,
            },
            Stage {
                steps: 1000,
                lr: 1e-3,
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
            for g in [0.5, 0.4, 0.3, 0.2] {
                s.push(Stage {
                    steps: 250,
                    lr: 2e-3,
                    loss: pm(g),
                });
            }
            s.extend([
                Stage {
                    steps: 500,
                    lr: 2e-3,
                    loss: pm(0.1),
                },
                Stage {
                    steps: 250,
                    lr: 2e-4,
                    loss: pm(0.1),
                },
                Stage {
                    steps: 500,
                    lr: 2e-3,
                    loss: pm(0.05),
                },
                Stage {
                    steps: 250,
                    lr: 2e-4,
                    loss: pm(0.05),
                },
            ]);
            s
        }
        other => {
            return Err(hyperprox_core::Error::param(
                "loss",
                other,
                "use l2, l1 or prox-matching",
            ))
        }
    })
}

/// Trains on the [`Population`] loss (full-batch, deterministic) through `schedule`, calling
/// `observer(step, loss)` after each step (returning `false` stops).
pub fn train_population(
    state: &mut crate::train::TrainState,
    schedule: &[crate::train::Stage],
    pop: &Population,
    log_every: u64,
    mut observer: impl FnMut(u64, f64) -> bool,
) -> hyperprox_core::Result<()> {
    while let Some(st) = crate::train::stage_at(schedule, state.step) {
        let mut loss = 0.0;
        let (_, grad) = state.net.prox_then_grad(pop.ys.view(), |f| {
            let (l, g) = pop.loss_and_grad(f, st.loss);
            loss = l;
            g
        })?;
        state.adam.lr = st.lr;
        state.adam.step(
            state.net.params.as_slice_mut().expect("contiguous"),
            grad.as_slice().expect("contiguous"),
        )?;
        state.net.project();
        state.step += 1;
        if state.step % log_every.max(1) == 0
            || crate::train::stage_at(schedule, state.step).is_none()
        {
            state.history.push((state.step, loss));
        }
        if !observer(state.step, loss) {
            break;
        }
    }
    Ok(())
}
