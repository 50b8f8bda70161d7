//! A new unfolded algorithm in a few lines: FISTA with a learned step α_t **and momentum β_t**
//! per layer, written as one new `Differentiable` block and trained with the same trainer as
//! the built-in models.
//!
//! The state is `[x_t, x_{t−1}]` (width 2N); one layer is
//!
//! ```text
//! z = x_t + β_t (x_t − x_{t−1}),   x_{t+1} = S_{α_t λ}(z + α_t Aᵀ(y − A z)),   state ← [x_{t+1}, x_t]
//! ```
//!
//! Its VJP reuses the DU-ISTA layer's for the proximal-gradient step and adds the momentum's
//! chain rule. With `α_t = 1/L` and FISTA's `β_t = (s_t − 1)/s_{t+1}` it is FISTA exactly.
//!
//! Run: `cargo run --release -p hyperprox-unfolded --example unfolded_fista`

use hyperprox_core::diff::{check_vjp, Differentiable, Unrolled};
use hyperprox_core::error::Result;
use hyperprox_unfolded::baselines::{fista, ista, lasso_optimum, Curves};
use hyperprox_unfolded::train::{train, LossKind, TrainConfig};
use hyperprox_unfolded::{
    evaluate, sample, Penalty, Problem, ProxGradLayer, Signal, UnfoldedModel,
};
use ndarray::{concatenate, s, Array2, ArrayView2, Axis};

/// One FISTA layer with parameters `(α, β)`.
struct FistaLayer {
    step: ProxGradLayer,
    n: usize,
    m: usize,
}

impl FistaLayer {
    fn z(&self, beta: f64, state: ArrayView2<'_, f64>) -> Array2<f64> {
        let (x, xp) = (state.slice(s![.., ..self.n]), state.slice(s![.., self.n..]));
        &x * (1.0 + beta) - &xp * beta
    }
}

impl Differentiable for FistaLayer {
    fn name(&self) -> String {
        "FISTA step with learned (α, β)".into()
    }
    fn in_dim(&self) -> usize {
        2 * self.n
    }
    fn out_dim(&self) -> usize {
        2 * self.n
    }
    fn ctx_dim(&self) -> usize {
        self.m
    }
    fn num_params(&self) -> usize {
        2
    }
    fn forward(
        &self,
        p: &[f64],
        state: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        let z = self.z(p[1], state);
        let next = self.step.forward(&p[..1], z.view(), y)?;
        Ok(concatenate![Axis(1), next, state.slice(s![.., ..self.n])])
    }
    fn vjp(
        &self,
        p: &[f64],
        state: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
        gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        let z = self.z(p[1], state);
        // Pull back through the prox-gradient step: z̄ and ᾱ.
        let zbar = self.step.vjp(
            &p[..1],
            z.view(),
            y,
            g.slice(s![.., ..self.n]),
            &mut gp[..1],
        )?;
        let (x, xp) = (state.slice(s![.., ..self.n]), state.slice(s![.., self.n..]));
        gp[1] += (&zbar * &(&x - &xp)).sum();
        let xbar = &zbar * (1.0 + p[1]) + g.slice(s![.., self.n..]);
        let xpbar = &zbar * (-p[1]);
        Ok(concatenate![Axis(1), xbar, xpbar])
    }
}

/// The model: T FISTA layers; the estimate is the first half of the state.
struct LearnedFista {
    net: Unrolled,
    params: Vec<f64>,
    lambda: f64,
    n: usize,
}

impl UnfoldedModel for LearnedFista {
    fn name(&self) -> String {
        "learned FISTA".into()
    }
    fn net(&self) -> &Unrolled {
        &self.net
    }
    fn params(&self) -> &[f64] {
        &self.params
    }
    fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }
    fn objective(&self) -> (f64, Penalty) {
        (self.lambda, Penalty::L1)
    }
    fn readout(&self, state: ArrayView2<'_, f64>) -> Array2<f64> {
        state.slice(s![.., ..self.n]).to_owned()
    }
    fn readout_vjp(&self, _state: ArrayView2<'_, f64>, g: Array2<f64>) -> Array2<f64> {
        concatenate![Axis(1), g, Array2::zeros(g.raw_dim())]
    }
    fn layer_params(&self) -> Vec<(String, Vec<f64>)> {
        vec![
            (
                "alpha".into(),
                self.params.iter().step_by(2).copied().collect(),
            ),
            (
                "beta".into(),
                self.params.iter().skip(1).step_by(2).copied().collect(),
            ),
        ]
    }
}

fn main() -> Result<()> {
    let (m, n, t, lambda) = (125, 250, 12, 0.1);
    let problem = Problem::gaussian(m, n, 1)?;
    let signal = Signal::default();
    let mut layers: Vec<Box<dyn Differentiable>> = Vec::new();
    let mut params = Vec::new();
    // FISTA: β at layer k is (s_{k−1} − 1)/s_k with s_0 = 1, s_k = (1 + √(1 + 4s²_{k−1}))/2
    // (layer 0 starts from x = x_prev = 0, so its β does not matter).
    let mut s_prev = 1.0f64;
    for k in 0..t {
        layers.push(Box::new(FistaLayer {
            step: ProxGradLayer::new(problem.a.clone(), lambda, Penalty::L1),
            n,
            m,
        }));
        let beta = if k == 0 {
            0.0
        } else {
            let s_k = 0.5 * (1.0 + (1.0 + 4.0 * s_prev * s_prev).sqrt());
            let b = (s_prev - 1.0) / s_k;
            s_prev = s_k;
            b
        };
        params.extend([1.0 / problem.lipschitz, beta]);
    }
    let mut model = LearnedFista {
        net: Unrolled::new(layers)?,
        params,
        lambda,
        n,
    };

    // 1. The new block's VJP against finite differences.
    let b = sample(&problem, &signal, 8, 5)?;
    let state = concatenate![Axis(1), b.x.view(), (&b.x * 0.5).view()];
    let err = check_vjp(
        model.net().layers()[1].as_ref(),
        &[0.2, 0.4],
        state.view(),
        b.y.view(),
        1,
        1e-6,
    )?;
    println!("FISTA layer VJP vs finite differences: relative error {err:.1e}");
    assert!(err < 1e-6);

    // 2. At initialization it is FISTA.
    let test = sample(&problem, &signal, 500, 99)?;
    let init = evaluate(&model, &problem, &test)?;
    let fis = Curves::of(
        &problem,
        &test,
        &fista(&problem, test.y.view(), lambda, t)?,
        lambda,
        Penalty::L1,
    );
    println!(
        "initialization = FISTA: objective {:.6} vs {:.6}",
        init.objective[t], fis.objective[t]
    );
    assert!((init.objective[t] - fis.objective[t]).abs() < 1e-9);

    // 3. Unsupervised training (objective at layer T), incremental, as for DU-ISTA.
    let cfg = TrainConfig {
        loss: LossKind::Unsupervised,
        steps_per_layer: 100,
        final_steps: 200,
        ..Default::default()
    };
    let state = train(&mut model, &problem, &cfg, None, None, &mut |_| {})?;
    let learned = evaluate(&model, &problem, &test)?;
    let (_, fstar, _) = lasso_optimum(&problem, test.y.view(), lambda, 1e-10, 100_000)?;
    let fstar = fstar.iter().sum::<f64>() / fstar.len() as f64;
    let ist = Curves::of(
        &problem,
        &test,
        &ista(&problem, test.y.view(), lambda, Penalty::L1, t)?,
        lambda,
        Penalty::L1,
    );
    let gap = |c: &Curves| (c.objective[t] - fstar) / fstar;
    println!(
        "relative objective gap after {t} layers: ISTA {:.2e}, FISTA {:.2e}, learned FISTA {:.2e}",
        gap(&ist),
        gap(&fis),
        gap(&learned)
    );
    println!(
        "NMSE after {t} layers: ISTA {:.2} dB, FISTA {:.2} dB, learned FISTA {:.2} dB",
        ist.nmse_db[t], fis.nmse_db[t], learned.nmse_db[t]
    );
    for (name, v) in model.layer_params() {
        println!(
            "{name}: {:?}",
            v.iter()
                .map(|x| (x * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        );
    }
    println!("{} minibatches, {} skipped", state.step, state.skipped);
    Ok(())
}
