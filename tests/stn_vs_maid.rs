//! The two bilevel families on one problem: the ridge penalty tuned by a self-tuning network
//! (`hyperprox-stn`, one stochastic training run) and by MAID (`hyperprox-bilevel`, certified
//! inexact hypergradients of the exact lower level), against the closed-form optimum. Work is
//! counted in per-sample gradient evaluations: a full lower-level gradient or Hessian-vector
//! product costs n, a minibatch step B.

use hyperprox::bilevel::problems::RidgeProblem;
use hyperprox::bilevel::{BilevelProblem, Maid, MaidParams, OuterSolver};
use hyperprox::stn::ridge::{RidgeData, RidgeStn, StnConfig};

#[test]
fn stn_and_maid_reach_the_same_ridge_penalty() {
    let d = RidgeData::synthetic(60, 200, 30, 1.0, 5).unwrap();
    let (lstar, vstar) = d.exact_optimum().unwrap();
    let n = d.x_train.nrows();

    // MAID from λ = 1.
    let p = RidgeProblem::new(
        d.x_train.clone(),
        d.y_train.clone(),
        d.x_val.clone(),
        d.y_val.clone(),
        1.0,
    )
    .unwrap();
    let maid = Maid::new(&p, MaidParams::default().with_max_iters(60)).unwrap();
    let res = maid.run(p.theta_start().view(), |_| true).unwrap();
    let lam_maid = res.theta[0].exp();
    let work_maid = res.history.last().unwrap().work() * n;

    // STN from λ = 1.
    let stn = RidgeStn::new(&d);
    let cfg = StnConfig::default();
    let mut st = stn.init(&cfg).unwrap();
    stn.run(&mut st, u64::MAX, &mut |_| {}).unwrap();
    let lam_stn = st.hypers.values()[0];
    let hyper_steps = st.trajectory.len();
    let work_stn = (cfg.steps as usize + hyper_steps) * cfg.batch;

    let val = |l: f64| d.val_loss(d.exact_weights(l).unwrap().view());
    // MAID's work until its λ is as close to λ* as the STN's final one.
    let err_stn = (lam_stn.log10() - lstar.log10()).abs();
    let reach = res
        .history
        .iter()
        .find(|r| (r.theta[0].exp().log10() - lstar.log10()).abs() <= err_stn)
        .map(|r| (r.iter, r.work() * n));
    println!("MAID reaches the STN's error ({err_stn:.4} decades) at (iteration, work) {reach:?}");
    assert!(reach.is_some());
    println!("exact: λ* = {lstar:.4}, L_V = {vstar:.6}");
    println!(
        "MAID: λ = {lam_maid:.4} (L_V at w*(λ) {:.6}), {} outer iterations, work {work_maid} \
         sample-gradients ({:?})",
        val(lam_maid),
        res.history.len(),
        res.stop
    );
    println!(
        "STN:  λ = {lam_stn:.4} (L_V at w*(λ) {:.6}), {} training + {hyper_steps} hyper steps, \
         work {work_stn} sample-gradients",
        val(lam_stn),
        cfg.steps
    );
    assert!(
        (lam_maid.log10() - lstar.log10()).abs() < 0.01,
        "{lam_maid} vs {lstar}"
    );
    assert!(
        (lam_stn.log10() - lstar.log10()).abs() < 0.1,
        "{lam_stn} vs {lstar}"
    );
}
