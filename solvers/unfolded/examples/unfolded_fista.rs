//! A new unfolded algorithm in a few lines: FISTA with a learned momentum β_t **and step α_t**
//! per layer, composed from standard blocks (no hand-written VJP) and trained by the same
//! trainer as the built-in models.
//!
//! The state is `[x_t, x_{t−1}]`; one layer is `Extrapolate` (`z = x_t + β_t(x_t − x_{t−1})`,
//! state `[z, x_t]`) followed by the DU-ISTA step on the first part (`OnFirst`):
//! `x_{t+1} = S_{α_t λ}(z + α_t Aᵀ(y − A z))`. With `α_t = 1/L` and FISTA's
//! `β_t = (s_{t−1} − 1)/s_t` it is FISTA exactly.
//!
//! Run: `cargo run --release -p hyperprox-unfolded --example unfolded_fista`

use hyperprox_core::diff::{check_block, Chain, Differentiable, Unrolled};
use hyperprox_core::error::Result;
use hyperprox_core::nn::{Extrapolate, OnFirst};
use hyperprox_unfolded::baselines::{fista, ista, lasso_optimum, Curves};
use hyperprox_unfolded::train::{train, LossKind, TrainConfig};
use hyperprox_unfolded::{evaluate, sample, Composed, Penalty, Problem, ProxGradLayer, Signal};
use ndarray::{concatenate, Axis};

fn main() -> Result<()> {
    let (m, n, t, lambda) = (125, 250, 12, 0.1);
    let problem = Problem::gaussian(m, n, 1)?;
    let (mut layers, mut params): (Vec<Box<dyn Differentiable>>, Vec<f64>) = (vec![], vec![]);
    let mut s_prev = 1.0f64;
    for k in 0..t {
        let step = ProxGradLayer::new(problem.a.clone(), lambda, Penalty::L1);
        let layer = Chain::new(vec![
            Box::new(Extrapolate::new(n)),
            Box::new(OnFirst::new(Box::new(step), n)),
        ])?;
        layers.push(Box::new(layer));
        // FISTA's momentum (layer 0 starts from x = x_prev = 0, so its β does not matter).
        let s_k = 0.5 * (1.0 + (1.0 + 4.0 * s_prev * s_prev).sqrt());
        let beta = if k == 0 { 0.0 } else { (s_prev - 1.0) / s_k };
        if k > 0 {
            s_prev = s_k;
        }
        params.extend([beta, 1.0 / problem.lipschitz]);
    }
    let mut model = Composed {
        name: "learned FISTA".into(),
        net: Unrolled::new(layers)?,
        params,
        lambda,
        penalty: Penalty::L1,
        n,
        param_names: vec!["beta".into(), "alpha".into()],
        start: vec![],
    };

    // 1. Every derivative of a layer against finite differences (the composition's, for free).
    let b = sample(&problem, &Signal::default(), 8, 5)?;
    let state = concatenate![Axis(1), b.x.view(), (&b.x * 0.5).view()];
    let layer = model.net.layers()[1].as_ref();
    let r = check_block(layer, &[0.4, 0.2], state.view(), b.y.view(), 1, 1e-6)?;
    println!(
        "FISTA layer derivatives vs finite differences: worst relative error {:.1e}",
        r.worst()
    );
    assert!(r.worst() < 1e-6);

    // 2. At initialization it is FISTA.
    let test = sample(&problem, &Signal::default(), 500, 99)?;
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

    // 3. Unsupervised training (the objective at layer T), incremental, as for DU-ISTA.
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
    for (name, v) in hyperprox_unfolded::UnfoldedModel::layer_params(&model) {
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
