//! Data-parallel bilevel learning (crate::sharded) on thread ranks (`ThreadComm`): the sharded
//! runs must give the one-process results, a failing rank must stop every rank with its
//! error, and a checkpoint must resume on another number of ranks.

use hyperprox_bilevel::experiments::{
    noisy_images, run_outer_checkpointed, tune_foe, tune_foe_on, tune_tv, tune_tv_on,
    Checkpointing, OuterMethod, OuterSettings, OuterState, TvData, TvSpec,
};
use hyperprox_bilevel::sharded::Sharded;
use hyperprox_bilevel::{BilevelProblem, Constant, Estimates, Oracle, TvDenoising};
use hyperprox_core::comm::{Communicator, ThreadComm};
use hyperprox_core::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use std::path::PathBuf;
use std::sync::Arc;

fn kodak96() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/kodak/gray96")
}

/// Runs `f` on `k` thread ranks and returns every rank's result (rank order).
fn on_ranks<T: Send>(k: usize, f: impl Fn(Arc<dyn Communicator>) -> T + Sync) -> Vec<T> {
    let comms: Vec<Arc<dyn Communicator>> = ThreadComm::group(k)
        .into_iter()
        .map(|c| Arc::new(c) as Arc<dyn Communicator>)
        .collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .map(|c| {
                let f = &f;
                s.spawn(move || f(c))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn rel(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    let d = (a - b).mapv(|v| v * v).sum().sqrt();
    d / b.mapv(|v| v * v).sum().sqrt().max(1e-300)
}

fn tv_data(images: usize, size: usize) -> TvData {
    let (clean, noisy) = noisy_images(&kodak96(), 0, images, size, 0.1, 19).unwrap();
    TvData {
        train: (clean, noisy),
        validation: None,
        sigma: Some(0.1),
    }
}

fn settings(iters: usize) -> OuterSettings {
    OuterSettings {
        max_iters: iters,
        ..OuterSettings::default()
    }
}

/// The shard of `k` ranks' rank `r` as a [`TvDenoising`] with the whole `1/N`.
fn tv_shard(clean: &[Array2<f64>], noisy: &[Array2<f64>], comm: &dyn Communicator) -> TvDenoising {
    let range = hyperprox_bilevel::experiments::shard_range(clean, comm).unwrap();
    TvDenoising::new(&clean[range.clone()], &noisy[range])
        .unwrap()
        .with_normalization(clean.len())
        .unwrap()
}

#[test]
fn sharded_tv_products_constants_and_hypergradient_match_the_whole_problem() {
    let data = tv_data(5, 16);
    let (clean, noisy) = &data.train;
    let whole = TvDenoising::new(clean, noisy).unwrap();
    let theta = ndarray::array![-3.0, -2.5];
    let x = whole.noisy().mapv(|v| 0.9 * v + 0.05);
    let cw = whole.constants(x.view(), theta.view()).unwrap();
    let hw = Oracle::new(&whole)
        .hypergradient(
            theta.view(),
            x.view(),
            1e-6,
            1e-6,
            &mut Estimates::default(),
        )
        .unwrap();
    for k in [2, 3] {
        let out = on_ranks(k, |comm| {
            let local = tv_shard(clean, noisy, comm.as_ref());
            let sp = Sharded::new(local, Arc::clone(&comm)).unwrap();
            let xl = sp.block(x.view()).unwrap();
            let c = sp.constants(xl.view(), theta.view()).unwrap();
            let lv = sp.lower_value(xl.view(), theta.view()).unwrap();
            let hg = Oracle::new(&sp)
                .hypergradient(
                    theta.view(),
                    xl.view(),
                    1e-6,
                    1e-6,
                    &mut Estimates::default(),
                )
                .unwrap();
            let xg = sp.gather(hg.x.view()).unwrap();
            (c, lv, hg, xg)
        });
        let lw = whole.lower_value(x.view(), theta.view()).unwrap();
        for (c, lv, hg, xg) in &out {
            // μ, L, L_g, L_J, L_{H⁻¹} are sample independent: the same bits; ‖J‖ from the
            // summed Gram matrices, to rounding.
            assert_eq!((c.mu, c.lipschitz, c.l_g), (cw.mu, cw.lipschitz, cw.l_g));
            assert_eq!((c.l_j, c.l_hinv), (cw.l_j, cw.l_hinv));
            let (Constant::Known(a), Constant::Known(b)) = (c.j_norm, cw.j_norm) else {
                panic!("‖J‖ unknown")
            };
            assert!((a - b).abs() <= 1e-12 * b, "‖J‖ {a} vs {b}");
            assert!((lv - lw).abs() <= 1e-12 * lw.abs());
            assert!(rel(&hg.z, &hw.z) < 1e-10, "k = {k}: z {} vs {}", hg.z, hw.z);
            assert!(rel(xg, &hw.x) < 1e-10);
            assert!((hg.omega - hw.omega).abs() <= 1e-9 * hw.omega);
            assert!((hg.upper - hw.upper).abs() <= 1e-12 * hw.upper);
            assert!(hg.certified);
        }
        // Every rank holds the same bits.
        for (c, lv, hg, _) in &out[1..] {
            assert_eq!(hg.z, out[0].2.z);
            assert_eq!(hg.omega.to_bits(), out[0].2.omega.to_bits());
            assert_eq!((c.mu, *lv), (out[0].0.mu, out[0].1));
        }
    }
}

#[test]
fn tune_tv_on_two_and_three_ranks_learns_the_one_process_theta() {
    // The test case: 4 images 32², 10 MAID iterations.
    let data = tv_data(4, 32);
    let spec = TvSpec::default();
    let o = settings(10);
    let serial = tune_tv(&data, &spec, &o, |_| true, None).unwrap();
    let t1 = Array1::from(serial.report.outer.theta.clone());
    assert_eq!(serial.report.outer.iterations_outer, 10);
    for k in [2, 3] {
        let out = on_ranks(k, |comm| {
            tune_tv_on(&comm, &data, &spec, &o, |_| true, None).unwrap()
        });
        for t in &out {
            let tk = Array1::from(t.report.outer.theta.clone());
            assert!(rel(&tk, &t1) < 1e-10, "k = {k}: θ {tk} vs {t1}");
            assert_eq!(t.report.outer.iterations_outer, 10);
            let (a, b) = (
                t.report.train.psnr_denoised,
                serial.report.train.psnr_denoised,
            );
            assert!((a - b).abs() < 1e-8, "PSNR {a} vs {b}");
            assert_eq!(t.report.outer.theta, out[0].report.outer.theta);
        }
    }
}

#[test]
fn tune_foe_on_two_ranks_matches_one_process_with_estimated_constants() {
    // ‖J‖ and L_J are estimated online (learned filters): the random perturbation of the
    // estimates must be the whole problem's.
    let (clean, noisy) = noisy_images(&kodak96(), 0, 3, 12, 0.1, 31).unwrap();
    let o = settings(4);
    let pairs = (clean, noisy);
    let serial = tune_foe(&pairs, (2, 3, 5), 0.1, &o, |_| true, None).unwrap();
    let out = on_ranks(2, |comm| {
        tune_foe_on(&comm, &pairs, (2, 3, 5), 0.1, &o, |_| true, None).unwrap()
    });
    let t1 = Array1::from(serial.report.outer.theta.clone());
    for t in &out {
        assert!(rel(&Array1::from(t.report.outer.theta.clone()), &t1) < 1e-10);
        assert!((t.report.psnr_denoised - serial.report.psnr_denoised).abs() < 1e-8);
    }
}

/// A TV shard whose gradient fails on one rank from its `after`-th call.
struct Failing {
    inner: TvDenoising,
    fail: bool,
    after: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl BilevelProblem for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn dim_x(&self) -> usize {
        self.inner.dim_x()
    }
    fn dim_theta(&self) -> usize {
        self.inner.dim_theta()
    }
    fn x_start(&self) -> Array1<f64> {
        self.inner.x_start()
    }
    fn theta_start(&self) -> Array1<f64> {
        self.inner.theta_start()
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, t: ArrayView1<'_, f64>) -> Result<f64> {
        self.inner.lower_value(x, t)
    }
    fn lower_grad_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        t: ArrayView1<'_, f64>,
    ) -> Result<()> {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.fail && n >= self.after {
            return Err(Error::param("pixel", n, "this rank's data went bad"));
        }
        self.inner.lower_grad_into(out, x, t)
    }
    fn lower_hvp_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        t: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        self.inner.lower_hvp_into(out, x, t, v)
    }
    fn cross_jt_into(
        &self,
        out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        t: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()> {
        self.inner.cross_jt_into(out, x, t, q)
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        self.inner.upper_value(x)
    }
    fn upper_grad_into(&self, out: ArrayViewMut1<'_, f64>, x: ArrayView1<'_, f64>) -> Result<()> {
        self.inner.upper_grad_into(out, x)
    }
    fn upper_convex(&self) -> bool {
        true
    }
    fn constants(
        &self,
        x: ArrayView1<'_, f64>,
        t: ArrayView1<'_, f64>,
    ) -> Result<hyperprox_bilevel::Constants> {
        self.inner.constants(x, t)
    }
}

#[test]
fn a_rank_failing_mid_run_stops_every_rank_with_its_error() {
    let data = tv_data(4, 16);
    let (clean, noisy) = &data.train;
    let o = settings(10);
    let out = on_ranks(3, |comm| {
        let p = Failing {
            inner: tv_shard(clean, noisy, comm.as_ref()),
            fail: comm.rank() == 1,
            after: 200,
            calls: Default::default(),
        };
        let sp = Sharded::new(p, Arc::clone(&comm)).unwrap();
        let mut saves = 0usize;
        let mut save = |_: &OuterState| -> Result<()> {
            saves += 1;
            Ok(())
        };
        let ck = Checkpointing {
            resume: None,
            save: &mut save,
        };
        let r = run_outer_checkpointed(&sp, &o, |_| true, Some(ck));
        (r.map(|_| ()), saves)
    });
    let saves0 = out[0].1;
    assert!(
        saves0 >= 1,
        "the failure came before the first outer iteration"
    );
    for (r, saves) in &out {
        let e = r.as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("rank 1 of 3 failed: invalid parameter pixel")
                && e.contains("this rank's data went bad"),
            "{e}"
        );
        assert_eq!(*saves, saves0, "the ranks stopped at different iterations");
    }
}

#[test]
fn a_failed_checkpoint_write_on_rank_0_stops_every_rank() {
    let data = tv_data(4, 16);
    let (clean, noisy) = &data.train;
    let o = settings(10);
    let out = on_ranks(2, |comm| {
        let sp = Sharded::new(tv_shard(clean, noisy, comm.as_ref()), Arc::clone(&comm)).unwrap();
        let rank = comm.rank();
        let mut n = 0;
        let mut save = |_: &OuterState| -> Result<()> {
            n += 1;
            if rank == 0 && n == 3 {
                return Err(Error::Io {
                    path: "out/checkpoint.json".into(),
                    source: std::io::Error::other("disk full"),
                });
            }
            Ok(())
        };
        let ck = Checkpointing {
            resume: None,
            save: &mut save,
        };
        run_outer_checkpointed(&sp, &o, |_| true, Some(ck)).map(|r| r.theta)
    });
    for r in &out {
        let e = r.as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("rank 0 of 2 failed: I/O error on out/checkpoint.json: disk full"),
            "{e}"
        );
    }
}

#[test]
fn a_checkpoint_of_two_ranks_resumes_on_three_and_on_one() {
    let data = tv_data(4, 16);
    let (clean, noisy) = &data.train;
    let spec = TvSpec::default();
    let whole = spec.problem(clean, noisy).unwrap();
    for method in [OuterMethod::Maid, OuterMethod::HoagGeometric] {
        let o10 = OuterSettings {
            method,
            ..settings(10)
        };
        let full = run_outer_checkpointed(&whole, &o10, |_| true, None).unwrap();
        // 4 iterations on 2 ranks, keeping the last state (whole vectors).
        let o4 = OuterSettings {
            method,
            ..settings(4)
        };
        let states = on_ranks(2, |comm| {
            let sp =
                Sharded::new(tv_shard(clean, noisy, comm.as_ref()), Arc::clone(&comm)).unwrap();
            let mut last = None;
            let mut save = |s: &OuterState| -> Result<()> {
                last = Some(s.clone());
                Ok(())
            };
            let ck = Checkpointing {
                resume: None,
                save: &mut save,
            };
            run_outer_checkpointed(&sp, &o4, |_| true, Some(ck)).unwrap();
            last.unwrap()
        });
        let state = states[0].clone();
        if let OuterState::Maid(s) = &state {
            assert_eq!(
                s.x.len(),
                whole.dim_x(),
                "the checkpoint must hold the whole x"
            );
        }
        // Resume on 3 ranks and on one process.
        let on3 = on_ranks(3, |comm| {
            let sp =
                Sharded::new(tv_shard(clean, noisy, comm.as_ref()), Arc::clone(&comm)).unwrap();
            let mut save = |_: &OuterState| -> Result<()> { Ok(()) };
            let ck = Checkpointing {
                resume: Some(state.clone()),
                save: &mut save,
            };
            run_outer_checkpointed(&sp, &o10, |_| true, Some(ck))
                .unwrap()
                .theta
        });
        let mut save = |_: &OuterState| -> Result<()> { Ok(()) };
        let ck = Checkpointing {
            resume: Some(state.clone()),
            save: &mut save,
        };
        let on1 = run_outer_checkpointed(&whole, &o10, |_| true, Some(ck))
            .unwrap()
            .theta;
        for t in on3.iter().chain([&on1]) {
            assert!(
                rel(t, &full.theta) < 1e-10,
                "{method:?}: {t} vs {}",
                full.theta
            );
        }
    }
}
