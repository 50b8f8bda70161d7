//! Learned proximal networks: derivatives against finite differences, convexity, inversion,
//! the prox/prior relation, training (Laplacian experiment at reduced length), checkpointing
//! and plug-and-play monotonicity.

use hyperprox_core::func::{Function, Prox};
use hyperprox_lpn::experiments::laplacian_eval;
use hyperprox_lpn::laplace;
use hyperprox_lpn::prior::invert_from;
use hyperprox_lpn::train::total_steps;
use hyperprox_lpn::*;
use ndarray::{Array1, Array2, ShapeBuilder};
use rand::{Rng, SeedableRng};

/// A dense ICNN configuration.
fn dense(dim: usize, widths: &[usize], beta: f64, alpha: f64) -> IcnnConfig {
    IcnnConfig {
        dim,
        widths: widths.to_vec(),
        beta,
        alpha,
        arch: Arch::Dense,
    }
}

fn small_net(alpha: f64, seed: u64) -> Icnn {
    let mut net = Icnn::new(dense(3, &[8, 7, 6], 2.0, alpha), seed).unwrap();
    // Move the constrained weights off zero so every term is active.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 7);
    for r in net.constrained() {
        for i in r {
            net.params[i] = rng.random::<f64>() * 0.5;
        }
    }
    net
}

/// A convolutional ICNN on 3×4 images (3×3 kernels, channels 2, 3, 2).
fn small_conv(alpha: f64, seed: u64) -> Icnn {
    let cfg = IcnnConfig {
        dim: 12,
        widths: vec![2, 3, 2],
        beta: 2.0,
        alpha,
        arch: Arch::Conv {
            height: 3,
            width: 4,
            kernel: 3,
        },
    };
    let mut net = Icnn::new(cfg, seed).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 7);
    for r in net.constrained() {
        for i in r {
            net.params[i] = rng.random::<f64>() * 0.5;
        }
    }
    net
}

fn randm(rows: usize, cols: usize, seed: u64) -> Array2<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| 2.0 * rng.random::<f64>() - 1.0)
}

#[test]
fn gradient_hvp_and_parameter_gradient_match_finite_differences() {
    derivatives_match(&small_net(0.05, 1));
    derivatives_match(&small_conv(0.05, 1));
}

fn derivatives_match(net: &Icnn) {
    let dd = net.config().dim;
    let y = randm(5, dd, 2);
    let f = net.prox(y.view()).unwrap();
    let h = 1e-6;
    // f = ∇ψ.
    for b in 0..5 {
        for j in 0..dd {
            let (mut yp, mut ym) = (y.clone(), y.clone());
            yp[[b, j]] += h;
            ym[[b, j]] -= h;
            let fd = (net.psi(yp.view()).unwrap()[b] - net.psi(ym.view()).unwrap()[b]) / (2.0 * h);
            assert!(
                (fd - f[[b, j]]).abs() < 1e-7 * fd.abs().max(1.0),
                "∇ψ[{b},{j}]: {} vs {fd}",
                f[[b, j]]
            );
        }
    }
    // ∇²ψ v.
    let v = randm(5, dd, 3);
    let hv = net.hvp(y.view(), v.view()).unwrap();
    let fd = (net.prox((&y + &(&v * h)).view()).unwrap()
        - net.prox((&y - &(&v * h)).view()).unwrap())
        / (2.0 * h);
    let err = (&hv - &fd).mapv(f64::abs).sum() / fd.mapv(f64::abs).sum();
    assert!(err < 1e-7, "HVP relative error {err:e}");
    // ∇_θ Σ⟨G, f(y; θ)⟩ against central differences in every parameter.
    let g = randm(5, dd, 4);
    let (grad, _) = net.param_grad(y.view(), g.view()).unwrap();
    let worst = param_grad_worst_error(net, &y, &g, &grad);
    assert!(
        worst < PARAM_GRAD_TOL,
        "parameter gradient: worst relative error {worst:e} over {} parameters",
        net.n_params()
    );
}

/// Tolerance of the parameter-gradient check (central differences with h = 1e-6).
const PARAM_GRAD_TOL: f64 = 1e-5;

/// Worst relative error of `grad` against central differences of `θ ↦ Σ⟨G, f(y; θ)⟩`.
fn param_grad_worst_error(net: &Icnn, y: &Array2<f64>, g: &Array2<f64>, grad: &Array1<f64>) -> f64 {
    let h = 1e-6;
    let obj = |p: &Array1<f64>| {
        let n = Icnn::from_params(net.config().clone(), p.clone()).unwrap();
        (n.prox(y.view()).unwrap() * g).sum()
    };
    let mut worst = 0.0f64;
    for i in 0..net.n_params() {
        let (mut pp, mut pm) = (net.params.clone(), net.params.clone());
        pp[i] += h;
        pm[i] -= h;
        let fd = (obj(&pp) - obj(&pm)) / (2.0 * h);
        worst = worst.max((fd - grad[i]).abs() / fd.abs().max(1e-3));
    }
    worst
}

#[test]
fn a_wrong_parameter_gradient_would_be_caught() {
    // The check above, fed gradients that a plausible bug would produce, must reject them:
    // (a) the backward pass of a network whose softplus sharpness β is off by 1 % (a wrong
    // activation derivative), (b) a backward pass that drops the first constrained layer's
    // gradient. The right gradient passes the same check.
    let net = small_net(0.0, 5);
    let y = randm(4, 3, 6);
    let g = randm(4, 3, 7);
    let (grad, _) = net.param_grad(y.view(), g.view()).unwrap();
    assert!(param_grad_worst_error(&net, &y, &g, &grad) < PARAM_GRAD_TOL);
    let mut cfg = net.config().clone();
    cfg.beta *= 1.01;
    let off = Icnn::from_params(cfg, net.params.clone()).unwrap();
    let (wrong_beta, _) = off.param_grad(y.view(), g.view()).unwrap();
    let err = param_grad_worst_error(&net, &y, &g, &wrong_beta);
    assert!(err > PARAM_GRAD_TOL, "a 1 % error in β passed: {err:e}");
    let mut dropped = grad.clone();
    let first = net.constrained()[0].clone();
    dropped.slice_mut(ndarray::s![first]).fill(0.0);
    let err = param_grad_worst_error(&net, &y, &g, &dropped);
    assert!(
        err > PARAM_GRAD_TOL,
        "a dropped layer gradient passed: {err:e}"
    );
}

#[test]
fn psi_is_convex_and_the_jacobian_of_f_is_symmetric_psd() {
    convex_and_psd(&small_net(0.0, 11));
    convex_and_psd(&small_conv(0.0, 11));
}

fn convex_and_psd(net: &Icnn) {
    let dd = net.config().dim;
    let a = randm(200, dd, 12) * 3.0;
    let b = randm(200, dd, 13) * 3.0;
    let mid = (&a + &b) * 0.5;
    let (pa, pb, pm) = (
        net.psi(a.view()).unwrap(),
        net.psi(b.view()).unwrap(),
        net.psi(mid.view()).unwrap(),
    );
    for i in 0..200 {
        assert!(
            pm[i] <= 0.5 * (pa[i] + pb[i]) + 1e-12,
            "midpoint convexity fails at pair {i}"
        );
    }
    let y = randm(10, dd, 14);
    for b in 0..10 {
        let yb = y.row(b).to_owned().insert_axis(ndarray::Axis(0));
        let mut jac = Array2::zeros((dd, dd));
        for j in 0..dd {
            let mut e = Array2::zeros((1, dd));
            e[[0, j]] = 1.0;
            jac.column_mut(j)
                .assign(&net.hvp(yb.view(), e.view()).unwrap().row(0));
        }
        assert!(
            (&jac - &jac.t()).mapv(f64::abs).sum() < 1e-12,
            "Jacobian not symmetric: {jac}"
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(b as u64);
        for _ in 0..50 {
            let v = Array1::from_shape_fn(dd, |_| rng.random::<f64>() - 0.5);
            assert!(v.dot(&jac.dot(&v)) >= -1e-12, "Jacobian not PSD");
        }
    }
}

#[test]
fn inversion_round_trip_and_prox_optimality_of_the_recovered_prior() {
    let net = small_net(0.05, 21);
    let y0 = randm(20, 3, 22);
    let xs = net.prox(y0.view()).unwrap();
    for b in 0..20 {
        let x = xs.row(b);
        let inv = invert(&net, x, InvertParams::default()).unwrap();
        let fx = net
            .prox(inv.y.clone().insert_axis(ndarray::Axis(0)).view())
            .unwrap();
        let res = (&fx.row(0) - &x).mapv(|v| v * v).sum().sqrt();
        assert!(
            res <= 1e-4 * x.dot(&x).sqrt(),
            "round trip {b}: residual {res:e}"
        );
        assert!(
            (&inv.y - &y0.row(b)).mapv(f64::abs).sum() < 1e-5,
            "α > 0 makes f injective"
        );
    }
    // f(y) minimizes R(p) + ½‖p − y‖² over the range of f.
    let pr = LpnProx::vector(net.clone());
    for b in 0..10 {
        let y = y0.row(b);
        let x = xs.row(b);
        let fx = pr.value(x).unwrap() + 0.5 * (&x - &y).mapv(|v| v * v).sum();
        for c in 0..20 {
            let p = xs.row(c);
            let fp = pr.value(p).unwrap() + 0.5 * (&p - &y).mapv(|v| v * v).sum();
            assert!(fx <= fp + 1e-8, "prox optimality fails: {fx} > {fp}");
        }
    }
    // The Prox trait: γ = 1 only, JVP = Hessian product.
    assert!(pr.prox(xs.row(0), 0.5).is_err());
    let p = pr.prox(y0.row(0), 1.0).unwrap();
    assert!((&p - &xs.row(0)).mapv(f64::abs).sum() < 1e-14);
    let mut out = Array1::zeros(3);
    let v = Array1::from(vec![0.3, -0.2, 0.5]);
    pr.prox_jvp_into(out.view_mut(), y0.row(0), 1.0, v.view())
        .unwrap();
    let h = 1e-6;
    let fd = (pr.prox((&y0.row(0) + &(&v * h)).view(), 1.0).unwrap()
        - pr.prox((&y0.row(0) - &(&v * h)).view(), 1.0).unwrap())
        / (2.0 * h);
    assert!((&out - &fd).mapv(f64::abs).sum() < 1e-7);
}

#[test]
fn losses_match_finite_differences() {
    let f = randm(6, 4, 31);
    let x = randm(6, 4, 32);
    for loss in [Loss::L2, Loss::ProxMatching { gamma: 0.7 }, Loss::L1] {
        let (_, g) = loss.value_and_grad(&f, &x);
        let h = 1e-6;
        for (i, j) in [(0, 0), (2, 3), (5, 1)] {
            let (mut fp, mut fm) = (f.clone(), f.clone());
            fp[[i, j]] += h;
            fm[[i, j]] -= h;
            let fd = (loss.value_and_grad(&fp, &x).0 - loss.value_and_grad(&fm, &x).0) / (2.0 * h);
            assert!(
                (fd - g[[i, j]]).abs() < 1e-6,
                "{}: {fd} vs {}",
                loss.name(),
                g[[i, j]]
            );
        }
    }
}

#[test]
fn loss_values_follow_their_formulas_per_sample() {
    // Residual rows r = f − x with ‖r‖ = 0.5, 0 and 1, γ = 0.5: proximal matching is
    // 1 − exp(−‖r‖²/γ²) per sample (the norm of the whole row, not a sum over entries), the
    // batch mean of those, with gradient (2/γ²)·e^{−‖r‖²/γ²}·r/B.
    let x = ndarray::array![[1.0, -2.0], [0.5, 0.5], [0.0, 0.0]];
    let r = ndarray::array![[0.3, 0.4], [0.0, 0.0], [0.6, -0.8]];
    let f = &x + &r;
    let e = [(-1.0f64).exp(), 1.0, (-4.0f64).exp()];
    let (v, g) = Loss::ProxMatching { gamma: 0.5 }.value_and_grad(&f, &x);
    let want = e.iter().map(|e| 1.0 - e).sum::<f64>() / 3.0;
    assert!((v - want).abs() < 1e-15, "proximal matching {v} vs {want}");
    for ((i, j), gij) in g.indexed_iter() {
        let want = 2.0 / 0.25 * e[i] * r[[i, j]] / 3.0;
        assert!(
            (gij - want).abs() < 1e-15,
            "gradient [{i},{j}]: {gij} vs {want}"
        );
    }
    // ℓ2 is the mean squared norm, ℓ1 the mean ℓ1 norm.
    let (v2, g2) = Loss::L2.value_and_grad(&f, &x);
    assert!((v2 - 1.25 / 3.0).abs() < 1e-15, "ℓ2 {v2}");
    assert!((&g2 - &(&r * (2.0 / 3.0))).mapv(f64::abs).sum() < 1e-15);
    let (v1, g1) = Loss::L1.value_and_grad(&f, &x);
    assert!((v1 - 2.1 / 3.0).abs() < 1e-15, "ℓ1 {v1}");
    assert!((g1[[2, 1]] + 1.0 / 3.0).abs() < 1e-15 && (g1[[0, 0]] - 1.0 / 3.0).abs() < 1e-15);
    // Column-major inputs give the same values.
    let (mut ff, mut xf) = (Array2::zeros((3, 2).f()), Array2::zeros((3, 2).f()));
    ff.assign(&f);
    xf.assign(&x);
    for loss in [Loss::L2, Loss::L1, Loss::ProxMatching { gamma: 0.5 }] {
        let (a, ga) = loss.value_and_grad(&f, &x);
        let (b, gb) = loss.value_and_grad(&ff, &xf);
        assert!((a - b).abs() < 1e-15 && (&ga - &gb).mapv(f64::abs).sum() < 1e-15);
    }
}

#[test]
fn proximal_matching_is_minimized_at_the_mode_l2_at_the_mean_l1_at_the_median() {
    // x from three atoms in R²: (0, 0) with probability 0.4, (2, 2) and (2, −2) with 0.3 each.
    // Closed-form minimizers of the risk E ℓ(c − x) over a constant c: ℓ2 → the mean (1.2, 0);
    // ℓ1 (entrywise) → the coordinatewise median (2, 0); proximal matching with γ = 0.5, far
    // below the atoms' spacing (e^{−8/γ²} = e^{−32}), → the most probable atom (0, 0), the MAP
    // (at (0, 0) the risk is 0.6, near (2, 0) it is ≈ 1). A per-entry proximal matching
    // Σⱼ(1 − e^{−rⱼ²/γ²}) would pick (2, 0) (risk ≈ 1.0 there against 1.2 at (0, 0)), so the
    // per-sample norm is what makes the mode win.
    let atoms = [((0.0, 0.0), 4), ((2.0, 2.0), 3), ((2.0, -2.0), 3)];
    let rows: Vec<[f64; 2]> = atoms
        .iter()
        .flat_map(|&((a, b), n)| std::iter::repeat_n([a, b], n))
        .collect();
    let x = Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j]);
    let argmin = |loss: Loss| {
        let mut best = (f64::INFINITY, 0.0, 0.0);
        for i in 0..=80 {
            for j in 0..=120 {
                let c = (-1.0 + 0.05 * i as f64, -3.0 + 0.05 * j as f64);
                let f = Array2::from_shape_fn(x.raw_dim(), |(_, k)| if k == 0 { c.0 } else { c.1 });
                let v = loss.value_and_grad(&f, &x).0;
                if v < best.0 {
                    best = (v, c.0, c.1);
                }
            }
        }
        (best.1, best.2)
    };
    let near = |c: (f64, f64), want: (f64, f64)| {
        (c.0 - want.0).abs() < 0.025 && (c.1 - want.1).abs() < 0.025
    };
    let c = argmin(Loss::ProxMatching { gamma: 0.5 });
    assert!(
        near(c, (0.0, 0.0)),
        "proximal matching minimizer {c:?}, want the mode (0, 0)"
    );
    let c = argmin(Loss::L2);
    assert!(
        near(c, (1.2, 0.0)),
        "ℓ2 minimizer {c:?}, want the mean (1.2, 0)"
    );
    let c = argmin(Loss::L1);
    assert!(
        near(c, (2.0, 0.0)),
        "ℓ1 minimizer {c:?}, want the median (2, 0)"
    );
}

#[test]
fn checkpoint_resume_continues_exactly() {
    let cfg = dense(1, &[10, 10], 10.0, 0.0);
    let schedule = vec![
        Stage {
            steps: 30,
            lr: 1e-3,
            loss: Loss::L1,
        },
        Stage {
            steps: 20,
            lr: 1e-4,
            loss: Loss::ProxMatching { gamma: 0.5 },
        },
    ];
    let s = laplace::sampler(64, 9);
    let mut full = TrainState::new(Icnn::new(cfg.clone(), 3).unwrap()).unwrap();
    train(&mut full, &schedule, &s, 5, |_, _| true).unwrap();
    let mut part = TrainState::new(Icnn::new(cfg, 3).unwrap()).unwrap();
    train(&mut part, &schedule, &s, 5, |step, _| step < 35).unwrap();
    assert_eq!(part.step, 35);
    let mut resumed = TrainState::from_json(&part.to_json()).unwrap();
    train(&mut resumed, &schedule, &s, 5, |_, _| true).unwrap();
    assert_eq!(resumed.step, 50);
    assert_eq!(
        resumed.net.params, full.net.params,
        "resumed training must continue exactly"
    );
    assert_eq!(resumed.history, full.history);
    // Model files round-trip exactly (dense and convolutional).
    assert_eq!(Icnn::from_json(&full.net.to_json()).unwrap(), full.net);
    let conv = small_conv(0.01, 4);
    assert_eq!(Icnn::from_json(&conv.to_json()).unwrap(), conv);
}

#[test]
fn laplace_references_match_the_table() {
    for (y, mmse, med) in [
        (0.5, 0.241, 0.190),
        (1.0, 0.503, 0.429),
        (2.0, 1.161, 1.107),
    ] {
        let (m, md) = laplace::posterior_mean_median(y);
        assert!(
            (m - mmse).abs() < 1e-3 && (md - med).abs() < 1e-3,
            "y = {y}: {m}, {md}"
        );
    }
}

/// Reduced size for CI: width 20 instead of 50, and the expected loss by quadrature
/// (`laplace::population_schedule`, noise-free gradients) instead of 48 000 minibatch steps.
fn train_laplacian(loss: &str) -> Icnn {
    let schedule = laplace::population_schedule(loss).unwrap();
    let cfg = IcnnConfig {
        widths: vec![20; 5],
        ..IcnnConfig::paper_1d()
    };
    let mut st = TrainState::new(Icnn::new(cfg, 1).unwrap()).unwrap();
    let pop = laplace::Population::new(400, 561);
    laplace::train_population(&mut st, &schedule, &pop, 100, |_, _| true).unwrap();
    assert_eq!(st.step, total_steps(&schedule));
    st.net
}

#[test]
fn laplacian_prox_matching_recovers_soft_thresholding_and_l2_does_not() {
    let pm = train_laplacian("prox-matching");
    let grid: Array1<f64> = Array1::linspace(-4.0, 4.0, 161);
    let f = pm.prox_scalar(grid.view()).unwrap();
    let dev = grid
        .iter()
        .zip(&f)
        .map(|(y, fy)| (fy - laplace::soft(*y)).abs())
        .fold(0.0, f64::max);
    assert!(dev <= 0.15, "max |f − soft| = {dev}");
    let dead = grid
        .iter()
        .zip(&f)
        .filter(|(y, _)| y.abs() <= 0.8)
        .map(|(_, fy)| fy.abs())
        .fold(0.0, f64::max);
    assert!(dead < 0.05, "max |f| on [−0.8, 0.8] = {dead}");
    let l2 = train_laplacian("l2");
    let f05 = l2.prox_scalar(ndarray::array![0.5].view()).unwrap()[0];
    assert!(
        (f05 - 0.241).abs() <= 0.05,
        "ℓ2 model f(0.5) = {f05} (MMSE 0.241)"
    );
    // Training keeps W_k and w non-negative (ψ convex).
    for net in [&pm, &l2] {
        for r in net.constrained() {
            let low = net
                .params
                .slice(ndarray::s![r])
                .fold(f64::INFINITY, |a, &b| a.min(b));
            assert!(low >= 0.0, "a constrained weight is {low}");
        }
    }
    // The recovered prior: R_θ − min R_θ against |x| on [−3, 3].
    let (e_pm, _) = laplacian_eval(&pm, "prox-matching").unwrap();
    let (e_l2, _) = laplacian_eval(&l2, "l2").unwrap();
    assert!(
        e_pm.max_dev_prior_from_abs_x <= 0.1 && e_pm.max_inversion_residual <= 1e-8,
        "prox-matching prior: {e_pm:?}"
    );
    // The ℓ2 (MMSE) model follows the MMSE curve everywhere on [−4, 4], and its prior is
    // smooth at 0, far from |x|.
    assert!(
        e_l2.max_dev_mmse <= 0.05,
        "ℓ2 model against the MMSE: {e_l2:?}"
    );
    assert!(
        e_l2.max_dev_prior_from_abs_x > 0.3 && e_l2.max_inversion_residual <= 1e-8,
        "ℓ2 prior: {e_l2:?}"
    );
}

#[test]
fn the_papers_stochastic_schedule_learns_the_median_then_moves_toward_soft_thresholding() {
    // `laplacian_schedule` (the paper's minibatch schedule: ℓ1, then proximal matching with γ
    // from 0.5 down to 0.1) at a tenth of its length, width 20 instead of 50, batch 500
    // instead of 2000.
    let scale = 0.1;
    let schedule = hyperprox_lpn::train::laplacian_schedule("prox-matching", scale).unwrap();
    let l1_steps: u64 = schedule[..2].iter().map(|s| s.steps).sum();
    assert!(schedule[..2].iter().all(|s| s.loss == Loss::L1));
    let cfg = IcnnConfig {
        widths: vec![20; 5],
        ..IcnnConfig::paper_1d()
    };
    let mut st = TrainState::new(Icnn::new(cfg, 2).unwrap()).unwrap();
    let sampler = laplace::sampler(500, 11);
    train(&mut st, &schedule, &sampler, 100, |step, _| step < l1_steps).unwrap();
    assert_eq!(st.step, l1_steps);
    // After the ℓ1 stages the model is the posterior median's estimate: closer to it than to
    // the MMSE or to soft thresholding (measured: 0.15 against 0.19 and 0.49).
    let (l1, _) = laplacian_eval(&st.net, "l1").unwrap();
    assert!(
        l1.max_dev_posterior_median <= 0.2
            && l1.max_dev_posterior_median < l1.max_dev_mmse
            && l1.max_dev_posterior_median < l1.max_dev_soft_threshold,
        "after ℓ1: {l1:?}"
    );
    train(&mut st, &schedule, &sampler, 100, |_, _| true).unwrap();
    assert_eq!(st.step, total_steps(&schedule));
    // The proximal-matching stages move it toward the MAP (soft thresholding, prior |x|). At a
    // tenth of the length the small-learning-rate stages are short, so it does not get there:
    // measured, the distance to soft thresholding 0.49 → 0.27, the largest |f| on |y| ≤ 0.8
    // 0.41 → 0.19, the prior's distance to |x| 0.69 → 0.20.
    let (pm, _) = laplacian_eval(&st.net, "prox-matching").unwrap();
    assert!(
        pm.max_dev_soft_threshold <= 0.75 * l1.max_dev_soft_threshold
            && pm.max_abs_f_on_abs_y_le_0_8 <= 0.6 * l1.max_abs_f_on_abs_y_le_0_8
            && pm.max_dev_prior_from_abs_x <= 0.5 * l1.max_dev_prior_from_abs_x,
        "after proximal matching: {pm:?}\nafter ℓ1: {l1:?}"
    );
    for r in st.net.constrained() {
        assert!(st
            .net
            .params
            .slice(ndarray::s![r])
            .iter()
            .all(|&w| w >= 0.0));
    }
}

#[test]
fn pnp_proximal_gradient_decreases_h_plus_r_on_sparse_deconvolution() {
    use hyperprox_core::prelude::*;
    // A 1-D LPN (ℓ1 training on the population loss: the posterior median) as a separable prior;
    // h = (λ/2)‖Ax − b‖², λ‖A‖² ≤ 1.
    let net = train_laplacian("l1");
    let n = 64;
    let mut a = Array2::zeros((n, n));
    for i in 0..n {
        for (k, w) in [(-1i64, 0.25), (0, 0.5), (1, 0.25)] {
            let j = i as i64 + k;
            if (0..n as i64).contains(&j) {
                a[[i, j as usize]] = w;
            }
        }
    }
    let mut xt = Array1::zeros(n);
    for (i, v) in [(5, 3.0), (20, -2.5), (40, 4.0), (50, 2.0)] {
        xt[i] = v;
    }
    let b = a.dot(&xt) + randm(n, 1, 5).column(0).to_owned() * 0.05;
    let op = DenseMatrix::new(a.clone()).unwrap();
    let lam = 1.0
        / op.opnorm_estimate(PowerIteration::default())
            .unwrap()
            .powi(2)
        * 0.99;
    let h = LeastSquares::new(DenseMatrix::new(a * lam.sqrt()).unwrap(), b * lam.sqrt()).unwrap();
    let prior = LpnProx::separable(net).unwrap();
    let mut objs = Vec::new();
    let sol = Fista::new(
        &h,
        &prior,
        FistaParams::ista()
            .with_step(StepRule::Constant(1.0))
            .with_max_iters(40)
            .with_tol(0.0),
    )
    .run(Array1::zeros(n).view(), |info: &IterInfo<f64>| {
        objs.push(info.objective);
        true
    })
    .unwrap();
    assert!(
        objs.len() >= 20 && objs.iter().all(|v| v.is_finite()),
        "{objs:?}"
    );
    for w in objs.windows(2) {
        assert!(
            w[1] <= w[0] + 1e-9 * w[0].abs().max(1.0),
            "F increased: {} → {}",
            w[0],
            w[1]
        );
    }
    assert!(objs.last().unwrap() < &objs[0]);
    // The iterates stay in the range of f (R finite) and the data fit improves on x = 0.
    let fit = |x: &Array1<f64>| h.value(x.view()).unwrap();
    assert!(fit(&sol.x) < fit(&Array1::zeros(n)));
}

#[test]
fn pnp_compressed_sensing_and_denoising_on_digits() {
    use hyperprox_core::prelude::*;
    use hyperprox_lpn::digits;
    use hyperprox_lpn::train::{dataset_sampler, image_schedule};
    // A short digits prior (ℓ1 300 steps, then 4 × 75 proximal-matching steps).
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/digits/digits.csv");
    let data = hyperprox_core::io::read_digits_csv(&path).unwrap().0;
    let (tr, te) = digits::split(&data, 1500, 0);
    let mut st = TrainState::new(Icnn::new(digits::config(), 1).unwrap()).unwrap();
    train(
        &mut st,
        &image_schedule(64, 300),
        &dataset_sampler(tr, 64, 0.1, 1),
        100,
        |_, _| true,
    )
    .unwrap();
    let prior = LpnProx::vector(st.net.clone());
    let clean = te.slice(ndarray::s![..5, ..]).to_owned();
    let mean_psnr = |xs: &[Array1<f64>]| {
        xs.iter()
            .zip(clean.rows())
            .map(|(x, c)| digits::psnr(x, &c))
            .sum::<f64>()
            / 5.0
    };

    // Compressed sensing: 32 Gaussian measurements of the 64 pixels, noise 0.01; PnP-ADMM
    // (ρ = 1, data weight λ = 20) against the minimum-norm least-squares solution.
    let a = DenseMatrix::<f64>::gaussian(32, 64, 3)
        .unwrap()
        .matrix()
        .to_owned();
    let y = digits::add_noise(&clean.dot(&a.t()), 0.01, 4);
    let aat_inv = {
        let g = a.dot(&a.t());
        let l = f64::cholesky_lower(g.view()).unwrap();
        let mut inv = Array2::eye(32);
        for mut c in inv.columns_mut() {
            hyperprox_core::linalg::cholesky_solve_in_place(l.view(), c.view_mut());
        }
        inv
    };
    let (mut ls, mut pnp) = (Vec::new(), Vec::new());
    let lam: f64 = 20.0;
    let scaled = DenseMatrix::new(&a * lam.sqrt()).unwrap();
    for yi in y.rows() {
        let x_ls = a.t().dot(&aat_inv.dot(&yi));
        let sol = Admm::dense(
            &scaled,
            yi.to_owned() * lam.sqrt(),
            &prior,
            AdmmParams::default()
                .with_rho(1.0)
                .with_max_iters(100)
                .with_tol(0.0),
        )
        .unwrap()
        .run(x_ls.view(), NoObserver)
        .unwrap();
        ls.push(x_ls);
        pnp.push(sol.x);
    }
    let (p_ls, p_pnp) = (mean_psnr(&ls), mean_psnr(&pnp));
    assert!(
        p_pnp > p_ls + 3.0,
        "CS: PnP-ADMM {p_pnp:.2} dB vs least squares {p_ls:.2} dB"
    );

    // Denoising (A = I, σ = 0.1): PnP-PGD with step 1 on ½·0.99‖x − y‖² + R_θ decreases F and
    // improves on the noisy input.
    let y = digits::add_noise(&clean, 0.1, 5);
    let mut den = Vec::new();
    for yi in y.rows() {
        let h = LeastSquares::new(
            DenseMatrix::new(Array2::eye(64) * 0.99f64.sqrt()).unwrap(),
            yi.to_owned() * 0.99f64.sqrt(),
        )
        .unwrap();
        let mut objs = Vec::new();
        let sol = Fista::new(
            &h,
            &prior,
            FistaParams::ista()
                .with_step(StepRule::Constant(1.0))
                .with_max_iters(30)
                .with_tol(0.0),
        )
        .run(yi.view(), |info: &IterInfo<f64>| {
            objs.push(info.objective);
            true
        })
        .unwrap();
        for w in objs.windows(2) {
            assert!(
                w[1] <= w[0] + 1e-9 * w[0].abs().max(1.0),
                "F increased: {} → {}",
                w[0],
                w[1]
            );
        }
        den.push(sol.x);
    }
    let noisy: Vec<Array1<f64>> = y.rows().into_iter().map(|r| r.to_owned()).collect();
    let (p_noisy, p_den) = (mean_psnr(&noisy), mean_psnr(&den));
    assert!(
        p_den > p_noisy,
        "denoising: PnP-PGD {p_den:.2} dB vs noisy {p_noisy:.2} dB"
    );
}

/// The prior's inversion `f(y) = x` is Newton's method with an inexact (relative residual
/// 10⁻³) CG solve and an Armijo search. On a network whose Jacobian `∇²ψ` has a spread of
/// eigenvalues (so that a gradient step, what the fallbacks take, is slow), from a start near
/// the solution one iteration cuts the residual by about the CG accuracy,
/// `r₁ ≤ 10⁻³r₀ + O(r₀²)`, and the next one again; the run stops at the first iterate within
/// `tol·max(‖x‖, 1)` (checked against the residual of every iterate, with a tolerance that
/// separates `tol·‖x‖` from `tol/‖x‖`).
#[test]
fn inversion_converges_at_newtons_rate() {
    let mut net = small_conv(0.05, 31);
    for r in net.constrained() {
        for i in r {
            net.params[i] *= 6.0;
        }
    }
    let ys = randm(4, 12, 32) * 3.0;
    let xs = net.prox(ys.view()).unwrap();
    let u = randm(4, 12, 33);
    let at = |max_iters, tol, x, y0: &Array1<f64>| {
        invert_from(&net, x, y0.view(), InvertParams { tol, max_iters }).unwrap()
    };
    for b in 0..4 {
        let x = xs.row(b);
        let xn = x.dot(&x).sqrt();
        // The spread of ∇²ψ at the solution (probed with the HVP).
        let y = ys.row(b).insert_axis(ndarray::Axis(0)).to_owned();
        let jac = Array2::from_shape_fn((12, 12), |(i, j)| {
            let mut e = Array2::zeros((1, 12));
            e[[0, j]] = 1.0;
            net.hvp(y.view(), e.view()).unwrap()[[0, i]]
        });
        let (_, s, _) = <f64 as hyperprox_core::linalg::Real>::thin_svd(jac.view()).unwrap();
        let y0 = &ys.row(b) + &(&u.row(b) * 0.02);
        let f0 = net
            .prox(y0.clone().insert_axis(ndarray::Axis(0)).view())
            .unwrap();
        let r0 = (&f0.row(0) - &x).mapv(|v| v * v).sum().sqrt();
        let res: Vec<f64> = (1..=4).map(|k| at(k, 1e-300, x, &y0).residual).collect();
        // Measured: σ(∇²ψ) from 1.8–2.2 to 120–148, r₀ ≈ 2.4–3.9, r₁/r₀ = 1.7–2.0·10⁻³,
        // r₂/r₁ ≤ 1.6·10⁻⁵; the bounds leave an order of magnitude.
        assert!(s[0] / s[s.len() - 1] > 30.0, "well conditioned: {s:?}");
        assert!(
            res[0] <= 1e-2 * r0,
            "one Newton step: {r0:e} → {:e}",
            res[0]
        );
        assert!(
            res[1] <= 1e-2 * res[0],
            "second step: {:e} → {:e}",
            res[0],
            res[1]
        );
        let tol = 1e-8;
        let full = at(200, tol, x, &y0);
        let seq: Vec<f64> = std::iter::once(r0).chain(res.iter().cloned()).collect();
        let first = seq.iter().position(|r| *r <= tol * xn).unwrap();
        // The first iterate within tol·‖x‖ is not within tol/‖x‖: the scale matters here.
        assert!(first > 0 && seq[first] > tol / xn, "{seq:?}");
        assert_eq!(
            full.iterations, first,
            "stops at the first iterate within tol·‖x‖"
        );
        assert!(full.residual <= tol * xn);
        // From far away (y₀ = 0 and multiples of the solution) full Newton steps overshoot and
        // the Armijo search must shorten them (with the step doubled instead of halved, no
        // trial from 2y or −5y is accepted); the run still converges (measured: 5–14
        // iterations).
        for y0 in [
            Array1::zeros(12),
            &ys.row(b) * 2.0,
            &ys.row(b) * -5.0,
            &ys.row(b) * 10.0,
        ] {
            let far = at(200, tol, x, &y0);
            assert!(far.residual <= tol * xn && far.iterations < 30, "{far:?}");
        }
    }
}

/// `train` is, step by step: the batch `sample(step)`, the stage's loss on `f(y)` and its
/// parameter gradient, an Adam step at the stage's rate, the projection `W_k, w ≥ 0`, and a
/// history entry every `log_every` steps and at the last step. Replayed here from the pieces
/// (bit for bit), over three stages with changing losses and rates, on a schedule whose end is
/// not a multiple of `log_every`.
#[test]
fn training_is_adam_with_projection_at_each_stages_rate_replayed() {
    let cfg = dense(2, &[6, 5], 3.0, 0.01);
    let schedule = vec![
        Stage {
            steps: 7,
            lr: 3e-2,
            loss: Loss::L2,
        },
        Stage {
            steps: 5,
            lr: 1e-2,
            loss: Loss::L1,
        },
        Stage {
            steps: 6,
            lr: 5e-3,
            loss: Loss::ProxMatching { gamma: 0.7 },
        },
    ];
    let sampler = |step: u64| {
        let x = randm(9, 2, 100 + step);
        let y = &x + &(randm(9, 2, 200 + step) * 0.3);
        (x, y)
    };
    let net0 = Icnn::new(cfg, 12).unwrap();
    let mut st = TrainState::new(net0.clone()).unwrap();
    let mut seen = vec![];
    train(&mut st, &schedule, &sampler, 4, |step, loss| {
        seen.push((step, loss));
        true
    })
    .unwrap();

    let mut net = net0;
    let mut adam = hyperprox_core::diff::Adam::new(net.n_params(), 1.0).unwrap();
    let mut history = vec![];
    let mut losses = vec![];
    let mut step = 0u64;
    let mut clamped = 0;
    for stage in &schedule {
        for _ in 0..stage.steps {
            let (x, y) = sampler(step);
            let mut loss = 0.0;
            let (_, grad) = net
                .prox_then_grad(y.view(), |f| {
                    let (l, g) = stage.loss.value_and_grad(f, &x);
                    loss = l;
                    g
                })
                .unwrap();
            adam.lr = stage.lr;
            adam.step(net.params.as_slice_mut().unwrap(), grad.as_slice().unwrap())
                .unwrap();
            for r in net.constrained() {
                for i in r {
                    if net.params[i] < 0.0 {
                        net.params[i] = 0.0;
                        clamped += 1;
                    }
                }
            }
            step += 1;
            losses.push((step, loss));
            if step % 4 == 0 || step == 18 {
                history.push((step, loss));
            }
        }
    }
    assert!(clamped > 0, "the projection must be exercised");
    assert_eq!(st.step, 18);
    assert_eq!(st.net.params, net.params);
    assert_eq!(seen, losses);
    assert_eq!(st.history, history);
    assert_eq!(st.adam.state(), adam.state());
    // A state past the end of its schedule trains no further.
    let before = st.net.params.clone();
    train(&mut st, &schedule, &sampler, 4, |_, _| true).unwrap();
    assert_eq!((st.step, &st.net.params), (18, &before));
}

/// A batch whose loss is not finite stops training with an error naming the step, and the
/// state keeps the parameters of the last good step; a batch of the wrong width is refused.
#[test]
fn training_stops_on_a_non_finite_loss_keeping_the_last_good_parameters() {
    let cfg = dense(2, &[4, 4], 3.0, 0.0);
    let schedule = vec![Stage {
        steps: 10,
        lr: 1e-2,
        loss: Loss::L2,
    }];
    let sampler = |step: u64| {
        let x = randm(5, 2, step);
        let mut y = x.clone();
        if step == 3 {
            y[[1, 0]] = f64::NAN;
        }
        (x, y)
    };
    let mut st = TrainState::new(Icnn::new(cfg.clone(), 1).unwrap()).unwrap();
    let mut good = TrainState::new(Icnn::new(cfg.clone(), 1).unwrap()).unwrap();
    train(&mut good, &schedule, &sampler, 1, |s, _| s < 3).unwrap();
    let err = train(&mut st, &schedule, &sampler, 1, |_, _| true).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            hyperprox_core::error::Error::Diverged { iteration: 3, .. }
        ) || text.contains("NaN")
            || text.contains("finite"),
        "{text}"
    );
    assert_eq!((st.step, &st.net.params), (3, &good.net.params));
    // Clean and noisy batches of different sizes are refused before any step.
    let uneven = |_: u64| (randm(5, 2, 0), randm(4, 2, 1));
    let mut st = TrainState::new(Icnn::new(cfg.clone(), 1).unwrap()).unwrap();
    assert!(train(&mut st, &schedule, &uneven, 1, |_, _| true).is_err());
    assert_eq!(st.step, 0);
    let wide = |_: u64| (randm(5, 3, 0), randm(5, 3, 1));
    let mut st = TrainState::new(Icnn::new(cfg, 1).unwrap()).unwrap();
    assert!(train(&mut st, &schedule, &wide, 1, |_, _| true).is_err());
    assert_eq!(st.step, 0);
}

/// The schedules as the docs state them (the paper's Laplacian schedule, stage by stage, and
/// its `scale`; the image schedule's γ = 8, 4, 2, 1 × 0.08√d), and `stage_at` walking them.
#[test]
fn schedules_follow_the_paper_as_documented() {
    use hyperprox_lpn::train::{image_schedule, laplacian_schedule, stage_at};
    let pm = |g: f64| Loss::ProxMatching { gamma: g };
    let s = laplacian_schedule("prox-matching", 1.0).unwrap();
    let want = [
        (10_000, 1e-3, Loss::L1),
        (10_000, 1e-4, Loss::L1),
        (2000, 1e-3, pm(0.5)),
        (2000, 1e-4, pm(0.5)),
        (4000, 1e-4, pm(0.4)),
        (4000, 1e-4, pm(0.3)),
        (4000, 1e-5, pm(0.2)),
        (4000, 1e-5, pm(0.1)),
        (4000, 1e-6, pm(0.1)),
    ];
    let got: Vec<(u64, f64, Loss)> = s.iter().map(|t| (t.steps, t.lr, t.loss)).collect();
    assert_eq!(got, want);
    for (name, loss) in [("l2", Loss::L2), ("l1", Loss::L1)] {
        let s = laplacian_schedule(name, 0.25).unwrap();
        let got: Vec<(u64, f64, Loss)> = s.iter().map(|t| (t.steps, t.lr, t.loss)).collect();
        assert_eq!(got, [(2500, 1e-3, loss), (2500, 1e-4, loss)]);
    }
    // `scale` rounds each stage and keeps at least one step.
    let tiny = laplacian_schedule("prox-matching", 1e-4).unwrap();
    assert_eq!(
        tiny.iter().map(|t| t.steps).collect::<Vec<_>>(),
        [1, 1, 1, 1, 1, 1, 1, 1, 1]
    );
    let third = laplacian_schedule("prox-matching", 0.00035).unwrap();
    assert_eq!(third[0].steps, 4, "10 000 × 0.00035 = 3.5 rounds to 4");
    assert!(laplacian_schedule("huber", 1.0).is_err());

    let img = image_schedule(64, 1000);
    let gmin = 0.08 * 8.0;
    let got: Vec<(u64, f64, Loss)> = img.iter().map(|t| (t.steps, t.lr, t.loss)).collect();
    assert_eq!(
        got,
        [
            (1000, 1e-3, Loss::L1),
            (250, 1e-4, pm(8.0 * gmin)),
            (250, 1e-4, pm(4.0 * gmin)),
            (250, 1e-4, pm(2.0 * gmin)),
            (250, 1e-4, pm(gmin)),
        ]
    );
    assert!(image_schedule(4, 2)[1..].iter().all(|t| t.steps == 1));

    // stage_at: the stage of each global step, None past the end.
    let short = [
        Stage {
            steps: 2,
            lr: 1.0,
            loss: Loss::L2,
        },
        Stage {
            steps: 3,
            lr: 2.0,
            loss: Loss::L1,
        },
    ];
    let lrs: Vec<Option<f64>> = (0..6).map(|k| stage_at(&short, k).map(|s| s.lr)).collect();
    assert_eq!(
        lrs,
        [Some(1.0), Some(1.0), Some(2.0), Some(2.0), Some(2.0), None]
    );
    assert_eq!(total_steps(&short), 5);
}

/// The data-set sampler draws rows of the data (deterministically per step and seed) and adds
/// σ·N(0, 1) noise; the validation loss is the loss of `f(y)`; `errors` are per-sample norms.
#[test]
fn dataset_sampler_validation_loss_and_errors_follow_their_definitions() {
    use hyperprox_lpn::train::{dataset_sampler, errors, validation_loss, Sampler};
    let data = randm(40, 3, 7);
    let s = dataset_sampler(data.clone(), 2000, 0.25, 9);
    let (x, y) = s.sample(5);
    assert_eq!(x.dim(), (2000, 3));
    assert!(x
        .rows()
        .into_iter()
        .all(|r| data.rows().into_iter().any(|d| d == r)));
    let (x2, y2) = s.sample(5);
    assert_eq!((&x2, &y2), (&x, &y), "a step's batch is reproducible");
    assert_ne!(s.sample(6).0, x, "another step draws another batch");
    assert_ne!(dataset_sampler(data.clone(), 2000, 0.25, 10).sample(5).0, x);
    let noise = &y - &x;
    let n = noise.len() as f64;
    let mean = noise.sum() / n;
    let sd = (noise.mapv(|v| v * v).sum() / n).sqrt();
    // 6000 draws: the mean within 4 standard errors of 0, the spread within 5 % of σ.
    assert!(
        mean.abs() < 4.0 * 0.25 / n.sqrt() && (sd / 0.25 - 1.0).abs() < 0.05,
        "{mean} {sd}"
    );
    // Each step draws its own batch, for any seed (the seed and the step are mixed so that
    // none is lost).
    for seed in [0, 9, u64::MAX] {
        let s = dataset_sampler(data.clone(), 3, 0.25, seed);
        let batches: Vec<Array2<f64>> = (0..20).map(|k| s.sample(k).1).collect();
        for i in 0..20 {
            for j in 0..i {
                assert_ne!(batches[i], batches[j], "seed {seed}: steps {i} and {j}");
            }
        }
    }
    // Every row of the data is drawn (40 rows, 2000 draws).
    assert!(data
        .rows()
        .into_iter()
        .all(|d| x.rows().into_iter().any(|r| r == d)));

    let net = small_net(0.1, 3);
    let (xv, yv) = (randm(6, 3, 1), randm(6, 3, 2));
    let f = net.prox(yv.view()).unwrap();
    let e = errors(&net, &xv, &yv).unwrap();
    for b in 0..6 {
        let r = &f.row(b) - &xv.row(b);
        assert_eq!(e[b], r.dot(&r).sqrt());
    }
    let l2 = validation_loss(&net, Loss::L2, &xv, &yv).unwrap();
    let want = e.mapv(|v| v * v).sum() / 6.0;
    assert!((l2 - want).abs() <= 1e-14 * want, "{l2} {want}");
    let l1 = validation_loss(&net, Loss::L1, &xv, &yv).unwrap();
    assert!((l1 - (&f - &xv).mapv(f64::abs).sum() / 6.0).abs() <= 1e-14 * l1);
}

/// `regularizer_rows` is `regularizer` row by row (values and inversion residuals), and
/// refuses rows of the wrong width.
#[test]
fn the_prior_of_rows_is_the_prior_of_each_row() {
    let net = small_net(0.1, 5);
    let xs = net.prox(randm(5, 3, 6).view()).unwrap();
    let params = InvertParams::default();
    let (vals, res) = regularizer_rows(&net, xs.view(), params).unwrap();
    for b in 0..5 {
        let (v, inv) = regularizer(&net, xs.row(b), params).unwrap();
        assert_eq!((vals[b], res[b]), (v, inv.residual), "row {b}");
        assert!(inv.residual <= 1e-8);
    }
    assert!(regularizer_rows(&net, randm(5, 4, 6).view(), params).is_err());
}

#[test]
fn data_parallel_training_gives_the_one_process_parameters() {
    // The three losses of the paper's schedule; 64 samples split over 2 and 3 thread ranks.
    let cfg = dense(1, &[10, 10], 10.0, 0.0);
    let schedule = vec![
        Stage {
            steps: 20,
            lr: 1e-3,
            loss: Loss::L2,
        },
        Stage {
            steps: 20,
            lr: 1e-3,
            loss: Loss::L1,
        },
        Stage {
            steps: 20,
            lr: 1e-4,
            loss: Loss::ProxMatching { gamma: 0.5 },
        },
    ];
    let s = laplace::sampler(64, 9);
    let mut one = TrainState::new(Icnn::new(cfg.clone(), 3).unwrap()).unwrap();
    train(&mut one, &schedule, &s, 5, |_, _| true).unwrap();
    let norm = one.net.params.dot(&one.net.params).sqrt();
    for k in [2, 3] {
        let comms = hyperprox_core::comm::ThreadComm::group(k);
        let out: Vec<TrainState> = std::thread::scope(|sc| {
            let hs: Vec<_> = comms
                .iter()
                .map(|c| {
                    let (cfg, schedule, s) = (&cfg, &schedule, &s);
                    sc.spawn(move || {
                        let mut st = TrainState::new(Icnn::new(cfg.clone(), 3).unwrap()).unwrap();
                        hyperprox_lpn::train::train_ranks(c, &mut st, schedule, s, 5, |_, _| true)
                            .unwrap();
                        st
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for st in &out {
            let d = &st.net.params - &one.net.params;
            assert!(
                d.dot(&d).sqrt() <= 1e-10 * norm,
                "k = {k}: {}",
                d.dot(&d).sqrt()
            );
            assert_eq!(st.net.params, out[0].net.params, "ranks disagree");
            assert_eq!(st.history.len(), one.history.len());
            for (a, b) in st.history.iter().zip(&one.history) {
                assert!((a.1 - b.1).abs() <= 1e-12 * b.1.abs().max(1e-300));
            }
        }
    }
}
