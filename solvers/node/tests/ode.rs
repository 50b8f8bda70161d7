//! diffsol-based ODE solves: known solutions (a first integral of Lotka–Volterra, Robertson's
//! reference values), and the three gradient modes against each other and against finite
//! differences.

use hyperprox_core::nn::{Act, Activation, Dense, Layer, Sequential};
use hyperprox_core::{Error, Result};
use hyperprox_node::ode::{
    DifferentiableRhs, Loss, LotkaVolterra, Method, OdeGradient, OdeOptions, OdeSolve, Rhs,
    Robertson, Sensitivity,
};
use ndarray::{Array2, ArrayView2};
use std::sync::Arc;

const METHODS: [Method; 4] = [
    Method::Bdf,
    Method::Esdirk34,
    Method::TrBdf2,
    Method::Tsit45,
];

/// L(Y) = Σ_ij w_ij (Y_ij − d_ij)² / 2 with fixed weights and targets.
fn weighted_ls(
    d: Array2<f64>,
    scale: [f64; 3],
) -> impl FnMut(ArrayView2<'_, f64>) -> Result<(f64, Array2<f64>)> {
    move |y| {
        let w = Array2::from_shape_fn(d.dim(), |(i, j)| {
            (1.0 + 0.1 * i as f64 + 0.3 * j as f64) * scale[j] * scale[j]
        });
        let r = &y - &d;
        let g = &w * &r;
        Ok(((&g * &r).sum() / 2.0, g))
    }
}

fn solver(rhs: Arc<dyn Rhs>, method: Method, rtol: f64, atol: f64) -> OdeSolve {
    let o = OdeOptions {
        method,
        rtol,
        atol,
        ..Default::default()
    };
    OdeSolve::new(rhs, o).unwrap()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den
}

fn flat(g: &OdeGradient) -> Vec<f64> {
    g.grad_params
        .iter()
        .chain(g.grad_u0.iter())
        .copied()
        .collect()
}

/// Central differences of the loss in θ and u₀.
fn fd(
    ode: &OdeSolve,
    theta: &[f64],
    u0: &[f64],
    times: &[f64],
    loss: &mut Loss<'_>,
    h: f64,
) -> Vec<f64> {
    let x: Vec<f64> = theta.iter().chain(u0).copied().collect();
    let nth = theta.len();
    let mut f = |x: &[f64]| {
        let y = ode.solve(&x[..nth], &x[nth..], times).unwrap().states;
        loss(y.view()).unwrap().0
    };
    (0..x.len())
        .map(|k| {
            let hk = h * x[k].abs().max(1.0);
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[k] += hk;
            xm[k] -= hk;
            (f(&xp) - f(&xm)) / (2.0 * hk)
        })
        .collect()
}

const LV_THETA: [f64; 4] = [1.5, 1.0, 3.0, 1.0];

fn lv_times() -> Vec<f64> {
    (0..11).map(|i| i as f64 * 0.5).collect()
}

fn lv_targets() -> Array2<f64> {
    Array2::from_shape_fn((11, 2), |(i, j)| 1.0 + 0.05 * i as f64 - 0.2 * j as f64)
}

/// V = d·x − c·ln x + b·y − a·ln y is constant along Lotka–Volterra trajectories.
#[test]
fn lotka_volterra_keeps_its_first_integral() {
    let [a, b, c, d] = LV_THETA;
    let times: Vec<f64> = (0..=40).map(|i| i as f64 * 0.25).collect();
    for method in METHODS {
        let ode = solver(Arc::new(LotkaVolterra), method, 1e-10, 1e-10);
        let sol = ode.solve(&LV_THETA, &[1.0, 1.0], &times).unwrap();
        let v: Vec<f64> = sol
            .states
            .rows()
            .into_iter()
            .map(|u| d * u[0] - c * u[0].ln() + b * u[1] - a * u[1].ln())
            .collect();
        let drift = v.iter().map(|x| (x - v[0]).abs()).fold(0.0, f64::max) / v[0].abs();
        assert!(
            drift < 1e-6,
            "{method:?}: first integral drifts by {drift:.2e}"
        );
        // The trajectory is not trivial: x and y oscillate over the window.
        let x = sol.states.column(0);
        assert!(x.fold(0.0, |m: f64, v| m.max(*v)) > 2.0 * x.fold(9.9, |m: f64, v| m.min(*v)));
        assert!(sol.stats.steps > 0 && sol.stats.rhs_evals >= sol.stats.steps);
    }
}

/// Forward sensitivities, the continuous and the discrete adjoint agree with each other to 1e-6
/// (tolerance 1e-10; measured 1e-10–8e-7), and with central differences (h = 1e-4, relative)
/// to 1e-5 (measured 9e-8–2.2e-6: the adaptive step sequence moves with the perturbation, so the
/// difference quotient also differentiates that change).
#[test]
fn lotka_volterra_gradients_agree_across_modes_and_with_finite_differences() {
    let (u0, times) = ([1.0, 1.0], lv_times());
    for method in METHODS {
        let ode = solver(Arc::new(LotkaVolterra), method, 1e-10, 1e-10);
        let mut loss = weighted_ls(lv_targets(), [1.0; 3]);
        let g: Vec<Vec<f64>> = [
            Sensitivity::Forward,
            Sensitivity::Adjoint,
            Sensitivity::DiscreteAdjoint,
        ]
        .iter()
        .map(|&how| {
            flat(
                &ode.gradient(&LV_THETA, &u0, &times, how, &mut loss)
                    .unwrap(),
            )
        })
        .collect();
        let fdg = fd(&ode, &LV_THETA, &u0, &times, &mut loss, 1e-4);
        let (fa, fdis) = (rel(&g[1], &g[0]), rel(&g[2], &g[0]));
        eprintln!(
            "{method:?}: adjoint/forward {fa:.1e}, discrete/forward {fdis:.1e}, fd {:.1e}",
            rel(&g[0], &fdg)
        );
        assert!(fa < 1e-6 && fdis < 1e-6, "{method:?}: {fa:.2e} {fdis:.2e}");
        for gi in &g {
            assert!(rel(gi, &fdg) < 1e-5, "{method:?}: {gi:?} vs {fdg:?}");
        }
    }
}

/// Tsit45 is explicit: its forward sensitivities and its discrete adjoint differentiate the same
/// steps with no inner solve, so they agree to rounding.
#[test]
fn tsit45_discrete_adjoint_equals_its_forward_sensitivities() {
    let ode = solver(Arc::new(LotkaVolterra), Method::Tsit45, 1e-6, 1e-6);
    let mut loss = weighted_ls(lv_targets(), [1.0; 3]);
    let (u0, times) = ([1.0, 1.0], lv_times());
    let f = ode
        .gradient(&LV_THETA, &u0, &times, Sensitivity::Forward, &mut loss)
        .unwrap();
    let d = ode
        .gradient(
            &LV_THETA,
            &u0,
            &times,
            Sensitivity::DiscreteAdjoint,
            &mut loss,
        )
        .unwrap();
    assert!(
        rel(&flat(&d), &flat(&f)) < 1e-12,
        "{:?} {:?}",
        flat(&d),
        flat(&f)
    );
    assert_eq!(d.loss, f.loss);
}

/// Robertson at t = 40 against the reference solution (Hairer & Wanner, Solving ODEs II,
/// §IV.10: y₁ = 0.7158271, y₂ = 9.185535e-6, y₃ = 0.2841637).
#[test]
fn robertson_matches_its_reference_values() {
    let times = [0.0, 0.4, 4.0, 40.0];
    for method in [Method::Bdf, Method::Esdirk34, Method::TrBdf2] {
        let ode = solver(Arc::new(Robertson), method, 1e-8, 1e-12);
        let y = ode
            .solve(&Robertson::RATES, &[1.0, 0.0, 0.0], &times)
            .unwrap();
        let last = y.states.row(3);
        let want = [0.715_827_1, 9.185_535e-6, 0.284_163_7];
        for j in 0..3 {
            let e = (last[j] - want[j]).abs() / want[j];
            assert!(
                e < 2e-6,
                "{method:?}: y{} = {} vs {}",
                j + 1,
                last[j],
                want[j]
            );
        }
        // Mass is conserved: y₁ + y₂ + y₃ = 1.
        for r in y.states.rows() {
            assert!((r.sum() - 1.0).abs() < 1e-9);
        }
    }
}

/// On the stiff benchmark, forward sensitivities and both adjoints agree to 1e-6 (BDF at
/// rtol 1e-10, atol 1e-14), for a loss with y₂ scaled by 10⁴ so that every species counts.
#[test]
fn robertson_gradients_agree_across_modes() {
    let times = [0.0, 0.4, 4.0, 40.0, 400.0];
    let u0 = [1.0, 0.0, 0.0];
    let d = Array2::from_shape_fn((5, 3), |(i, j)| {
        [0.9, 2e-5, 0.1][j] * (1.0 - 0.1 * i as f64)
    });
    let ode = solver(Arc::new(Robertson), Method::Bdf, 1e-10, 1e-14);
    let mut loss = weighted_ls(d, [1.0, 1e4, 1.0]);
    let g: Vec<Vec<f64>> = [
        Sensitivity::Forward,
        Sensitivity::Adjoint,
        Sensitivity::DiscreteAdjoint,
    ]
    .iter()
    .map(|&how| {
        let r = ode
            .gradient(&Robertson::RATES, &u0, &times, how, &mut loss)
            .unwrap();
        // Per-parameter agreement, on the scale of each parameter's gradient times the parameter.
        let mut v = flat(&r);
        for (k, vk) in v.iter_mut().take(3).enumerate() {
            *vk *= Robertson::RATES[k];
        }
        v
    })
    .collect();
    eprintln!("{g:?}");
    for (k, (a, b)) in g[1].iter().zip(&g[0]).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
            "adjoint {k}: {a} vs {b}"
        );
    }
    for (k, (a, b)) in g[2].iter().zip(&g[0]).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
            "discrete {k}: {a} vs {b}"
        );
    }
}

/// A core block as the right-hand side: u' = W₂ tanh(W₁ u + b₁) + b₂.
#[test]
fn a_differentiable_block_as_right_hand_side() {
    let layers: Vec<Arc<dyn Layer<f64>>> = vec![
        Arc::new(Dense::new(2, 6)),
        Arc::new(Act::new(6, Activation::Tanh).unwrap()),
        Arc::new(Dense::new(6, 2)),
    ];
    let net = Sequential::new(layers).unwrap();
    let p = net.init(3);
    let rhs = Arc::new(DifferentiableRhs::new(net).unwrap());
    let times = [0.0, 0.3, 0.7, 1.0];
    let u0 = [0.5, -0.2];
    let d = Array2::from_elem((4, 2), 0.1);
    let ode = solver(rhs, Method::Tsit45, 1e-10, 1e-10);
    let mut loss = weighted_ls(d, [1.0; 3]);
    let fdg = fd(&ode, &p, &u0, &times, &mut loss, 1e-6);
    for how in [
        Sensitivity::Forward,
        Sensitivity::Adjoint,
        Sensitivity::DiscreteAdjoint,
    ] {
        let g = ode.gradient(&p, &u0, &times, how, &mut loss).unwrap();
        let e = rel(&flat(&g), &fdg);
        assert!(e < 1e-6, "{how:?}: {e:.2e}");
    }
}

#[test]
fn bad_input_is_an_error_with_a_message() {
    let ode = solver(Arc::new(LotkaVolterra), Method::Bdf, 1e-6, 1e-6);
    let t = [0.0, 1.0];
    let msg = |r: Result<_>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    let e = msg(ode.solve(&[1.0; 3], &[1.0, 1.0], &t).map(|_| ()));
    assert!(e.contains("expected 4, got 3"), "{e}");
    let e = msg(ode.solve(&LV_THETA, &[1.0], &t).map(|_| ()));
    assert!(e.contains("expected 2, got 1"), "{e}");
    let e = msg(ode.solve(&LV_THETA, &[f64::NAN, 1.0], &t).map(|_| ()));
    assert!(e.contains("non-finite"), "{e}");
    let e = msg(ode.solve(&LV_THETA, &[1.0, 1.0], &[1.0, 0.5]).map(|_| ()));
    assert!(e.contains("strictly increasing"), "{e}");
    let e = msg(ode.solve(&LV_THETA, &[1.0, 1.0], &[0.0]).map(|_| ()));
    assert!(e.contains("at least two times"), "{e}");
    let bad = OdeOptions {
        rtol: 0.0,
        ..Default::default()
    };
    assert!(matches!(
        OdeSolve::new(Arc::new(LotkaVolterra), bad),
        Err(Error::InvalidParameter { .. })
    ));
    // A loss whose gradient has the wrong shape.
    let mut wrong = |_: ArrayView2<'_, f64>| Ok((0.0, Array2::zeros((1, 1))));
    let e = msg(ode
        .gradient(&LV_THETA, &[1.0, 1.0], &t, Sensitivity::Adjoint, &mut wrong)
        .map(|_| ()));
    assert!(e.contains("∂L/∂Y"), "{e}");
    // Too few steps allowed: a clear failure, not a hang or a panic.
    let few = OdeOptions {
        method: Method::Tsit45,
        max_steps: 20,
        ..Default::default()
    };
    let ode = OdeSolve::new(Arc::new(Robertson), few).unwrap();
    let e = msg(ode
        .solve(&Robertson::RATES, &[1.0, 0.0, 0.0], &[0.0, 40.0])
        .map(|_| ()));
    assert!(e.contains("maximum number of timesteps"), "{e}");
}
