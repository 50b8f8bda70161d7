//! Deep unfolding: VJPs against finite differences, reduction to the classical algorithms, and
//! the published orderings at reduced size (N = 100, M = 50; the defaults are N = 500, M = 250).

use hyperprox_core::diff::{check_vjp, Differentiable};
use hyperprox_core::prelude::*;
use hyperprox_core::solve::{Fista, FistaParams, NoObserver, StepRule};
use hyperprox_unfolded::baselines::{fista, ista, lasso_optimum, Curves};
use hyperprox_unfolded::train::{
    loss_and_grad, loss_for, loss_value, train, LossKind, TrainConfig, TrainState,
};
use hyperprox_unfolded::*;
use ndarray::{Array1, Array2};
use std::sync::Arc;

fn small(m: usize, n: usize) -> Problem {
    Problem::gaussian(m, n, 3).unwrap()
}

#[test]
fn layer_vjps_match_finite_differences() {
    let pr = small(15, 30);
    let sig = Signal {
        p: 0.2,
        snr_db: Some(30.0),
    };
    assert!(sig.noise_var(&pr) > 0.0);
    let b = sample(&pr, &sig, 5, 1).unwrap();
    // A nonzero state so that thresholds are active on both sides.
    let x = &b.x * 0.7 + 0.05;
    for pen in [Penalty::L1, Penalty::L0] {
        let l = ProxGradLayer::new(pr.a.clone(), 0.1, pen);
        let e = check_vjp(&l, &[0.21], x.view(), b.y.view(), 1, 1e-6).unwrap();
        assert!(e < 1e-6, "{pen:?}: {e:e}");
        // The saving pair (used in training) computes the same as the plain one.
        let (out, sv) = l.forward_save(&[0.21], x.view(), b.y.view()).unwrap();
        assert_eq!(out, l.forward(&[0.21], x.view(), b.y.view()).unwrap());
        let (mut g1, mut g2) = ([0.0], [0.0]);
        let gx1 = l
            .vjp(&[0.21], x.view(), b.y.view(), x.view(), &mut g1)
            .unwrap();
        let gx2 = l
            .vjp_saved(&[0.21], x.view(), b.y.view(), &sv, x.view(), &mut g2)
            .unwrap();
        assert_eq!((gx1.clone(), g1), (gx2, g2));
        // The workspace pair: the same numbers; a backward pass on a workspace that holds no
        // forward pass of this batch (fresh, or filled by a smaller batch) recomputes it.
        let mut ws = hyperprox_core::diff::Workspace::default();
        let (mut out, mut g3) = (Array2::zeros((0, 0)), [0.0]);
        l.vjp_ws(
            &[0.21],
            x.view(),
            b.y.view(),
            &mut ws,
            x.view(),
            &mut g3,
            &mut out,
        )
        .unwrap();
        assert_eq!((&out, g3), (&gx1, g1), "{pen:?}: fresh workspace");
        let rows = ndarray::s![..2, ..];
        let mut small_out = Array2::zeros((0, 0));
        let (xs, ys) = (x.slice(rows), b.y.slice(rows));
        l.forward_ws(&[0.21], xs, ys, &mut ws, &mut small_out)
            .unwrap();
        assert_eq!(small_out, l.forward(&[0.21], xs, ys).unwrap());
        let mut g4 = [0.0];
        l.vjp_ws(
            &[0.21],
            x.view(),
            b.y.view(),
            &mut ws,
            x.view(),
            &mut g4,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            (&out, g4),
            (&gx1, g1),
            "{pen:?}: workspace of another batch"
        );
        // A gradient buffer of another shape is resized.
        let (mut other_out, mut g5) = (Array2::zeros((1, 1)), [0.0]);
        l.vjp_ws(
            &[0.21],
            x.view(),
            b.y.view(),
            &mut ws,
            x.view(),
            &mut g5,
            &mut other_out,
        )
        .unwrap();
        assert_eq!((&other_out, g5), (&gx1, g1), "{pen:?}: resized output");
    }
    let z = Arc::new(pr.gram_inverse_times_a().unwrap());
    for sigma2 in [sig.noise_var(&pr), 0.0] {
        let l = TistaLayer::new(pr.a.clone(), z.clone(), 0.2, sigma2);
        for gamma in [0.6, 1.3] {
            let e = check_vjp(&l, &[gamma], x.view(), b.y.view(), 2, 1e-6).unwrap();
            assert!(e < 1e-6, "TISTA σ² = {sigma2}, γ = {gamma}: {e:e}");
        }
    }
}

#[test]
fn every_model_gradient_matches_finite_differences_for_both_losses() {
    let pr = small(12, 24);
    let sig = Signal {
        p: 0.2,
        snr_db: Some(30.0),
    };
    let batch = sample(&pr, &sig, 6, 2).unwrap();
    for kind in ModelKind::all() {
        let mut spec = ModelSpec::new(kind, 4);
        spec.signal = sig;
        spec.ss_step = 0.1;
        let mut model = Unfolded::new(spec, &pr).unwrap();
        // Move off the classical initialization, deterministically.
        let p: Vec<f64> = model
            .params()
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + 0.1 * ((i * 7919 % 13) as f64 / 13.0 - 0.5)))
            .collect();
        model.set_params(p.clone()).unwrap();
        for lk in [LossKind::Supervised, LossKind::Unsupervised] {
            let loss = loss_for(&model, &pr, lk);
            let (_, g) = loss_and_grad(&model, loss.as_ref(), &batch, 4).unwrap();
            let dir: Vec<f64> = (0..p.len())
                .map(|i| ((i * 31 % 17) as f64 / 17.0) - 0.5)
                .collect();
            let h = 1e-6;
            let mut at = |s: f64| {
                let q: Vec<f64> = p.iter().zip(&dir).map(|(a, d)| a + s * h * d).collect();
                model.set_params(q).unwrap();
                loss_value(&model, loss.as_ref(), &batch, 4).unwrap()
            };
            let fd = (at(1.0) - at(-1.0)) / (2.0 * h);
            model.set_params(p.clone()).unwrap();
            let an: f64 = g.iter().zip(&dir).map(|(a, b)| a * b).sum();
            assert!(
                (fd - an).abs() <= 1e-5 * an.abs().max(1.0),
                "{} {}: finite difference {fd} vs VJP {an}",
                kind.as_str(),
                lk.as_str()
            );
        }
    }
}

#[test]
fn classical_initializations_reproduce_ista_and_iht() {
    let pr = small(20, 40);
    let sig = Signal::default();
    let batch = sample(&pr, &sig, 3, 4).unwrap();
    let t = 12;
    let lam = 0.05;
    let l = pr.lipschitz;
    // Reference: the core FISTA solver in ISTA mode (no momentum), one sample at a time.
    let core_run = |pen: Penalty, row: usize| -> Array1<f64> {
        let f = LeastSquares::new(
            DenseMatrix::new(pr.a.as_ref().clone()).unwrap(),
            batch.y.row(row).to_owned(),
        )
        .unwrap();
        let params = FistaParams::ista()
            .with_step(StepRule::Constant(1.0 / l))
            .with_max_iters(t)
            .with_tol(0.0);
        match pen {
            Penalty::L1 => {
                Fista::new(&f, &NormL1::new(lam).unwrap(), params)
                    .run(Array1::zeros(40).view(), NoObserver)
                    .unwrap()
                    .x
            }
            Penalty::L0 => {
                Fista::new(&f, &NormL0::new(lam).unwrap(), params)
                    .run(Array1::zeros(40).view(), NoObserver)
                    .unwrap()
                    .x
            }
        }
    };
    for kind in [
        ModelKind::DuIsta,
        ModelKind::DuIht,
        ModelKind::Lista,
        ModelKind::ListaCp,
        ModelKind::ListaCpss,
    ] {
        let mut spec = ModelSpec::new(kind, t);
        spec.lambda = lam;
        // Without support selection LISTA-CPSS is LISTA-CP.
        spec.ss_step = 0.0;
        let model = Unfolded::new(spec, &pr).unwrap();
        let x0 = Array2::zeros((3, 40));
        let out = model
            .net()
            .forward(model.params(), x0.view(), batch.y.view(), t)
            .unwrap();
        let pen = kind.penalty();
        let base = ista(&pr, batch.y.view(), lam, pen, t).unwrap();
        for row in 0..3 {
            let want = core_run(pen, row);
            let got = out.last().row(row).to_owned();
            let err = (&got - &want).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                err < 1e-12,
                "{}: max deviation from core ISTA/IHT {err:e}",
                kind.as_str()
            );
            assert!((&base[t].row(row) - &want).iter().all(|v| v.abs() < 1e-12));
        }
        assert!(out.last().iter().any(|v| *v != 0.0));
    }
}

fn fit(
    pr: &Problem,
    kind: ModelKind,
    t: usize,
    loss: LossKind,
    sig: Signal,
    steps: usize,
    final_steps: usize,
) -> Unfolded {
    let mut spec = ModelSpec::new(kind, t);
    spec.signal = sig;
    let mut model = Unfolded::new(spec, pr).unwrap();
    let lr = TrainConfig::default_lr(kind);
    let cfg = TrainConfig {
        loss,
        signal: sig,
        steps_per_layer: steps,
        final_steps,
        lr,
        val_size: 200,
        ..Default::default()
    };
    let st = train(&mut model, pr, &cfg, None, None, &mut |_| {}).unwrap();
    assert_eq!(st.skipped, 0);
    assert_eq!(st.history.len(), t + 1);
    model
}

/// The paper's ℓ1 findings at T = 16: unsupervised DU-ISTA closes the objective gap far faster
/// than ISTA; supervised DU-ISTA reaches a lower NMSE but a higher objective.
#[test]
fn du_ista_supervised_vs_unsupervised() {
    let pr = small(50, 100);
    let sig = Signal::default();
    let test = sample(&pr, &sig, 500, 99).unwrap();
    let (t, lam) = (16, 0.1);
    let (_, fstar, _) = lasso_optimum(&pr, test.y.view(), lam, 1e-10, 100_000).unwrap();
    let fstar = fstar.iter().sum::<f64>() / fstar.len() as f64;
    let ist = Curves::of(
        &pr,
        &test,
        &ista(&pr, test.y.view(), lam, Penalty::L1, t).unwrap(),
        lam,
        Penalty::L1,
    );
    let sup = evaluate(
        &fit(
            &pr,
            ModelKind::DuIsta,
            t,
            LossKind::Supervised,
            sig,
            150,
            200,
        ),
        &pr,
        &test,
    )
    .unwrap();
    let uns = evaluate(
        &fit(
            &pr,
            ModelKind::DuIsta,
            t,
            LossKind::Unsupervised,
            sig,
            150,
            200,
        ),
        &pr,
        &test,
    )
    .unwrap();
    let gap = |c: &Curves| (c.objective[t] - fstar) / fstar;
    eprintln!(
        "gap ISTA {:.3e} unsup {:.3e} sup {:.3e}; NMSE sup {:.2} unsup {:.2}",
        gap(&ist),
        gap(&uns),
        gap(&sup),
        sup.nmse_db[t],
        uns.nmse_db[t]
    );
    assert!(gap(&uns) > 0.0 && gap(&uns) * 10.0 <= gap(&ist));
    assert!(sup.nmse_db[t] < uns.nmse_db[t]);
    assert!(sup.objective[t] > uns.objective[t]);
    // Both learned models beat T iterations of FISTA on NMSE.
    let fis = Curves::of(
        &pr,
        &test,
        &fista(&pr, test.y.view(), lam, t).unwrap(),
        lam,
        Penalty::L1,
    );
    assert!(uns.nmse_db[t] < fis.nmse_db[t]);
}

/// The paper's ℓ0 finding: both DU-IHT variants reach a lower ℓ0 objective and NMSE than IHT.
#[test]
fn du_iht_beats_iht_with_both_losses() {
    let pr = small(50, 100);
    let sig = Signal::default();
    let test = sample(&pr, &sig, 500, 98).unwrap();
    let (t, lam) = (10, 0.1);
    let iht = Curves::of(
        &pr,
        &test,
        &ista(&pr, test.y.view(), lam, Penalty::L0, t).unwrap(),
        lam,
        Penalty::L0,
    );
    for loss in [LossKind::Supervised, LossKind::Unsupervised] {
        let c = evaluate(
            &fit(&pr, ModelKind::DuIht, t, loss, sig, 200, 200),
            &pr,
            &test,
        )
        .unwrap();
        eprintln!(
            "{}: NMSE {:.2} vs IHT {:.2}; ℓ0 objective {:.4} vs {:.4}",
            loss.as_str(),
            c.nmse_db[t],
            iht.nmse_db[t],
            c.objective[t],
            iht.objective[t]
        );
        assert!(c.nmse_db[t] < iht.nmse_db[t] - 3.0);
        assert!(c.objective[t] < iht.objective[t]);
    }
}

/// LISTA-CP, ALISTA (and TISTA) at T = 16 without noise: NMSE far below 16 ISTA iterations.
#[test]
fn lista_cp_alista_tista_beat_ista_noiseless() {
    let pr = small(50, 100);
    let sig = Signal {
        p: 0.1,
        snr_db: None,
    };
    let test = sample(&pr, &sig, 500, 97).unwrap();
    let t = 16;
    let ist = Curves::of(
        &pr,
        &test,
        &ista(&pr, test.y.view(), 0.1, Penalty::L1, t).unwrap(),
        0.1,
        Penalty::L1,
    );
    // Minibatches per layer and in the final stage: LISTA-CP learns 16 matrices and needs more.
    for (kind, steps, fin) in [
        (ModelKind::ListaCp, 100, 200),
        (ModelKind::Alista, 40, 40),
        (ModelKind::Tista, 20, 20),
    ] {
        let c = evaluate(
            &fit(&pr, kind, t, LossKind::Supervised, sig, steps, fin),
            &pr,
            &test,
        )
        .unwrap();
        eprintln!(
            "{}: NMSE {:.2} dB vs ISTA {:.2} dB",
            kind.as_str(),
            c.nmse_db[t],
            ist.nmse_db[t]
        );
        assert!(c.nmse_db[t] < ist.nmse_db[t] - 10.0, "{}", kind.as_str());
    }
}

#[test]
fn checkpoint_resume_is_exact_and_models_round_trip() {
    let pr = small(20, 40);
    let spec = ModelSpec::new(ModelKind::Alista, 3);
    let mut st_full = None;
    let mut full = Unfolded::new(spec.clone(), &pr).unwrap();
    // Adam and SGD with momentum.
    for sgd in [None, Some(0.9)] {
        let cfg = TrainConfig {
            steps_per_layer: 6,
            final_steps: 4,
            batch: 16,
            val_size: 20,
            sgd_momentum: sgd,
            lr: if sgd.is_some() { 1e-3 } else { 1e-2 },
            ..Default::default()
        };
        full = Unfolded::new(spec.clone(), &pr).unwrap();
        let st = train(&mut full, &pr, &cfg, None, None, &mut |_| {}).unwrap();
        assert_ne!(
            full.params(),
            Unfolded::new(spec.clone(), &pr).unwrap().params()
        );
        let mut part = Unfolded::new(spec.clone(), &pr).unwrap();
        // Stop in the middle of a stage, write and read the checkpoint, continue.
        let mid = train(&mut part, &pr, &cfg, None, Some(9), &mut |_| {}).unwrap();
        assert_eq!(mid.step, 9);
        let mid = TrainState::from_json(&serde_json::from_str(&mid.to_json().to_string()).unwrap())
            .unwrap();
        let mut resumed = Unfolded::new(spec.clone(), &pr).unwrap();
        let st2 = train(&mut resumed, &pr, &cfg, Some(mid), None, &mut |_| {}).unwrap();
        assert_eq!(st2.params, st.params, "{sgd:?}");
        assert_eq!(st2.history, st.history);
        st_full = Some((st, cfg));
    }
    let (st_full, cfg) = st_full.unwrap();
    // Model files round-trip exactly.
    let back =
        Unfolded::from_json(&serde_json::from_str(&full.to_json().to_string()).unwrap()).unwrap();
    assert_eq!(back.params(), full.params());
    assert_eq!(back.spec(), full.spec());
    // A different configuration cannot resume this checkpoint.
    let other = TrainConfig {
        lr: 0.5,
        ..cfg.clone()
    };
    let mut m = Unfolded::new(ModelSpec::new(ModelKind::Alista, 3), &pr).unwrap();
    assert!(train(&mut m, &pr, &other, Some(st_full), None, &mut |_| {}).is_err());
}

#[test]
fn bad_inputs_are_errors() {
    let pr = small(10, 20);
    assert!(Problem::gaussian(0, 5, 1).is_err());
    assert!(Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 0), &pr).is_err());
    let mut s = ModelSpec::new(ModelKind::DuIsta, 2);
    s.lambda = -1.0;
    assert!(Unfolded::new(s, &pr).is_err());
    assert!(sample(
        &pr,
        &Signal {
            p: 1.5,
            snr_db: None
        },
        4,
        1
    )
    .is_err());
    assert!(sample(&pr, &Signal::default(), 0, 1).is_err());
    assert!(Batch::new(&pr, Array2::zeros((3, 20)), Array2::zeros((3, 9))).is_err());
    let mut y = Array2::zeros((3, 10));
    y[[1, 1]] = f64::NAN;
    assert!(Batch::new(&pr, Array2::zeros((3, 20)), y).is_err());
    assert!(ModelKind::parse("lista-xx").is_err());
    let mut m = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 2), &pr).unwrap();
    assert!(m.set_params(vec![0.1]).is_err());
    assert!(m.set_params(vec![0.1, f64::INFINITY]).is_err());
    let cfg = TrainConfig {
        batch: 0,
        ..Default::default()
    };
    assert!(train(&mut m, &pr, &cfg, None, None, &mut |_| {}).is_err());
    // A diverging step is reported, not a panic: α = 1e6 blows the iterates up.
    m.set_params(vec![1e6, 1e6]).unwrap();
    let b = sample(&pr, &Signal::default(), 4, 1).unwrap();
    let r = m.net().forward(
        m.params(),
        Array2::zeros((4, 20)).view(),
        (&b.y * 1e300).view(),
        2,
    );
    assert!(r.is_err());
    assert!(Unfolded::from_json(&serde_json::json!({"format": "x"})).is_err());
}

/// A block written by a user: a learned per-feature scale `x ↦ s ⊙ x` (parameters `s`), with
/// an optional deliberate error in its parameter VJP.
struct Scale {
    n: usize,
    wrong: bool,
}

impl Differentiable for Scale {
    fn name(&self) -> String {
        "scale".into()
    }
    fn in_dim(&self) -> usize {
        self.n
    }
    fn out_dim(&self) -> usize {
        self.n
    }
    fn ctx_dim(&self) -> usize {
        10
    }
    fn num_params(&self) -> usize {
        self.n
    }
    fn forward(
        &self,
        p: &[f64],
        x: ndarray::ArrayView2<'_, f64>,
        _c: ndarray::ArrayView2<'_, f64>,
    ) -> hyperprox_core::Result<Array2<f64>> {
        let s = ndarray::ArrayView1::from(p);
        Ok(&x * &s)
    }
    fn vjp(
        &self,
        p: &[f64],
        x: ndarray::ArrayView2<'_, f64>,
        _c: ndarray::ArrayView2<'_, f64>,
        g: ndarray::ArrayView2<'_, f64>,
        gp: &mut [f64],
    ) -> hyperprox_core::Result<Array2<f64>> {
        let s = ndarray::ArrayView1::from(p);
        for (j, gj) in gp.iter_mut().enumerate() {
            let d = (&g.column(j) * &x.column(j)).sum();
            *gj += if self.wrong { 2.0 * d } else { d };
        }
        Ok(&g * &s)
    }
}

/// A block written by a user plugs into the same machinery as the provided layers: boxed as
/// `dyn Differentiable`, chained after a DU-ISTA layer, unrolled, and checked by the VJP
/// checker, which catches a wrong parameter VJP in the user's block through the chain.
#[test]
fn layers_are_usable_as_trait_objects() {
    let pr = small(10, 20);
    let b = sample(&pr, &Signal::default(), 4, 5).unwrap();
    let x = &b.x * 0.7 + 0.05;
    let chain = |wrong: bool| {
        hyperprox_core::diff::Chain::new(vec![
            Box::new(ProxGradLayer::new(pr.a.clone(), 0.1, Penalty::L1)) as Box<dyn Differentiable>,
            Box::new(Scale { n: 20, wrong }),
        ])
        .unwrap()
    };
    let p: Vec<f64> = std::iter::once(0.2)
        .chain((0..20).map(|j| 0.5 + 0.05 * j as f64))
        .collect();
    let good = check_vjp(&chain(false), &p, x.view(), b.y.view(), 3, 1e-6).unwrap();
    assert!(good < 1e-6, "{good:e}");
    let bad = check_vjp(&chain(true), &p, x.view(), b.y.view(), 3, 1e-6).unwrap();
    assert!(bad > 0.1, "a wrong VJP must be caught: {bad:e}");
    // Unrolled twice: the network's parameter gradient against finite differences.
    let layers: Vec<Box<dyn Differentiable>> = vec![Box::new(chain(false)), Box::new(chain(false))];
    let net = hyperprox_core::diff::Unrolled::new(layers).unwrap();
    assert_eq!(net.num_params(), 42);
    let pp: Vec<f64> = p.iter().chain(p.iter()).copied().collect();
    let loss = hyperprox_core::diff::SquaredError;
    let x0 = Array2::zeros((4, 20));
    let (_, g) = net
        .value_and_grad(&pp, x0.view(), b.y.view(), 2, &loss, b.x.view())
        .unwrap();
    let value = |q: &[f64]| {
        let out = net.forward(q, x0.view(), b.y.view(), 2).unwrap();
        use hyperprox_core::diff::BatchLoss;
        loss.value_grad(out.last().view(), b.y.view(), b.x.view())
            .unwrap()
            .0
    };
    for k in [0, 5, 21, 30, 41] {
        let h = 1e-6;
        let (mut up, mut dn) = (pp.clone(), pp.clone());
        up[k] += h;
        dn[k] -= h;
        let fd = (value(&up) - value(&dn)) / (2.0 * h);
        assert!(
            (fd - g[k]).abs() < 1e-6 * fd.abs().max(1.0),
            "param {k}: {fd} vs {}",
            g[k]
        );
    }
}

/// ALISTA's analytic weight (Liu et al. 2019, eq. (17)): `W = argmin ‖WᵀA‖_F` subject to
/// `diag(WᵀA) = 1`, column by column `w_i = (AAᵀ)⁻¹a_i / (a_iᵀ(AAᵀ)⁻¹a_i)`. Checked by its
/// constraint, its optimality condition `AAᵀw_i ∥ a_i` (Lagrange), and against the feasible
/// `a_i/‖a_i‖²`.
#[test]
fn alista_weight_is_normalized_and_minimizes_the_coherence() {
    let pr = small(20, 40);
    let w = pr.alista_weight().unwrap();
    let a = pr.a.as_ref();
    let wta = w.t().dot(a);
    for i in 0..40 {
        assert!(
            (wta[[i, i]] - 1.0).abs() < 1e-12,
            "diag {i}: {}",
            wta[[i, i]]
        );
    }
    // AAᵀw_i = ν_i a_i with ν_i = ‖Aᵀw_i‖² (multiply by w_iᵀ and use a_iᵀw_i = 1).
    let aat_w = a.dot(&a.t()).dot(&w);
    for i in 0..40 {
        let nu = wta.row(i).dot(&wta.row(i));
        let res = (&aat_w.column(i) - &(&a.column(i) * nu))
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(res < 1e-10 * nu.max(1.0), "column {i}: {res:e}");
    }
    let mut naive = a.clone();
    for mut c in naive.columns_mut() {
        let n2 = c.dot(&c);
        c /= n2;
    }
    let fro = |m: &Array2<f64>| m.iter().map(|v| v * v).sum::<f64>();
    assert!(fro(&wta) < fro(&naive.t().dot(a)));
}

/// The unsupervised DU-IHT loss value is the ℓ0 objective `(1/B) Σ_b ½‖y_b − Ax_b‖² + λ‖x_b‖₀`,
/// checked against the count written out.
#[test]
fn the_iht_loss_counts_the_nonzeros() {
    use hyperprox_core::diff::BatchLoss;
    let pr = small(8, 12);
    let b = sample(&pr, &Signal::default(), 3, 6).unwrap();
    let mut x = b.x.clone() * 0.5;
    x[[0, 1]] = 0.3;
    x[[2, 4]] = 0.0;
    let lam = 0.07;
    let obj = Objective::new(&pr, lam, Penalty::L0);
    let (v, g) = obj.value_grad(x.view(), b.y.view(), b.x.view()).unwrap();
    let r = &b.y - &x.dot(&pr.a.t());
    let nnz = x.iter().filter(|v| **v != 0.0).count() as f64;
    assert!(nnz > 0.0 && nnz < 36.0);
    let want = (0.5 * r.iter().map(|e| e * e).sum::<f64>() + lam * nnz) / 3.0;
    assert!((v - want).abs() < 1e-14 * want, "{v} vs {want}");
    // The gradient is the least-squares part only (the count is piecewise constant).
    let want_g = -r.dot(pr.a.as_ref()) / 3.0;
    assert!((&g - &want_g).iter().all(|e| e.abs() < 1e-14));
}

/// LISTA (W₁, W₂, θ per layer) and LISTA-CPSS (coupled weight with support selection), trained
/// at reduced size (T = 8, N = 100, M = 50, noiseless), reach a lower NMSE than T iterations of
/// ISTA: the orderings of Gregor & LeCun (2010) and Chen et al. (2018).
#[test]
fn lista_and_lista_cpss_beat_ista() {
    let pr = small(50, 100);
    let sig = Signal {
        p: 0.1,
        snr_db: None,
    };
    let test = sample(&pr, &sig, 300, 95).unwrap();
    let t = 8;
    let ist = Curves::of(
        &pr,
        &test,
        &ista(&pr, test.y.view(), 0.1, Penalty::L1, t).unwrap(),
        0.1,
        Penalty::L1,
    );
    for (kind, steps, fin) in [(ModelKind::Lista, 60, 100), (ModelKind::ListaCpss, 60, 100)] {
        let c = evaluate(
            &fit(&pr, kind, t, LossKind::Supervised, sig, steps, fin),
            &pr,
            &test,
        )
        .unwrap();
        eprintln!(
            "{}: NMSE {:.2} dB vs ISTA {:.2} dB",
            kind.as_str(),
            c.nmse_db[t],
            ist.nmse_db[t]
        );
        assert!(c.nmse_db[t] < ist.nmse_db[t] - 5.0, "{}", kind.as_str());
    }
}

/// TISTA with measurement noise (SNR 20 dB): its MMSE shrinkage uses the noise variance σ² in
/// the error estimate; trained at T = 8 it beats ISTA, and the same network told σ² = 0
/// (the noiseless formula) does worse on the noisy data.
#[test]
fn tista_with_noise_beats_ista() {
    let pr = small(50, 100);
    let sig = Signal {
        p: 0.1,
        snr_db: Some(20.0),
    };
    let test = sample(&pr, &sig, 300, 94).unwrap();
    let t = 8;
    let ist = Curves::of(
        &pr,
        &test,
        &ista(&pr, test.y.view(), 0.1, Penalty::L1, t).unwrap(),
        0.1,
        Penalty::L1,
    );
    let model = fit(&pr, ModelKind::Tista, t, LossKind::Supervised, sig, 20, 20);
    let c = evaluate(&model, &pr, &test).unwrap();
    // The trained γ's in a network that ignores the noise.
    let mut spec = model.spec().clone();
    spec.signal = Signal {
        p: 0.1,
        snr_db: None,
    };
    let mut blind = Unfolded::new(spec, &pr).unwrap();
    blind.set_params(model.params().to_vec()).unwrap();
    let cb = evaluate(&blind, &pr, &test).unwrap();
    eprintln!(
        "TISTA noisy: NMSE {:.2} dB, σ² = 0: {:.2} dB, ISTA {:.2} dB",
        c.nmse_db[t], cb.nmse_db[t], ist.nmse_db[t]
    );
    assert!(c.nmse_db[t] < ist.nmse_db[t] - 3.0);
    assert!(c.nmse_db[t] < cb.nmse_db[t]);
}

/// The TISTA layer against the formulas of Ito, Takabe & Wadayama (2019), written out here with
/// Gaussian densities: `r = s + γW(y − As)`, `v² = max((‖y − As‖² − Mσ²)/tr(AᵀA), 10⁻⁹)`,
/// `τ² = v²/N·(N + (γ² − 2γ)M) + γ²σ²tr(WWᵀ)/N` and the Bernoulli–Gaussian MMSE shrinkage
/// `η(r; τ²) = r/ξ · pF(r; ξ) / ((1 − p)F(r; τ²) + pF(r; ξ))`, `ξ = 1 + τ²`, `F(·; s²)` the
/// N(0, s²) density. `W` is any matrix here (the layer does not assume the pseudo-inverse), and
/// one row has `y = As` so that `v²` sits on its floor.
#[test]
fn tista_layer_matches_the_papers_formulas() {
    use rand::{Rng, SeedableRng};
    let (m, n, p, sigma2, gamma) = (6usize, 9usize, 0.3, 0.02, 1.3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let a = Array2::from_shape_fn((m, n), |_| rng.random_range(-0.5..0.5));
    let z = Array2::from_shape_fn((m, n), |_| rng.random_range(-0.5..0.5));
    let s = Array2::from_shape_fn((3, n), |_| rng.random_range(-1.0..1.0));
    let mut y = Array2::from_shape_fn((3, m), |_| rng.random_range(-2.0..2.0));
    y.row_mut(2).assign(&a.dot(&s.row(2)));
    let layer = TistaLayer::new(Arc::new(a.clone()), Arc::new(z.clone()), p, sigma2);
    assert_eq!(
        (
            layer.in_dim(),
            layer.out_dim(),
            layer.ctx_dim(),
            layer.num_params()
        ),
        (n, n, m, 1)
    );
    let ista = ProxGradLayer::new(Arc::new(a.clone()), 0.1, Penalty::L1);
    assert!(layer.name().contains("TISTA") && layer.name() != ista.name());
    let out = layer.forward(&[gamma], s.view(), y.view()).unwrap();
    let pdf = |x: f64, v: f64| (-x * x / (2.0 * v)).exp() / (2.0 * std::f64::consts::PI * v).sqrt();
    let tr_ata: f64 = a.iter().map(|v| v * v).sum();
    let tr_wwt: f64 = z.iter().map(|v| v * v).sum();
    let (mf, nf) = (m as f64, n as f64);
    for b in 0..3 {
        let res = &y.row(b) - &a.dot(&s.row(b));
        let r = &s.row(b) + &(z.t().dot(&res) * gamma);
        let v2 = ((res.dot(&res) - mf * sigma2) / tr_ata).max(1e-9);
        assert_eq!(v2 == 1e-9, b == 2);
        let t2 = v2 / nf * (nf + (gamma * gamma - 2.0 * gamma) * mf)
            + gamma * gamma * sigma2 * tr_wwt / nf;
        let xi = 1.0 + t2;
        for j in 0..n {
            let (on, off) = (p * pdf(r[j], xi), (1.0 - p) * pdf(r[j], t2));
            let want = r[j] / xi * on / (on + off);
            let got = out[[b, j]];
            assert!(
                (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                "row {b}, entry {j}: {got:e} vs {want:e}"
            );
        }
    }
}

/// At an exact tie `|u| = τ` the plain, saving and workspace paths of the ISTA/IHT step agree
/// (value and VJP): with `A = 0` the gradient step is the identity (`u = x` exactly), and with
/// `α = ½`, `λ = 1` the thresholds are `αλ = ½` (ℓ1) and `√(2αλ) = 1` (ℓ0), so entries of `x`
/// can sit on them. The convention is the strict one (`|u| > τ` is kept, ties go to 0, and the
/// VJP treats ties as below the threshold), as in [`hyperprox_core::func::soft_threshold`].
/// The layer also states its shapes and its name.
#[test]
fn threshold_ties_and_shapes_are_the_same_on_every_path() {
    use hyperprox_core::diff::Workspace;
    let (m, n) = (3, 4);
    let a = Arc::new(Array2::<f64>::zeros((m, n)));
    let x = ndarray::array![[1.0, -1.0, 0.5, -0.5], [2.0, 0.25, -2.0, 0.75]];
    let y = Array2::<f64>::zeros((2, m));
    let gbar = ndarray::array![[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 1.5, -2.5]];
    let p = [0.5];
    for (pen, th) in [(Penalty::L1, 0.5), (Penalty::L0, 1.0)] {
        let l = ProxGradLayer::new(a.clone(), 1.0, pen);
        assert_eq!(
            (l.in_dim(), l.out_dim(), l.ctx_dim(), l.num_params()),
            (n, n, m, 1)
        );
        let plain = l.forward(&p, x.view(), y.view()).unwrap();
        let (mut ws, mut out) = (Workspace::default(), Array2::zeros((0, 0)));
        l.forward_ws(&p, x.view(), y.view(), &mut ws, &mut out)
            .unwrap();
        assert_eq!(plain, out, "{pen:?}");
        // The strict convention, entry by entry.
        for (o, &u) in plain.iter().zip(&x) {
            let want = match pen {
                Penalty::L1 if u.abs() > th => u - th * u.signum(),
                Penalty::L0 if u.abs() > th => u,
                _ => 0.0,
            };
            assert_eq!(*o, want, "{pen:?} at u = {u}");
        }
        let mut gp = [0.0];
        let gx = l.vjp(&p, x.view(), y.view(), gbar.view(), &mut gp).unwrap();
        let (mut gp2, mut gx2) = ([0.0], Array2::zeros((0, 0)));
        l.vjp_ws(
            &p,
            x.view(),
            y.view(),
            &mut ws,
            gbar.view(),
            &mut gp2,
            &mut gx2,
        )
        .unwrap();
        assert_eq!((&gx, gp), (&gx2, gp2), "{pen:?}");
        // A = 0: x̄ = ḡ on the kept entries and 0 elsewhere (ties included).
        for ((d, &u), &gb) in gx.iter().zip(&x).zip(&gbar) {
            assert_eq!(
                *d,
                if u.abs() > th { gb } else { 0.0 },
                "{pen:?} at u = {u}"
            );
        }
    }
    // The names that reports print say which step it is.
    assert!(ProxGradLayer::new(a.clone(), 1.0, Penalty::L1)
        .name()
        .starts_with("ISTA"));
    assert!(ProxGradLayer::new(a, 1.0, Penalty::L0)
        .name()
        .starts_with("IHT"));
    // The documented report spellings.
    assert_eq!([Penalty::L1.as_str(), Penalty::L0.as_str()], ["l1", "l0"]);
}

/// The training configuration's documented schedule and checks: incremental training runs
/// stages of depth 1..T with `steps_per_layer` minibatches each, plain training one stage of
/// `T·steps_per_layer`, then `final_steps` at `lr·final_lr_factor`; stages with no minibatch
/// are dropped. `check` rejects a zero batch or validation size (each alone), no minibatch at
/// all, and a learning rate or factor that is 0, negative or not finite, and accepts a run of
/// final steps only.
#[test]
fn training_stages_and_config_checks_follow_their_documentation() {
    let cfg = TrainConfig {
        steps_per_layer: 10,
        final_steps: 5,
        incremental: true,
        lr: 0.01,
        final_lr_factor: 0.1,
        ..Default::default()
    };
    let fine = 0.01 * 0.1;
    assert_eq!(
        cfg.stages(3),
        vec![(1, 10, 0.01), (2, 10, 0.01), (3, 10, 0.01), (3, 5, fine)]
    );
    let plain = TrainConfig {
        incremental: false,
        ..cfg.clone()
    };
    assert_eq!(plain.stages(3), vec![(3, 30, 0.01), (3, 5, fine)]);
    let final_only = TrainConfig {
        steps_per_layer: 0,
        ..cfg.clone()
    };
    assert_eq!(final_only.stages(3), vec![(3, 5, fine)]);
    assert!(final_only.check().is_ok());
    let no_final = TrainConfig {
        final_steps: 0,
        ..plain.clone()
    };
    assert_eq!(no_final.stages(2), vec![(2, 20, 0.01)]);
    assert!(no_final.check().is_ok());
    let bad = [
        TrainConfig {
            batch: 0,
            ..cfg.clone()
        },
        TrainConfig {
            val_size: 0,
            ..cfg.clone()
        },
        TrainConfig {
            steps_per_layer: 0,
            final_steps: 0,
            ..cfg.clone()
        },
        TrainConfig {
            lr: 0.0,
            ..cfg.clone()
        },
        TrainConfig {
            lr: f64::INFINITY,
            ..cfg.clone()
        },
        TrainConfig {
            final_lr_factor: 0.0,
            ..cfg.clone()
        },
        TrainConfig {
            final_lr_factor: f64::NAN,
            ..cfg.clone()
        },
        TrainConfig {
            sgd_momentum: Some(1.0),
            ..cfg.clone()
        },
    ];
    for (i, c) in bad.iter().enumerate() {
        assert!(c.check().is_err(), "case {i} accepted");
    }
    assert!(cfg.check().is_ok());
    // λ = 0 is not a sparse-recovery problem: the model refuses it.
    let pr = small(6, 8);
    let mut s = ModelSpec::new(ModelKind::DuIsta, 3);
    s.lambda = 0.0;
    assert!(Unfolded::new(s, &pr).is_err());
    let m = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 3), &pr).unwrap();
    assert_eq!(m.depth(), 3);
    let name = |p| hyperprox_core::diff::BatchLoss::name(&Objective::new(&pr, 0.1, p));
    assert!(name(Penalty::L1).ends_with("‖x‖_1") && name(Penalty::L0).ends_with("‖x‖_0"));
}

/// The fingerprint of `A` stored in model files is `Σᵢ aᵢ(1 + i mod 7)` (entries in row-major
/// order) rounded to 10⁻⁹, so a model trained on one matrix does not load on another.
#[test]
fn the_problem_checksum_is_the_position_weighted_sum() {
    use hyperprox_unfolded::model::checksum;
    for seed in [1, 2] {
        let pr = Problem::gaussian(5, 9, seed).unwrap();
        let s: f64 =
            pr.a.iter()
                .enumerate()
                .map(|(i, v)| v * (1 + i % 7) as f64)
                .sum();
        let c = checksum(&pr);
        assert!((c - s).abs() <= 5e-10 + 1e-15 * s.abs(), "{c} vs {s}");
        assert_eq!(c, (c * 1e9).round() / 1e9);
    }
    let (p1, p2) = (
        Problem::gaussian(5, 9, 1).unwrap(),
        Problem::gaussian(5, 9, 2).unwrap(),
    );
    let m = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 2), &p1).unwrap();
    let mut j = m.to_json();
    assert!(Unfolded::from_json(&j).is_ok());
    j["problem"]["seed"] = serde_json::json!(2);
    assert_ne!(checksum(&p1), checksum(&p2));
    assert!(Unfolded::from_json(&j).is_err(), "{}", j["problem"]);
}

/// `train` replayed from its documented pieces, bit for bit: the stages of `TrainConfig::stages`,
/// minibatch `k` drawn with `batch_seed(seed, k)`, a fresh optimizer per stage at the stage's
/// rate, one step per minibatch on the loss at the stage's depth, and per stage a record of the
/// mean loss over its last 20 % of minibatches and the validation loss (validation set drawn
/// with `batch_seed(seed, u64::MAX)`). Adam and SGD with momentum, incremental and not, a
/// model with a plain state (DU-ISTA) and one with its own readout (TISTA), supervised and
/// unsupervised.
#[test]
fn training_replays_its_documented_schedule_step_by_step() {
    use hyperprox_core::diff::{batch_seed, Adam, Sgd};
    let pr = small(12, 24);
    let cases = [
        (ModelKind::DuIsta, None, true, LossKind::Supervised),
        (ModelKind::DuIsta, Some(0.8), false, LossKind::Unsupervised),
        (ModelKind::Tista, None, false, LossKind::Supervised),
    ];
    for (kind, sgd, incremental, loss_kind) in cases {
        let cfg = TrainConfig {
            loss: loss_kind,
            steps_per_layer: 7,
            final_steps: 6,
            batch: 8,
            val_size: 10,
            incremental,
            sgd_momentum: sgd,
            lr: 5e-3,
            final_lr_factor: 0.3,
            seed: 4,
            ..Default::default()
        };
        let spec = ModelSpec::new(kind, 3);
        let mut model = Unfolded::new(spec.clone(), &pr).unwrap();
        let mut seen = vec![];
        let st = train(&mut model, &pr, &cfg, None, None, &mut |p| {
            seen.push((p.step, p.total, p.depth, p.loss))
        })
        .unwrap();

        let mut m = Unfolded::new(spec, &pr).unwrap();
        let loss = loss_for(&m, &pr, loss_kind);
        let val = sample(&pr, &cfg.signal, 10, batch_seed(4, u64::MAX)).unwrap();
        let stages: Vec<(usize, usize, f64)> = if incremental {
            vec![(1, 7, 5e-3), (2, 7, 5e-3), (3, 7, 5e-3), (3, 6, 5e-3 * 0.3)]
        } else {
            vec![(3, 21, 5e-3), (3, 6, 5e-3 * 0.3)]
        };
        assert_eq!(cfg.stages(3), stages);
        let total = 27;
        let (mut step, mut progress, mut history) = (0u64, vec![], vec![]);
        for &(depth, steps, lr) in &stages {
            let np = m.params().len();
            let (mut adam, mut sg) = (Adam::new(np, lr).unwrap(), Sgd::new(np, lr, 0.8).unwrap());
            let mut losses = vec![];
            for _ in 0..steps {
                let b = sample(&pr, &cfg.signal, 8, batch_seed(4, step)).unwrap();
                let (lv, g) = loss_and_grad(&m, loss.as_ref(), &b, depth).unwrap();
                match sgd {
                    None => adam.step(m.params_mut(), &g).unwrap(),
                    Some(_) => sg.step(m.params_mut(), &g).unwrap(),
                }
                losses.push(lv);
                step += 1;
                progress.push((step, total, depth, lv));
            }
            let tail = &losses[losses.len() - (steps / 5).max(1)..];
            history.push(hyperprox_unfolded::train::StageRecord {
                depth,
                steps,
                train_loss: tail.iter().sum::<f64>() / tail.len() as f64,
                val_loss: loss_value(&m, loss.as_ref(), &val, depth).unwrap(),
            });
        }
        let what = format!("{kind:?} {sgd:?} incremental {incremental}");
        assert_eq!(seen, progress, "{what}");
        assert_eq!(st.params, m.params(), "{what}");
        assert_eq!(model.params(), m.params(), "{what}");
        assert_eq!(st.history, history, "{what}");
        assert_eq!((st.step, st.stage, st.skipped), (27, stages.len(), 0));
        assert!(
            st.stage_losses.is_empty() && st.adam.2 == 0 && st.adam.0.iter().all(|v| *v == 0.0)
        );
    }
}

/// A minibatch with a non-finite loss is skipped and counted (the parameters do not move), a
/// state that overflows stops training with an error naming the minibatch, and a run stopped
/// in the middle of a stage keeps the optimizer's position there (Adam's step count, SGD's
/// steps in the stage).
#[test]
fn training_skips_non_finite_losses_and_reports_divergence_at_its_minibatch() {
    let pr = small(12, 24);
    let cfg = TrainConfig {
        steps_per_layer: 3,
        final_steps: 2,
        batch: 8,
        val_size: 10,
        ..Default::default()
    };
    // DU-ISTA's steps at 10²⁰⁰: after one layer the state is about 10²⁰⁰ (finite, with a
    // finite gradient) and its squared error overflows; a second layer overflows the state.
    let mut m = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 2), &pr).unwrap();
    m.params_mut().fill(1e200);
    let st = train(&mut m, &pr, &cfg, None, Some(3), &mut |_| {}).unwrap();
    assert_eq!((st.step, st.stage, st.skipped), (3, 1, 3));
    assert_eq!(
        m.params(),
        [1e200, 1e200],
        "skipped minibatches take no step"
    );
    assert!(st.history[0].val_loss.is_infinite());
    let err = train(&mut m, &pr, &cfg, Some(st), None, &mut |_| {}).unwrap_err();
    match err {
        hyperprox_core::error::Error::Diverged {
            method,
            iteration,
            detail,
        } => {
            assert_eq!((method.as_str(), iteration), ("training (2 layers)", 4));
            assert!(detail.contains("lower the learning rate"), "{detail}");
        }
        e => panic!("{e}"),
    }
    // Stopped after 5 minibatches: 2 into the second stage (3 per layer).
    for sgd in [None, Some(0.5)] {
        let cfg = TrainConfig {
            sgd_momentum: sgd,
            ..cfg.clone()
        };
        let mut m = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 2), &pr).unwrap();
        let st = train(&mut m, &pr, &cfg, None, Some(5), &mut |_| {}).unwrap();
        assert_eq!((st.step, st.stage, st.adam.2), (5, 1, 2), "{sgd:?}");
        assert_eq!(st.adam.1.len(), if sgd.is_some() { 0 } else { 2 });
        // A checkpoint whose optimizer state has the wrong length is refused.
        let mut bad = st.clone();
        bad.adam.0.push(0.0);
        let mut m2 = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 2), &pr).unwrap();
        assert!(train(&mut m2, &pr, &cfg, Some(bad), None, &mut |_| {}).is_err());
    }
}

/// Runs `f` on `k` thread ranks, returning every rank's result in rank order.
fn on_ranks<T: Send>(
    k: usize,
    f: impl Fn(&dyn hyperprox_core::comm::Communicator) -> T + Sync,
) -> Vec<T> {
    let comms = hyperprox_core::comm::ThreadComm::group(k);
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .iter()
            .map(|c| {
                let f = &f;
                s.spawn(move || f(c))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn data_parallel_training_gives_the_one_process_parameters() {
    use hyperprox_unfolded::train::train_ranks;
    // DU-ISTA (plain state) and LISTA-CP (own readout path), Adam, supervised and unsupervised;
    // the batch of 25 splits unevenly over 2 and 3 ranks.
    let pr = small(20, 40);
    for (kind, loss) in [
        (ModelKind::DuIsta, LossKind::Supervised),
        (ModelKind::DuIsta, LossKind::Unsupervised),
        (ModelKind::Alista, LossKind::Supervised),
    ] {
        let spec = ModelSpec::new(kind, 3);
        let cfg = TrainConfig {
            steps_per_layer: 15,
            final_steps: 15,
            batch: 25,
            val_size: 20,
            loss,
            ..Default::default()
        };
        let mut serial = Unfolded::new(spec.clone(), &pr).unwrap();
        let st1 = train(&mut serial, &pr, &cfg, None, None, &mut |_| {}).unwrap();
        let norm = st1.params.iter().map(|v| v * v).sum::<f64>().sqrt();
        for k in [2, 3] {
            let out = on_ranks(k, |comm| {
                let mut m = Unfolded::new(spec.clone(), &pr).unwrap();
                train_ranks(comm, &mut m, &pr, &cfg, None, None, &mut |_| {}).unwrap()
            });
            for st in &out {
                let d = st
                    .params
                    .iter()
                    .zip(&st1.params)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt();
                assert!(d <= 1e-10 * norm, "{kind:?} {loss:?} k = {k}: {d:e}");
                assert_eq!(st.params, out[0].params, "ranks disagree");
                assert_eq!(st.history.len(), st1.history.len());
            }
            // A checkpoint of the ranks resumes in one process (and the other way round).
            let mid = on_ranks(k, |comm| {
                let mut m = Unfolded::new(spec.clone(), &pr).unwrap();
                train_ranks(comm, &mut m, &pr, &cfg, None, Some(20), &mut |_| {}).unwrap()
            });
            let mut m = Unfolded::new(spec.clone(), &pr).unwrap();
            let end = train(&mut m, &pr, &cfg, Some(mid[0].clone()), None, &mut |_| {}).unwrap();
            let d = end
                .params
                .iter()
                .zip(&st1.params)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(d <= 1e-10 * norm, "resumed: {d:e}");
        }
    }
    // More ranks than samples in a minibatch: the same error on every rank.
    let cfg = TrainConfig {
        batch: 2,
        val_size: 4,
        steps_per_layer: 2,
        final_steps: 2,
        ..Default::default()
    };
    let out = on_ranks(3, |comm| {
        let mut m = Unfolded::new(ModelSpec::new(ModelKind::DuIsta, 2), &pr).unwrap();
        train_ranks(comm, &mut m, &pr, &cfg, None, None, &mut |_| {})
            .unwrap_err()
            .to_string()
    });
    assert!(out.iter().all(|e| e.contains("at most 2 ranks")), "{out:?}");
}
