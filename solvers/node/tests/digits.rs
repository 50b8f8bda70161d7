//! The ODE classifier: its gradient (cross-entropy through the output layer and the discrete
//! adjoint of the solve) against finite differences, and its regularized objective.

use hyperprox_node::digits::{DigitsConfig, OdeClassifier};
use hyperprox_node::reg::{Kind, Regularizer};
use hyperprox_node::tsit5::Options;
use ndarray::Array2;
use rand::{Rng, SeedableRng};

fn setup(
    tol: f64,
) -> (
    OdeClassifier,
    DigitsConfig,
    Array2<f64>,
    Vec<usize>,
    Vec<f64>,
) {
    let model = OdeClassifier::new(4, 5, 3).unwrap();
    let cfg = DigitsConfig {
        hidden: 5,
        solver: Options {
            rtol: tol,
            atol: tol,
            ..Options::default()
        },
        ..Default::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let x = Array2::from_shape_fn((6, 4), |_| rng.random::<f64>());
    let y = vec![0, 1, 2, 1, 0, 2];
    let mut p = model.init(&cfg).unwrap().params;
    // Larger weights than the initialization, so that the flow is far from the identity.
    for v in p.iter_mut() {
        *v *= 3.0;
    }
    (model, cfg, x, y, p)
}

/// At a tight tolerance the step sequence barely depends on the parameters, so central
/// differences of the adaptive solve's cross-entropy match the discrete adjoint; every
/// parameter block (both layers of the right-hand side, the output layer) is probed.
#[test]
fn classifier_gradient_matches_finite_differences() {
    let (model, cfg, x, y, p) = setup(1e-11);
    let (ce, _, _, g) = model.objective(&p, x.view(), &y, &cfg, 0).unwrap();
    assert!(ce.is_finite() && ce > 0.0);
    let f = |q: &[f64]| model.objective(q, x.view(), &y, &cfg, 0).unwrap().0;
    let n = p.len();
    let mut worst: f64 = 0.0;
    for k in [0, 3, 7, 19, 20, 24, 29, n - 40, n - 33, n - 17, n - 1] {
        let h = 1e-6;
        let (mut a, mut b) = (p.clone(), p.clone());
        a[k] += h;
        b[k] -= h;
        let fd = (f(&a) - f(&b)) / (2.0 * h);
        let e = (fd - g[k]).abs() / g.iter().map(|v| v.abs()).fold(0.0, f64::max);
        worst = worst.max(e);
        assert!(e < 1e-6, "parameter {k}: adjoint {} vs fd {fd}", g[k]);
    }
    eprintln!("worst relative error {worst:.1e}");
}

/// The regularized objective adds the regularizer's gradient: it differs from the plain
/// gradient, and a small step along minus its difference lowers the regularizer.
#[test]
fn the_regularizer_reaches_the_gradient() {
    let (model, mut cfg, x, y, p) = setup(1e-6);
    let (_, r0, _, g0) = model.objective(&p, x.view(), &y, &cfg, 0).unwrap();
    assert_eq!(r0, 0.0);
    for (kind, local) in [
        (Kind::Error, false),
        (Kind::Stiffness, false),
        (Kind::Error, true),
    ] {
        cfg.reg = Regularizer::new(kind, local, 1.0);
        let (_, r, _, g) = model.objective(&p, x.view(), &y, &cfg, 0).unwrap();
        assert!(r > 0.0, "{kind:?}");
        let d: Vec<f64> = g.iter().zip(&g0).map(|(a, b)| a - b).collect();
        let dn = d.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            dn > 1e-8,
            "{kind:?} local {local}: no gradient from the regularizer"
        );
        if !local {
            let q: Vec<f64> = p.iter().zip(&d).map(|(a, b)| a - 1e-3 * b / dn).collect();
            let (_, r1, _, _) = model.objective(&q, x.view(), &y, &cfg, 0).unwrap();
            assert!(r1 < r, "{kind:?}: {r} -> {r1}");
        }
    }
}
