//! `TrainConfig::device`: DU-ISTA/DU-IHT training on a GPU is the CPU training (the same
//! stages, minibatches, Adam steps; the minibatch pass on device batches), and asking for a GPU
//! where none can be used is an error before any minibatch. With the `cuda` feature and no
//! usable GPU the device comparisons print that they are skipped.

use hyperprox_core::device::Device;
use hyperprox_core::error::Error;
use hyperprox_unfolded::train::{train, LossKind, TrainConfig};
use hyperprox_unfolded::{ModelKind, ModelSpec, Problem, Unfolded, UnfoldedModel};

fn cfg(loss: LossKind, device: Device) -> TrainConfig {
    TrainConfig {
        loss,
        batch: 20,
        steps_per_layer: 6,
        final_steps: 6,
        val_size: 40,
        device,
        ..Default::default()
    }
}

#[test]
fn training_on_an_unusable_gpu_is_an_error_before_any_minibatch() {
    if cfg!(feature = "cuda") && Device::Cuda(0).check().is_ok() {
        eprintln!("skipped: this machine has a usable GPU");
        return;
    }
    let pr = Problem::gaussian(20, 40, 1).unwrap();
    let mut model = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 3), &pr).unwrap();
    let before = model.params().to_vec();
    let mut calls = 0;
    let e = train(
        &mut model,
        &pr,
        &cfg(LossKind::Supervised, Device::Cuda(0)),
        None,
        None,
        &mut |_| calls += 1,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Device(_)), "{e}");
    assert!(e.to_string().contains("--device cpu"), "{e}");
    assert_eq!(calls, 0);
    assert_eq!(model.params(), &before[..]);
}

#[cfg(feature = "cuda")]
mod on_device {
    use super::*;
    use hyperprox_core::cuda::{Gpu, GpuMat};
    use hyperprox_core::diff::{check_vjp_on, Differentiable, DifferentiableOn, WorkspaceOn};
    use hyperprox_unfolded::{Penalty, ProxGradLayer};
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    fn gpu() -> Option<Gpu> {
        match Gpu::new(0) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("skipped (no usable GPU): {e}");
                None
            }
        }
    }

    fn rand(r: usize, c: usize, seed: u64) -> Array2<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((r, c), |_| rng.random_range(-1.0..1.0))
    }

    fn rel(a: &[f64], b: &[f64]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let n: f64 = b.iter().map(|y| y * y).sum();
        (d / n.max(1e-300)).sqrt()
    }

    /// The DU-ISTA and DU-IHT layer on device batches: forward and VJP (state and step size)
    /// equal the host layer's to 1e-12, and the VJP passes the finite-difference check on
    /// device buffers.
    #[test]
    fn the_prox_grad_layer_on_the_device_is_the_host_layer() {
        let Some(g) = gpu() else { return };
        let (b, m, n) = (6, 15, 30);
        let a = Arc::new(rand(m, n, 1));
        let x = rand(b, n, 2);
        let y = rand(b, m, 3);
        let gbar = rand(b, n, 4);
        for pen in [Penalty::L1, Penalty::L0] {
            let layer = ProxGradLayer::new(a.clone(), 0.05, pen);
            let p = [0.3];
            let want = layer.forward(&p, x.view(), y.view()).unwrap();
            let mut gp_h = [0.0];
            let want_g = layer
                .vjp(&p, x.view(), y.view(), gbar.view(), &mut gp_h)
                .unwrap();
            let (xd, yd, gd) = (
                GpuMat::from_array(&g, x.view()).unwrap(),
                GpuMat::from_array(&g, y.view()).unwrap(),
                GpuMat::from_array(&g, gbar.view()).unwrap(),
            );
            let mut ws = WorkspaceOn::default();
            let mut out = GpuMat::zeros(&g, b, n).unwrap();
            layer.forward_on(&p, &xd, &yd, &mut ws, &mut out).unwrap();
            let got = out.to_array().unwrap();
            assert!(rel(got.as_slice().unwrap(), want.as_slice().unwrap()) <= 1e-12);
            let mut gp_d = [0.0];
            let mut gx = GpuMat::zeros(&g, b, n).unwrap();
            layer
                .vjp_on(&p, &xd, &yd, &mut ws, &gd, &mut gp_d, &mut gx)
                .unwrap();
            let gx = gx.to_array().unwrap();
            assert!(rel(gx.as_slice().unwrap(), want_g.as_slice().unwrap()) <= 1e-12);
            assert!((gp_d[0] - gp_h[0]).abs() <= 1e-12 * gp_h[0].abs().max(1.0));
            let like = GpuMat::zeros(&g, 1, 1).unwrap();
            let c =
                check_vjp_on::<GpuMat<f64>, _>(&layer, &like, &p, x.view(), y.view(), 1e-7, 3, 5)
                    .unwrap();
            assert!(c.state <= 1e-5 && c.params <= 1e-5, "{pen:?}: {c:?}");
        }
    }

    /// Training on the GPU gives the CPU's step sizes (supervised and unsupervised, DU-ISTA
    /// and DU-IHT): every minibatch's loss and gradient agree to rounding, so Adam takes the
    /// same steps.
    #[test]
    fn training_on_the_gpu_is_training_on_the_cpu() {
        if gpu().is_none() {
            return;
        }
        let pr = Problem::gaussian(25, 50, 3).unwrap();
        for kind in [ModelKind::DuIsta, ModelKind::DuIht] {
            for loss in [LossKind::Supervised, LossKind::Unsupervised] {
                let mut ps = vec![];
                for dev in [Device::Cpu, Device::Cuda(0)] {
                    let mut model = Unfolded::new(ModelSpec::new(kind, 4), &pr).unwrap();
                    let st =
                        train(&mut model, &pr, &cfg(loss, dev), None, None, &mut |_| {}).unwrap();
                    assert_eq!(st.skipped, 0);
                    ps.push(model.params().to_vec());
                }
                assert!(
                    rel(&ps[1], &ps[0]) <= 1e-9,
                    "{kind:?} {loss:?}: {:?} vs {:?}",
                    ps[1],
                    ps[0]
                );
            }
        }
        // A model without device layers is refused by name.
        let mut model = Unfolded::new(ModelSpec::new(ModelKind::Lista, 2), &pr).unwrap();
        let e = train(
            &mut model,
            &pr,
            &cfg(LossKind::Supervised, Device::Cuda(0)),
            None,
            None,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("DU-ISTA and DU-IHT"), "{e}");
    }
}
