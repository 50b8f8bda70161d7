//! Neural blocks with a hyperparameter as an input: an MLP on the shipped digits whose dropout
//! rate is read per example from the context (concrete dropout, so the rate has a derivative),
//! trained by a hand-written loop, then the gradient of the training loss with respect to the
//! rate (`vjp_ctx`) checked against a finite difference.
//!
//! Run: `cargo run --release -p hyperprox-core --example nn_blocks`

use hyperprox_core::diff::Differentiable;
use hyperprox_core::error::Result;
use hyperprox_core::nn::loss::{ClassLoss, CrossEntropy};
use hyperprox_core::nn::optim::{Method, OptimConfig, ParamOptimizer};
use hyperprox_core::nn::train::{accuracy, digits_split};
use hyperprox_core::nn::{
    Act, Activation, Dense, DropRate, Dropout, DropoutControl, Layer, Sequential,
};
use ndarray::{Array2, Axis};
use std::sync::Arc;

fn main() -> Result<()> {
    let split = digits_split::<f64>()?;
    let ctl = DropoutControl::new(7);
    let drop = Dropout::new(128, DropRate::Context(0), ctl.clone(), 1)?.concrete(0.1)?;
    let net = Sequential::new(vec![
        Arc::new(Dense::new(64, 128)) as Arc<dyn Layer>,
        Arc::new(Act::new(128, Activation::Gelu)?),
        Arc::new(drop),
        Arc::new(Dense::new(128, 10)),
    ])?;
    let mut p = net.init(0);
    let cfg = OptimConfig::for_groups(
        Method::by_name("adam")?,
        2e-3,
        &net.param_groups(),
        1e-4,
        false,
    );
    let mut opt = ParamOptimizer::new(cfg, p.len())?;
    let mut ce = CrossEntropy { smoothing: 0.0 };
    let rate = 0.2;
    let n = split.train.len();
    for step in 0..1500u64 {
        ctl.set_step(step);
        let ids: Vec<usize> = (0..64).map(|i| (step as usize * 64 + i) % n).collect();
        let b = split.train.select(&ids);
        let c = Array2::from_elem((64, 1), rate);
        let (out, saved) = net.forward_save(&p, b.x.view(), c.view())?;
        let mut g = Array2::zeros(out.raw_dim());
        ce.value_grad(out.view(), &b.y, &ids, g.view_mut())?;
        let mut gp = vec![0.0; p.len()];
        net.vjp_saved(&p, b.x.view(), c.view(), &saved, g.view(), &mut gp)?;
        opt.step(&mut p, &gp)?;
    }
    ctl.set_training(false);
    let e = Array2::zeros((split.test.len(), 1));
    let logits = net.forward(&p, split.test.x.view(), e.view())?;
    println!("test accuracy {:.3}", accuracy(&logits, &split.test.y));

    // d(training loss)/d(rate) on one batch, by the context VJP and by a central difference
    // (same masks: same step).
    ctl.set_training(true);
    ctl.set_step(99_999);
    let b = split.train.select(&(0..256).collect::<Vec<_>>());
    let loss_at = |r: f64| -> Result<(f64, Array2<f64>, Array2<f64>)> {
        let c = Array2::from_elem((256, 1), r);
        let out = net.forward(&p, b.x.view(), c.view())?;
        let mut g = Array2::zeros(out.raw_dim());
        let l = CrossEntropy { smoothing: 0.0 }.value_grad(out.view(), &b.y, &[], g.view_mut())?;
        Ok((l, g, c))
    };
    let (_, g, c) = loss_at(rate)?;
    let dc = net.vjp_ctx(&p, b.x.view(), c.view(), g.view())?;
    let analytic = dc.sum_axis(Axis(0))[0];
    let h = 1e-6;
    let fd = (loss_at(rate + h)?.0 - loss_at(rate - h)?.0) / (2.0 * h);
    println!("d loss / d rate: context VJP {analytic:.6e}, finite difference {fd:.6e}");
    assert!((analytic - fd).abs() <= 1e-5 * fd.abs().max(1e-3));
    Ok(())
}
