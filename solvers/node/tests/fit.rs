//! Parameter estimation: the Lotka–Volterra fit recovers its parameters from noisy data.

use hyperprox_node::fit::{fit, FitOptions, Observed};
use hyperprox_node::ode::{LotkaVolterra, Method, OdeOptions, OdeSolve, Sensitivity};
use ndarray::Array2;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::Arc;

const TRUE: [f64; 4] = [1.5, 1.0, 3.0, 1.0];

fn ode(method: Method) -> OdeSolve {
    let o = OdeOptions {
        method,
        rtol: 1e-8,
        atol: 1e-8,
        ..Default::default()
    };
    OdeSolve::new(Arc::new(LotkaVolterra), o).unwrap()
}

/// Observations at `times` with multiplicative noise of relative size `noise` (seeded).
fn observe(u0: [f64; 2], times: &[f64], noise: f64, seed: u64) -> Observed {
    let y = ode(Method::Tsit45).solve(&TRUE, &u0, times).unwrap().states;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data = y.mapv(|v| {
        let e: f64 = StandardNormal.sample(&mut rng);
        v * (1.0 + noise * e)
    });
    Observed {
        times: times.to_vec(),
        u0: u0.to_vec(),
        data,
    }
}

fn max_rel_err(p: &[f64]) -> f64 {
    p.iter()
        .zip(TRUE)
        .map(|(a, b)| (a - b).abs() / b)
        .fold(0.0, f64::max)
}

/// The acceptance check: 1 % noise, parameters within 2 %, from a guess 20–33 % off.
#[test]
fn lotka_volterra_fit_recovers_the_parameters_within_two_percent() {
    let times: Vec<f64> = (0..=40).map(|i| i as f64 * 0.25).collect();
    let obs = [observe([1.0, 1.0], &times, 0.01, 7)];
    let init = [1.2, 0.8, 2.4, 0.75];
    assert!(max_rel_err(&init) > 0.2);
    for (method, how) in [
        (Method::Bdf, Sensitivity::Adjoint),
        (Method::Tsit45, Sensitivity::Adjoint),
        (Method::Tsit45, Sensitivity::Forward),
    ] {
        let r = fit(
            &ode(method),
            &obs,
            &init,
            FitOptions {
                sensitivity: how,
                ..Default::default()
            },
        )
        .unwrap();
        let e = max_rel_err(&r.params);
        eprintln!(
            "{method:?} {how:?}: {:?} err {e:.2e} loss {:.3e} -> {:.3e}, {} iterations, {} rhs",
            r.params, r.initial_loss, r.loss, r.iterations, r.rhs_evals
        );
        assert!(e < 0.02, "{method:?}: {:?}", r.params);
        assert!(r.loss < 1e-2 * r.initial_loss);
        assert!(r.grad_norm < 1e-5, "not stationary: {}", r.grad_norm);
    }
}

/// Two trajectories from different initial states pin the parameters down together; without
/// log-parameters the search runs on θ itself and lands on the same estimate.
#[test]
fn several_trajectories_and_plain_parameters() {
    let t1: Vec<f64> = (0..=20).map(|i| i as f64 * 0.25).collect();
    let t2: Vec<f64> = (0..=12).map(|i| i as f64 * 0.4).collect();
    let obs = [
        observe([1.0, 1.0], &t1, 0.01, 1),
        observe([2.0, 0.5], &t2, 0.01, 2),
    ];
    let init = [1.3, 0.9, 2.7, 0.9];
    let a = fit(&ode(Method::Tsit45), &obs, &init, FitOptions::default()).unwrap();
    let b = fit(
        &ode(Method::Tsit45),
        &obs,
        &init,
        FitOptions {
            log_params: false,
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!("{:?} {:?}", a.params, b.params);
    assert!(max_rel_err(&a.params) < 0.02, "{:?}", a.params);
    for (x, y) in a.params.iter().zip(&b.params) {
        assert!((x - y).abs() < 1e-4 * x, "{x} vs {y}");
    }
}

#[test]
fn bad_fit_input_is_an_error() {
    let times = [0.0, 1.0, 2.0];
    let good = observe([1.0, 1.0], &times, 0.0, 0);
    let e = fit(&ode(Method::Bdf), &[], &TRUE, FitOptions::default()).unwrap_err();
    assert!(e.to_string().contains("at least one"), "{e}");
    let mut bad = good.clone();
    bad.data = Array2::zeros((3, 3));
    let e = fit(&ode(Method::Bdf), &[bad], &TRUE, FitOptions::default()).unwrap_err();
    assert!(e.to_string().contains("3×2"), "{e}");
    let mut nan = good.clone();
    nan.data[[1, 1]] = f64::NAN;
    let e = fit(&ode(Method::Bdf), &[nan], &TRUE, FitOptions::default()).unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    let e = fit(
        &ode(Method::Bdf),
        std::slice::from_ref(&good),
        &[1.0, -1.0, 1.0, 1.0],
        FitOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("positive"), "{e}");
    let e = fit(&ode(Method::Bdf), &[good], &[1.0; 3], FitOptions::default()).unwrap_err();
    assert!(e.to_string().contains("expected 4, got 3"), "{e}");
}
