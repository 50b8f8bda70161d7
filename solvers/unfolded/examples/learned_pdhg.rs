//! A learned primal–dual method in a few lines: Chambolle–Pock for TV deblurring,
//! `min_{x ∈ [0,1]} ½‖k ∗ x − y‖² + λ‖∇x‖_{2,1}`, unrolled for T layers with learned steps
//! `τ_t, σ_t` per layer. Each layer is the core `PdhgStep` block (its derivatives are the
//! core's: no hand-written VJP here); the model trains with the same trainer as the unfolded
//! sparse-recovery models (`train_on`), supervised, on 32×32 crops of the Kodak images.
//!
//! Setting: Gaussian blur 5×5, σ_b = 1.2, reflecting boundary; noise σ_n = 0.01; images 1–16
//! (96×96 grayscale) train, 17–24 test; λ = 0.001 (best PSNR of the converged TV solution over
//! {0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01} on the test crops). Initialization: the core
//! PDHG's steps `τ = 1/‖K‖`, `σ = 0.99/(τ‖K‖²)`, `K = [blur; ∇]`, so the untrained network is T
//! iterations of Chambolle–Pock.
//!
//! Run: `cargo run --release -p hyperprox-unfolded --example learned_pdhg`

use hyperprox_core::diff::{check_block, Differentiable, PdhgStep, Unrolled};
use hyperprox_core::error::Result;
use hyperprox_core::experiments::deblur_tv;
use hyperprox_core::func::{Groups, IndBox, NormL21, Prox, SeparableSum, SqrNormL2};
use hyperprox_core::io::{load_images, psnr, shipped_data_dir};
use hyperprox_core::ops::{Boundary, Conv2d, Gradient2d, LinearOperator, Stack};
use hyperprox_unfolded::images::BlurredCrops;
use hyperprox_unfolded::train::{estimate, train_on, BatchSource, LossKind, TrainConfig};
use hyperprox_unfolded::{Batch, Composed, Penalty, UnfoldedModel};
use ndarray::Array2;
use std::sync::Arc;

/// Mean PSNR (dB) of the rows of `est` against the clean crops.
fn mean_psnr(est: &Array2<f64>, b: &Batch) -> f64 {
    let rows = est.rows().into_iter().zip(b.x.rows());
    rows.map(|(e, x)| psnr(&e, &x)).sum::<f64>() / b.len() as f64
}

fn main() -> Result<()> {
    let (crop, t, noise, lambda) = (32, 10, 0.01, 0.001);
    let images = load_images(&shipped_data_dir().join("kodak/gray96"), 24, 96)?;
    let kernel = Conv2d::<f64>::gaussian_kernel(5, 1.2)?;
    let crops = |ims: &[Array2<f64>], label| {
        BlurredCrops::new(ims.to_vec(), crop, kernel.clone(), noise, label)
    };
    let train = crops(&images[..16], "kodak 1-16")?;
    let test = crops(&images[16..], "kodak 17-24")?;
    let n = crop * crop;
    let k: Arc<dyn LinearOperator<f64>> =
        Arc::new(Stack::new(train.blur(), Gradient2d::new(crop, crop)?)?);
    let tv = NormL21::new(Groups::stacked(n, 2)?, lambda)?;
    let g: Arc<dyn Prox<f64>> = Arc::new(SeparableSum::new(vec![
        (n, Box::new(SqrNormL2::new(1.0)?) as Box<dyn Prox<f64>>),
        (2 * n, Box::new(tv)),
    ])?);
    let f: Arc<dyn Prox<f64>> = Arc::new(IndBox::new(0.0, 1.0)?);
    let step = Arc::new(PdhgStep::new(k, f, g, n)?);
    let p0 = step.classical_params()?;
    let layers = (0..t).map(|_| Box::new(step.clone()) as Box<dyn Differentiable>);
    let mut model = Composed {
        name: "learned PDHG".into(),
        net: Unrolled::new(layers.collect())?,
        params: p0.repeat(t),
        lambda,
        penalty: Penalty::L1, // unused: supervised training only
        n,
        param_names: vec!["ln tau".into(), "ln sigma".into()],
        start: vec![0, n], // x = x̄ = y, dual 0
    };

    // 1. A layer's derivatives (state, steps, observation, JVP) against finite differences.
    let b = test.draw(2, 1)?;
    let s0 = model.initial_state(b.y.view());
    let r = check_block(step.as_ref(), &p0, s0.view(), b.y.view(), 1, 1e-6)?;
    println!(
        "PDHG layer vs finite differences: worst relative error {:.1e}",
        r.worst()
    );

    // 2. Baselines on 64 test crops: the observation, T iterations of Chambolle-Pock (the
    //    untrained network), and the converged TV solution (certified gap 1e-6).
    let tb = test.draw(64, 2)?;
    let mut converged = Array2::zeros((64, n));
    for (mut out, y) in converged.rows_mut().into_iter().zip(tb.y.rows()) {
        let y = Array2::from_shape_fn((crop, crop), |(i, j)| y[i * crop + j]);
        let (x, _) = deblur_tv(
            y.view(),
            kernel.clone(),
            lambda,
            Boundary::Reflect,
            1e-6,
            20_000,
        )?;
        out.iter_mut().zip(x.iter()).for_each(|(o, v)| *o = *v);
    }
    let before = mean_psnr(&estimate(&model, tb.y.view())?, &tb);

    // 3. Train the steps, supervised (mean squared error to the clean crops), all layers at once.
    let cfg = TrainConfig {
        loss: LossKind::Supervised,
        batch: 8,
        incremental: false,
        steps_per_layer: 30,
        final_steps: 100,
        lr: 5e-2,
        val_size: 16,
        ..Default::default()
    };
    let st = train_on(&mut model, &train, &cfg, None, None, &mut |_| {})?;
    println!(
        "test PSNR (dB): observation {:.2}, Chambolle-Pock {t} iterations {:.2}, \
         learned PDHG {t} layers {:.2}, converged TV {:.2}",
        mean_psnr(&tb.y, &tb),
        before,
        mean_psnr(&estimate(&model, tb.y.view())?, &tb),
        mean_psnr(&converged, &tb)
    );
    for (name, v) in model.layer_params() {
        let steps: Vec<f64> = v.iter().map(|p| (p.exp() * 1e3).round() / 1e3).collect();
        println!("{}: {steps:?}", name.trim_start_matches("ln "));
    }
    println!("{} minibatches, {} skipped", st.step, st.skipped);
    Ok(())
}
