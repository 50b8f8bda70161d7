//! Every neural block against finite differences (state, parameter and context VJPs, state JVP),
//! in f64 and f32, and the kit catching derivatives 1 % off.

use hyperprox_core::diff::{check_block, Differentiable};
use hyperprox_core::linalg::Real;
use hyperprox_core::nn::{
    Act, Activation, Conv2d, Dense, DropRate, Dropout, DropoutControl, Extrapolate, ImageShape,
    Init, Layer, LayerNorm, OnFirst, Pool2d, PoolKind, Reshape, Residual, Sequential,
};
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

/// Entries of magnitude at least 0.2 (away from the kinks of ReLU and the thresholds).
fn away<T: Real>(r: usize, c: usize, seed: u64) -> Array2<T> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((r, c), |_| {
        let z: f64 = StandardNormal.sample(&mut rng);
        T::c(z.signum() * (0.2 + z.abs()))
    })
}

/// Every block of the module with its parameters and a context of width 2 (column 0 a dropout
/// rate in (0, 1)).
fn blocks<T: Real>() -> Vec<(Box<dyn Layer<T>>, usize)> {
    let ctl = DropoutControl::new(3);
    ctl.set_step(5);
    let img = ImageShape::new(2, 5, 4);
    let mut v: Vec<(Box<dyn Layer<T>>, usize)> = vec![
        (Box::new(Dense::new(7, 5)), 7),
        (Box::new(Dense::new(7, 5).without_bias()), 7),
        (Box::new(Conv2d::new(img, 3, 3, 1, 1).unwrap()), img.len()),
        (Box::new(Conv2d::new(img, 2, 2, 2, 0).unwrap()), img.len()),
        (
            Box::new(Pool2d::new(img, PoolKind::Average, 2, 2).unwrap()),
            img.len(),
        ),
        (
            Box::new(Pool2d::new(img, PoolKind::Max, 2, 1).unwrap()),
            img.len(),
        ),
        (Box::new(LayerNorm::new(6)), 6),
        (Box::new(Reshape::new(&[2, 3], &[6]).unwrap()), 6),
        (
            Box::new(Dropout::new(6, DropRate::Fixed(0.3), ctl.clone(), 1).unwrap()),
            6,
        ),
        (
            Box::new(Dropout::new(6, DropRate::Context(0), ctl.clone(), 2).unwrap()),
            6,
        ),
        (
            Box::new(
                Dropout::new(6, DropRate::Context(0), ctl.clone(), 3)
                    .unwrap()
                    .concrete(0.5)
                    .unwrap(),
            ),
            6,
        ),
        (
            Box::new(
                Residual::new(Box::new(
                    Sequential::new(vec![
                        Arc::new(Dense::new(6, 6)) as Arc<dyn Layer<T>>,
                        Arc::new(Act::new(6, Activation::Tanh).unwrap()),
                        Arc::new(Dropout::new(6, DropRate::Context(0), ctl, 4).unwrap()),
                    ])
                    .unwrap(),
                ))
                .unwrap(),
            ),
            6,
        ),
    ];
    v.push((Box::new(Extrapolate::new(3)), 6));
    v.push((
        Box::new(OnFirst::new(
            Box::new(Dropout::new(3, DropRate::Context(0), DropoutControl::new(9), 5).unwrap()),
            3,
        )),
        6,
    ));
    v.push((Box::new(OnFirst::new(Box::new(Dense::new(3, 2)), 3)), 6));
    for f in [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus(3.0),
        Activation::Gelu,
    ] {
        v.push((Box::new(Act::new(5, f).unwrap()), 5));
    }
    v
}

fn context<T: Real>(b: usize) -> Array2<T> {
    Array2::from_shape_fn((b, 2), |(i, j)| {
        T::c(if j == 0 { 0.2 + 0.15 * i as f64 } else { 1.0 })
    })
}

fn check_all<T: Real>(h: f64, tol: f64) {
    for (blk, n) in blocks::<T>() {
        let p = blk.init_params(&mut StdRng::seed_from_u64(1));
        assert_eq!(p.len(), blk.num_params(), "{}", blk.name());
        let x = away::<T>(3, n, 2);
        let c = context::<T>(3);
        let r = check_block(blk.as_ref(), &p, x.view(), c.view(), 4, T::c(h)).unwrap();
        assert!(r.worst() < tol, "{} ({}): {r:?}", blk.name(), T::NAME);
    }
}

#[test]
fn every_block_matches_finite_differences_in_f64() {
    check_all::<f64>(1e-6, 1e-6);
}

#[test]
fn every_block_matches_finite_differences_in_f32() {
    check_all::<f32>(1e-2, 3e-3);
}

/// A dense layer whose weight VJP is 1 % off in one entry group: the f32 kit must see it.
struct OffDense(Dense, usize);

impl Differentiable<f32> for OffDense {
    fn name(&self) -> String {
        "off".into()
    }
    fn in_dim(&self) -> usize {
        Differentiable::<f32>::in_dim(&self.0)
    }
    fn out_dim(&self) -> usize {
        Differentiable::<f32>::out_dim(&self.0)
    }
    fn num_params(&self) -> usize {
        Differentiable::<f32>::num_params(&self.0)
    }
    fn forward(
        &self,
        p: &[f32],
        x: ArrayView2<'_, f32>,
        c: ArrayView2<'_, f32>,
    ) -> hyperprox_core::Result<Array2<f32>> {
        self.0.forward(p, x, c)
    }
    fn vjp(
        &self,
        p: &[f32],
        x: ArrayView2<'_, f32>,
        c: ArrayView2<'_, f32>,
        g: ArrayView2<'_, f32>,
        gp: &mut [f32],
    ) -> hyperprox_core::Result<Array2<f32>> {
        let gx = self.0.vjp(p, x, c, g, gp)?;
        if self.1 == 1 {
            gp.iter_mut().for_each(|v| *v *= 1.01);
        }
        Ok(if self.1 == 0 { gx * 1.01 } else { gx })
    }
    fn jvp(
        &self,
        p: &[f32],
        x: ArrayView2<'_, f32>,
        c: ArrayView2<'_, f32>,
        v: ArrayView2<'_, f32>,
    ) -> hyperprox_core::Result<Array2<f32>> {
        let j = self.0.jvp(p, x, c, v)?;
        Ok(if self.1 == 2 { j * 1.01 } else { j })
    }
}

#[test]
fn the_f32_kit_catches_a_one_percent_error() {
    let d = Dense::new(7, 5);
    let p: Vec<f32> = d.init_params(&mut StdRng::seed_from_u64(1));
    let x = away::<f32>(3, 7, 2);
    let c = Array2::<f32>::zeros((3, 0));
    let ok = check_block(&OffDense(d.clone(), 9), &p, x.view(), c.view(), 4, 1e-2).unwrap();
    assert!(ok.worst() < 3e-3, "{ok:?}");
    for which in 0..3 {
        let r = check_block(&OffDense(d.clone(), which), &p, x.view(), c.view(), 4, 1e-2).unwrap();
        let caught = [r.state, r.params, r.jvp][which];
        assert!(caught > 5e-3, "which {which}: {r:?}");
    }
}

#[test]
fn dense_and_conv_compute_the_textbook_maps() {
    // Dense: y = W x + b with W = [[1, 2], [3, 4], [5, 6]], b = [1, 0, -1].
    let d = Dense::new(2, 3);
    let p = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 0.0, -1.0];
    let x = ndarray::array![[1.0, -1.0]];
    let y = d
        .forward(&p, x.view(), Array2::zeros((1, 0)).view())
        .unwrap();
    assert_eq!(y, ndarray::array![[0.0, -1.0, -2.0]]);
    // Conv: a 3×3 image, one 2×2 filter [[1, 0], [0, -1]], stride 1, no padding, bias 0.5:
    // out(i, j) = x(i, j) − x(i+1, j+1) + 0.5, computed directly.
    let img = ImageShape::new(1, 3, 3);
    let cv = Conv2d::new(img, 1, 2, 1, 0).unwrap();
    let p = [1.0, 0.0, 0.0, -1.0, 0.5];
    let x = Array2::from_shape_fn((2, 9), |(b, i)| (i * i + 3 * b) as f64 * 0.1);
    let y = cv
        .forward(&p, x.view(), Array2::zeros((2, 0)).view())
        .unwrap();
    for b in 0..2 {
        for i in 0..2 {
            for j in 0..2 {
                let want = x[(b, i * 3 + j)] - x[(b, (i + 1) * 3 + j + 1)] + 0.5;
                assert!((y[(b, i * 2 + j)] - want).abs() < 1e-12);
            }
        }
    }
    // Padding 1 keeps the size; the corner sees only the in-bounds taps.
    let cv = Conv2d::new(img, 1, 3, 1, 1).unwrap();
    let mut p = vec![1.0; 9];
    p.push(0.0);
    let y = cv
        .forward(&p, x.view(), Array2::zeros((2, 0)).view())
        .unwrap();
    let corner = x[(0, 0)] + x[(0, 1)] + x[(0, 3)] + x[(0, 4)];
    assert!((y[(0, 0)] - corner).abs() < 1e-12);
}

#[test]
fn pooling_layer_norm_and_activations_take_known_values() {
    let img = ImageShape::new(1, 2, 2);
    let x = ndarray::array![[1.0, 4.0, -2.0, 3.0]];
    let e = Array2::zeros((1, 0));
    let mx = Pool2d::new(img, PoolKind::Max, 2, 2).unwrap();
    let av = Pool2d::new(img, PoolKind::Average, 2, 2).unwrap();
    assert_eq!(mx.forward(&[], x.view(), e.view()).unwrap()[(0, 0)], 4.0);
    assert_eq!(av.forward(&[], x.view(), e.view()).unwrap()[(0, 0)], 1.5);
    let ln = LayerNorm::new(4);
    let p: Vec<f64> = ln.init_params(&mut StdRng::seed_from_u64(0));
    let y = ln.forward(&p, x.view(), e.view()).unwrap();
    let (m, v) = (y.mean().unwrap(), y.mapv(|a| a * a).mean().unwrap());
    assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-4, "{m} {v}");
    for (f, x0, want) in [
        (Activation::Relu, -1.0, 0.0),
        (Activation::LeakyRelu(0.1), -2.0, -0.2),
        (Activation::Sigmoid, 0.0, 0.5),
        (Activation::Softplus(2.0), 0.0, std::f64::consts::LN_2 / 2.0),
        (Activation::Gelu, 1.0, 0.841_344_746_068_542_9),
    ] {
        assert!((f.eval(x0).0 - want).abs() < 1e-12, "{f:?}");
    }
    // Softplus does not overflow.
    assert!((Activation::Softplus(1.0).eval(1e4_f64).0 - 1e4).abs() < 1e-9);
    assert!(Act::new(3, Activation::Softplus(0.0)).is_err());
}

#[test]
fn dropout_masks_are_seeded_scaled_and_off_in_evaluation() {
    let ctl = DropoutControl::new(11);
    let d = Dropout::new(1000, DropRate::Fixed(0.25), ctl.clone(), 1).unwrap();
    let x = Array2::<f64>::ones((4, 1000));
    let e = Array2::zeros((4, 0));
    let y1 = d.forward(&[], x.view(), e.view()).unwrap();
    let y2 = d.forward(&[], x.view(), e.view()).unwrap();
    assert_eq!(y1, y2, "same step, same masks");
    // Kept entries are scaled by 1/(1 − p); about a quarter are dropped.
    let kept = y1.iter().filter(|&&v| v != 0.0).count() as f64 / 4000.0;
    assert!((kept - 0.75).abs() < 0.03, "{kept}");
    assert!(y1
        .iter()
        .all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-12));
    ctl.set_step(1);
    assert_ne!(
        d.forward(&[], x.view(), e.view()).unwrap(),
        y1,
        "new step, new masks"
    );
    ctl.set_training(false);
    assert_eq!(d.forward(&[], x.view(), e.view()).unwrap(), x);
    // A per-example rate from the context: rows with a larger rate drop more.
    ctl.set_training(true);
    let dc = Dropout::new(1000, DropRate::Context(0), ctl, 2).unwrap();
    let c = ndarray::array![[0.1], [0.5], [0.9], [0.0]];
    let y = dc.forward(&[], x.view(), c.view()).unwrap();
    let frac: Vec<f64> = y
        .rows()
        .into_iter()
        .map(|r| r.iter().filter(|&&v| v == 0.0).count() as f64 / 1000.0)
        .collect();
    assert!(
        frac[0] < frac[1] && frac[1] < frac[2] && frac[3] == 0.0,
        "{frac:?}"
    );
    let bad = ndarray::array![[1.2], [0.5], [0.9], [0.0]];
    assert!(dc.forward(&[], x.view(), bad.view()).is_err());
    assert!(Dropout::new(3, DropRate::Fixed(1.0), DropoutControl::new(0), 0).is_err());
}

#[test]
fn initializations_have_the_stated_scales() {
    let mut rng = StdRng::seed_from_u64(0);
    let n = 40_000;
    for (init, var) in [
        (Init::KaimingNormal, 2.0 / 100.0),
        (Init::KaimingUniform, 2.0 / 100.0),
        (Init::XavierNormal, 2.0 / 150.0),
        (Init::XavierUniform, 2.0 / 150.0),
        (Init::TorchDefault, 1.0 / 300.0),
    ] {
        let w: Vec<f64> = init.sample(n, 100, 50, &mut rng);
        let v = w.iter().map(|a| a * a).sum::<f64>() / n as f64;
        assert!((v / var - 1.0).abs() < 0.03, "{init:?}: {v} vs {var}");
    }
}

#[test]
fn shapes_are_checked() {
    let e = Array2::<f64>::zeros((2, 0));
    let d = Dense::new(3, 2);
    let p = vec![0.0; 8];
    assert!(d
        .forward(&p, Array2::zeros((2, 4)).view(), e.view())
        .is_err());
    let img = ImageShape::new(1, 2, 2);
    assert!(Conv2d::new(img, 1, 5, 1, 0).is_err());
    assert!(Conv2d::new(img, 1, 2, 0, 0).is_err());
    assert!(Reshape::new(&[2, 3], &[5]).is_err());
    assert!(Residual::<f64>::new(Box::new(Dense::new(3, 2))).is_err());
    let s = Sequential::<f64>::new(vec![Arc::new(Dense::new(3, 2)), Arc::new(Dense::new(2, 1))])
        .unwrap();
    assert!(s
        .forward(&[0.0; 3], Array2::zeros((2, 3)).view(), e.view())
        .is_err());
    assert!(
        Sequential::<f64>::new(vec![Arc::new(Dense::new(3, 2)), Arc::new(Dense::new(3, 1))])
            .is_err()
    );
    let names: Vec<String> = s.param_groups().into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["0.weight", "0.bias", "1.weight", "1.bias"]);
}

#[test]
fn parameter_slices_of_the_wrong_length_are_errors_not_panics() {
    let e = Array2::<f64>::zeros((2, 0));
    let x = Array2::<f64>::zeros((2, 6));
    let img = ImageShape::new(1, 2, 3);
    let blocks: Vec<Box<dyn Differentiable<f64>>> = vec![
        Box::new(Dense::new(6, 2)),
        Box::new(LayerNorm::new(6)),
        Box::new(Extrapolate::new(3)),
        Box::new(Conv2d::new(img, 2, 2, 1, 0).unwrap()),
    ];
    for b in blocks {
        let short = vec![0.0; b.num_params() - 1];
        let ok = vec![0.0; b.num_params()];
        assert!(
            b.forward(&short, x.view(), e.view()).is_err(),
            "{}",
            b.name()
        );
        let g = Array2::zeros((2, b.out_dim()));
        let mut gp = vec![0.0; b.num_params() + 1];
        assert!(
            b.vjp(&ok, x.view(), e.view(), g.view(), &mut gp).is_err(),
            "{}",
            b.name()
        );
        assert!(
            b.jvp(&short, x.view(), e.view(), x.view()).is_err(),
            "{}",
            b.name()
        );
    }
}

/// The backend-generic VJP check ([`check_vjp_on`], which the GPU tests run on device
/// batches) on host batches: every block passes, and a VJP 1 % off in the state or the
/// parameters is caught.
#[test]
fn the_backend_generic_vjp_check_passes_the_blocks_and_catches_a_one_percent_error() {
    use hyperprox_core::diff::check_vjp_on;
    for (blk, n) in blocks::<f64>() {
        let p = blk.init_params(&mut StdRng::seed_from_u64(1));
        let x = away::<f64>(3, n, 2);
        let c = context::<f64>(3);
        let r = check_vjp_on::<Array2<f64>, _>(
            blk.as_ref(),
            x.view(),
            &p,
            x.view(),
            c.view(),
            1e-6,
            3,
            7,
        )
        .unwrap();
        assert!(r.state < 1e-6 && r.params < 1e-6, "{}: {r:?}", blk.name());
    }
    let d = Dense::new(7, 5);
    let p: Vec<f32> = d.init_params(&mut StdRng::seed_from_u64(1));
    let x = away::<f32>(3, 7, 2);
    let c = Array2::<f32>::zeros((3, 0));
    let ok = check_vjp_on::<Array2<f32>, _>(
        &OffDense(d.clone(), 9),
        x.view(),
        &p,
        x.view(),
        c.view(),
        1e-2,
        3,
        1,
    )
    .unwrap();
    assert!(ok.state < 3e-3 && ok.params < 3e-3, "{ok:?}");
    for which in 0..2 {
        let r = check_vjp_on::<Array2<f32>, _>(
            &OffDense(d.clone(), which),
            x.view(),
            &p,
            x.view(),
            c.view(),
            1e-2,
            3,
            1,
        )
        .unwrap();
        let caught = [r.state, r.params][which];
        // A VJP 1 % off is a relative error of 1 % (not merely "large").
        assert!((caught - 0.01).abs() < 1e-3, "which {which}: {r:?}");
    }
}

/// A layer whose output is not finite stops the pass with `Diverged` naming that layer, on
/// the generic pass and on `Unrolled` alike.
#[test]
fn a_non_finite_state_stops_the_unrolled_pass_at_its_layer() {
    use hyperprox_core::diff::{
        DifferentiableOn, SquaredError, Unrolled, UnrolledOn, UnrolledWorkspace,
        UnrolledWorkspaceOn,
    };
    use hyperprox_core::Error;
    let net = Unrolled::new(vec![
        Box::new(Act::new(2, Activation::Tanh).unwrap()) as Box<dyn Differentiable<f64>>,
        Box::new(Dense::new(2, 2).without_bias()),
        Box::new(Act::new(2, Activation::Tanh).unwrap()),
    ])
    .unwrap();
    let on = UnrolledOn::new(vec![
        Box::new(Act::new(2, Activation::Tanh).unwrap()) as Box<dyn DifferentiableOn<Array2<f64>>>,
        Box::new(Dense::new(2, 2).without_bias()),
        Box::new(Act::new(2, Activation::Tanh).unwrap()),
    ])
    .unwrap();
    let p = [1e308, 1e308, 1e308, 1e308];
    let x0 = ndarray::array![[5.0, 5.0]];
    let c = Array2::<f64>::zeros((1, 0));
    let t = ndarray::array![[0.0, 0.0]];
    let check = |e: Error| match e {
        Error::Diverged {
            method, iteration, ..
        } => {
            assert_eq!(iteration, 2, "{method}");
            assert!(method.contains("layer 1"), "{method}");
        }
        e => panic!("{e}"),
    };
    let mut ws = UnrolledWorkspace::default();
    check(
        net.value_and_grad_ws(&mut ws, &p, x0.view(), c.view(), 3, &SquaredError, t.view())
            .unwrap_err(),
    );
    let mut ws = UnrolledWorkspaceOn::default();
    check(
        on.value_and_grad(&mut ws, &p, x0.view(), c.view(), 3, &SquaredError, t.view())
            .unwrap_err(),
    );
    // One layer is fine.
    assert!(on
        .value_and_grad(&mut ws, &p, x0.view(), c.view(), 1, &SquaredError, t.view())
        .is_ok());
}

/// [`UnrolledOn`] on host batches is [`Unrolled::value_and_grad_ws`] (the same pass), bit for
/// bit.
#[test]
fn the_generic_unrolled_pass_on_host_batches_is_the_unrolled_pass() {
    use hyperprox_core::diff::{
        DifferentiableOn, SquaredError, Unrolled, UnrolledOn, UnrolledWorkspace,
        UnrolledWorkspaceOn,
    };
    let mk = || -> Vec<Box<dyn Differentiable<f64>>> {
        vec![
            Box::new(Dense::new(4, 4)),
            Box::new(Act::new(4, Activation::Gelu).unwrap()),
            Box::new(Dense::new(4, 4)),
        ]
    };
    let net = Unrolled::new(mk()).unwrap();
    let on: Vec<Box<dyn DifferentiableOn<Array2<f64>>>> = vec![
        Box::new(Dense::new(4, 4)),
        Box::new(Act::new(4, Activation::Gelu).unwrap()),
        Box::new(Dense::new(4, 4)),
    ];
    let neton = UnrolledOn::new(on).unwrap();
    let p: Vec<f64> = (0..net.num_params())
        .map(|i| ((i * 7919) % 13) as f64 / 13.0 - 0.5)
        .collect();
    let x0 = away::<f64>(5, 4, 3);
    let t = away::<f64>(5, 4, 4);
    let c = Array2::<f64>::zeros((5, 0));
    for depth in [1, 2, 3] {
        let mut ws = UnrolledWorkspace::default();
        let (v, g) = net
            .value_and_grad_ws(
                &mut ws,
                &p,
                x0.view(),
                c.view(),
                depth,
                &SquaredError,
                t.view(),
            )
            .unwrap();
        let (v, g) = (v, g.to_vec());
        let mut ws2 = UnrolledWorkspaceOn::default();
        let (v2, g2) = neton
            .value_and_grad(
                &mut ws2,
                &p,
                x0.view(),
                c.view(),
                depth,
                &SquaredError,
                t.view(),
            )
            .unwrap();
        assert_eq!(v, v2);
        assert_eq!(g, g2);
        // And the allocating host pass agrees to rounding.
        let (v3, g3) = net
            .value_and_grad(&p, x0.view(), c.view(), depth, &SquaredError, t.view())
            .unwrap();
        assert!((v - v3).abs() <= 1e-14 * v.abs());
        for (a, b) in g.iter().zip(&g3) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
        }
        // Too few parameters or a depth beyond the layers is an error, not a panic.
        assert!(neton
            .value_and_grad(
                &mut ws2,
                &p[1..],
                x0.view(),
                c.view(),
                depth,
                &SquaredError,
                t.view()
            )
            .is_err());
        assert!(neton
            .value_and_grad(
                &mut ws2,
                &p,
                x0.view(),
                c.view(),
                4,
                &SquaredError,
                t.view()
            )
            .is_err());
    }
}
