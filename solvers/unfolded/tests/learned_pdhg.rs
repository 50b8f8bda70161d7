//! A model from other data through the same trainer: a learned Chambolle–Pock (core
//! `PdhgStep` layers) for TV deblurring of Kodak crops, trained by `train_on` on a
//! `BlurredCrops` source: it beats its classical initialization, resumes bit-identically, and
//! refuses what the data cannot give.

use hyperprox_core::diff::{Differentiable, PdhgStep, Unrolled};
use hyperprox_core::func::{Groups, IndBox, NormL21, Prox, SeparableSum, SqrNormL2};
use hyperprox_core::io::{load_images, psnr, shipped_data_dir};
use hyperprox_core::ops::{Conv2d, Gradient2d, LinearOperator, Stack};
use hyperprox_unfolded::images::BlurredCrops;
use hyperprox_unfolded::train::{estimate, train_on, BatchSource, LossKind, TrainConfig};
use hyperprox_unfolded::{Composed, Penalty};
use std::sync::Arc;

const CROP: usize = 16;
const N: usize = CROP * CROP;

fn source(first: usize, count: usize, noise: f64) -> BlurredCrops {
    let images = load_images(&shipped_data_dir().join("kodak/gray96"), 24, 96).unwrap();
    let kernel = Conv2d::<f64>::gaussian_kernel(5, 1.2).unwrap();
    let ims = images[first..first + count].to_vec();
    BlurredCrops::new(ims, CROP, kernel, noise, format!("kodak {first}+{count}")).unwrap()
}

fn model(src: &BlurredCrops, t: usize) -> Composed {
    let k: Arc<dyn LinearOperator<f64>> =
        Arc::new(Stack::new(src.blur(), Gradient2d::new(CROP, CROP).unwrap()).unwrap());
    let tv = NormL21::new(Groups::stacked(N, 2).unwrap(), 0.001).unwrap();
    let g: Arc<dyn Prox<f64>> = Arc::new(
        SeparableSum::new(vec![
            (
                N,
                Box::new(SqrNormL2::new(1.0).unwrap()) as Box<dyn Prox<f64>>,
            ),
            (2 * N, Box::new(tv)),
        ])
        .unwrap(),
    );
    let f: Arc<dyn Prox<f64>> = Arc::new(IndBox::new(0.0, 1.0).unwrap());
    let step = Arc::new(PdhgStep::new(k, f, g, N).unwrap());
    let p0 = step.classical_params().unwrap();
    let layers = (0..t).map(|_| Box::new(step.clone()) as Box<dyn Differentiable>);
    Composed {
        name: "learned PDHG".into(),
        net: Unrolled::new(layers.collect()).unwrap(),
        params: p0.repeat(t),
        lambda: 0.001,
        penalty: Penalty::L1,
        n: N,
        param_names: vec!["ln tau".into(), "ln sigma".into()],
        start: vec![0, N],
    }
}

fn cfg(steps: usize) -> TrainConfig {
    TrainConfig {
        loss: LossKind::Supervised,
        batch: 4,
        incremental: false,
        steps_per_layer: steps,
        final_steps: 0,
        lr: 5e-2,
        val_size: 4,
        ..Default::default()
    }
}

fn mean_psnr(m: &Composed, src: &BlurredCrops) -> f64 {
    let b = src.draw(32, 77).unwrap();
    let est = estimate(m, b.y.view()).unwrap();
    let rows = est.rows().into_iter().zip(b.x.rows());
    rows.map(|(e, x)| psnr(&e, &x)).sum::<f64>() / b.len() as f64
}

#[test]
fn learned_steps_beat_the_classical_ones_on_held_out_images() {
    let (train, test) = (source(0, 16, 0.01), source(16, 8, 0.01));
    let mut m = model(&train, 4);
    let before = mean_psnr(&m, &test);
    let st = train_on(&mut m, &train, &cfg(15), None, None, &mut |_| {}).unwrap();
    let after = mean_psnr(&m, &test);
    println!("test PSNR: Chambolle-Pock 4 iterations {before:.2} dB, learned {after:.2} dB");
    assert_eq!((st.step, st.skipped), (60, 0));
    assert!(after > before + 0.5, "{before} -> {after}");
}

#[test]
fn training_resumes_bit_identically_and_checks_the_data() {
    let train = source(0, 4, 0.01);
    let mut full = model(&train, 2);
    let st = train_on(&mut full, &train, &cfg(6), None, None, &mut |_| {}).unwrap();
    let mut part = model(&train, 2);
    let mid = train_on(&mut part, &train, &cfg(6), None, Some(5), &mut |_| {}).unwrap();
    assert_eq!(mid.step, 5);
    let mut resumed = model(&train, 2);
    let st2 = train_on(
        &mut resumed,
        &train,
        &cfg(6),
        Some(mid.clone()),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(st2.params, st.params);
    assert_ne!(
        st.params,
        model(&train, 2).params,
        "training moved the steps"
    );
    // The same configuration on other data is refused.
    let other = source(0, 4, 0.02);
    let mut m = model(&other, 2);
    let err = train_on(&mut m, &other, &cfg(6), Some(mid), None, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("same training options"), "{err}");
}

#[test]
fn unsupervised_training_needs_an_objective() {
    let train = source(0, 2, 0.01);
    let mut m = model(&train, 1);
    let c = TrainConfig {
        loss: LossKind::Unsupervised,
        ..cfg(2)
    };
    let err = train_on(&mut m, &train, &c, None, None, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("train supervised"), "{err}");
}
