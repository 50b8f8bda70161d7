//! The unrolled DU-ISTA gradient against reverse-mode automatic differentiation (`echidna`),
//! an oracle independent of the hand-written VJPs.

use hyperprox_unfolded::train::{loss_and_grad, loss_for, LossKind};
use hyperprox_unfolded::*;
use num_traits::Float;

#[test]
fn du_ista_unsupervised_gradient_matches_reverse_mode_ad() {
    let (m, n, t, lam) = (5, 8, 3, 0.05);
    let pr = Problem::gaussian(m, n, 4).unwrap();
    let sig = Signal {
        p: 0.3,
        snr_db: Some(30.0),
    };
    let batch = sample(&pr, &sig, 3, 6).unwrap();
    let mut model = Unfolded::new(
        ModelSpec {
            lambda: lam,
            ..ModelSpec::new(ModelKind::DuIsta, t)
        },
        &pr,
    )
    .unwrap();
    let alphas = vec![0.31, 0.22, 0.4];
    model.set_params(alphas.clone()).unwrap();
    for kind in [LossKind::Unsupervised, LossKind::Supervised] {
        let loss = loss_for(&model, &pr, kind);
        let (_, g) = loss_and_grad(&model, loss.as_ref(), &batch, t).unwrap();
        let a = pr.a.clone();
        let (ys, xs) = (batch.y.clone(), batch.x.clone());
        let g_ad = echidna::grad(
            |al| {
                let zero = al[0] * 0.0;
                let mut total = zero;
                for b in 0..3 {
                    let mut x = vec![zero; n];
                    for alpha in al.iter().take(t) {
                        let r: Vec<_> = (0..m)
                            .map(|i| {
                                let mut s = zero + ys[[b, i]];
                                for j in 0..n {
                                    s -= x[j] * a[[i, j]];
                                }
                                s
                            })
                            .collect();
                        x = (0..n)
                            .map(|j| {
                                let mut u = x[j];
                                for i in 0..m {
                                    u += *alpha * r[i] * a[[i, j]];
                                }
                                let th = *alpha * lam;
                                if u.abs() > th {
                                    u - th * u.signum()
                                } else {
                                    zero
                                }
                            })
                            .collect();
                    }
                    total += match kind {
                        LossKind::Supervised => (0..n)
                            .map(|j| (x[j] - xs[[b, j]]).powi(2))
                            .fold(zero, |s, v| s + v),
                        LossKind::Unsupervised => {
                            let mut v = zero;
                            for i in 0..m {
                                let mut s = zero + ys[[b, i]];
                                for j in 0..n {
                                    s -= x[j] * a[[i, j]];
                                }
                                v += s * s * 0.5;
                            }
                            v + x.iter().fold(zero, |s, xv| s + xv.abs() * lam)
                        }
                    };
                }
                total / 3.0
            },
            &alphas,
        );
        assert!(g_ad.iter().all(|v| v.abs() > 1e-4), "{g_ad:?}");
        for (x, y) in g.iter().zip(&g_ad) {
            assert!(
                (x - y).abs() < 1e-10 * (1.0 + y.abs()),
                "{kind:?}: {x} vs {y}"
            );
        }
    }
}
