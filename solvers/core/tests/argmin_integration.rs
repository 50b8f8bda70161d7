//! The solvers under argmin's `Executor`: same answers as `run`, observers see every iteration,
//! and checkpointing resumes a run exactly where it stopped.

use argmin::core::checkpointing::{Checkpoint, CheckpointingFrequency};
use argmin::core::observers::{Observe, ObserverMode};
use argmin::core::{Executor, IterState, State, TerminationReason, KV};
use hyperprox_core::prelude::*;
use hyperprox_core::solve::{ArgminSolver, Iterative};
use hyperprox_core::testing::random_point;
use ndarray::Array1;
use std::sync::{Arc, Mutex};

type St = IterState<Array1<f64>, (), (), (), (), f64>;

fn problem() -> (
    &'static LeastSquares<f64, DenseMatrix<f64>>,
    &'static NormL1<f64>,
) {
    let a = DenseMatrix::<f64>::gaussian(30, 12, 1).unwrap();
    let f = Box::leak(Box::new(
        LeastSquares::new(a, random_point::<f64>(30, 1.0, 2)).unwrap(),
    ));
    let g = Box::leak(Box::new(NormL1::new(0.5).unwrap()));
    (f, g)
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(u64, f64, f64)>>>);

impl Observe<St> for Recorder {
    fn observe_iter(&mut self, state: &St, kv: &KV) -> Result<(), argmin::core::Error> {
        let cert: f64 = kv
            .get("certificate")
            .and_then(|v| v.get_float())
            .unwrap_or(f64::NAN);
        self.0
            .lock()
            .unwrap()
            .push((state.get_iter(), state.get_cost(), cert));
        Ok(())
    }
}

#[test]
fn fista_under_executor_matches_run_and_reports_every_iteration() {
    let (f, g) = problem();
    let fista = Fista::new(f, g, FistaParams::default().with_tol(1e-10));
    let direct = fista.run(Array1::zeros(12).view(), NoObserver).unwrap();
    let rec = Recorder::default();
    let res = Executor::new((), ArgminSolver::new(&fista))
        .configure(|s| s.param(Array1::zeros(12)).max_iters(100_000))
        .add_observer(rec.clone(), ObserverMode::Always)
        .run()
        .unwrap();
    let st = res.state();
    assert_eq!(
        st.get_termination_reason(),
        Some(&TerminationReason::SolverConverged)
    );
    let x = st.get_param().unwrap();
    assert!((x - &direct.x).iter().all(|e| e.abs() < 1e-14));
    assert_eq!(st.get_iter() as usize, direct.iterations);
    let log = rec.0.lock().unwrap();
    assert_eq!(log.len(), direct.iterations);
    assert!(log.last().unwrap().2 <= 1e-10);
}

#[test]
fn pdhg_admm_dr_and_cd_run_under_executor() {
    let (f, g) = problem();
    let a = f.operator();
    let quad = Translate::new(SqrNormL2::new(1.0).unwrap(), f.data().to_owned()).unwrap();
    let pdhg = Pdhg::new(g, &quad, a, PdhgParams::default().with_tol(1e-9));
    let res = Executor::new((), ArgminSolver::new(&pdhg))
        .configure(|s| s.param(Array1::zeros(12)).max_iters(100_000))
        .run()
        .unwrap();
    assert_eq!(
        res.state().get_termination_reason(),
        Some(&TerminationReason::SolverConverged)
    );
    let x_pdhg = res.state().get_param().unwrap().clone();

    let admm = Admm::dense(
        a,
        f.data().to_owned(),
        g,
        AdmmParams::default().with_tol(1e-11),
    )
    .unwrap();
    let res = Executor::new((), ArgminSolver::new(&admm))
        .configure(|s| s.param(Array1::zeros(12)).max_iters(100_000))
        .run()
        .unwrap();
    assert_eq!(
        res.state().get_termination_reason(),
        Some(&TerminationReason::SolverConverged)
    );
    let x_admm = res.state().get_param().unwrap().clone();

    let prob = LassoProblem::new(
        a.matrix().to_owned(),
        f.data().to_owned(),
        0.5 / 30.0,
        LassoPenalty::L1 { weights: None },
    )
    .unwrap();
    let cd =
        CoordinateDescent::new(&prob, CoordinateDescentParams::default().with_tol(1e-13)).unwrap();
    let res = Executor::new((), ArgminSolver::new(&cd))
        .configure(|s| s.param(Array1::zeros(12)).max_iters(100_000))
        .run()
        .unwrap();
    let x_cd = res.state().get_param().unwrap().clone();
    assert!((&x_admm - &x_cd).iter().all(|e| e.abs() < 1e-8));

    let dr =
        DouglasRachford::new(f, g, AdmmParams::default().with_rho(0.5).with_tol(1e-11)).unwrap();
    let res = Executor::new((), ArgminSolver::new(&dr))
        .configure(|s| s.param(Array1::zeros(12)).max_iters(100_000))
        .run()
        .unwrap();
    assert_eq!(
        res.state().get_termination_reason(),
        Some(&TerminationReason::SolverConverged)
    );
    assert!((res.state().get_param().unwrap() - &x_cd)
        .iter()
        .all(|e| e.abs() < 1e-8));

    let labels: Array1<f64> = f.data().mapv(|v| if v > 0.0 { 1.0 } else { -1.0 });
    let lp = LogisticL1Problem::new(a.matrix().to_owned(), labels.clone(), 0.02).unwrap();
    let lcd = LogisticCd::new(&lp, CoordinateDescentParams::default().with_tol(1e-10)).unwrap();
    let direct = lcd.run(Array1::zeros(12).view(), NoObserver).unwrap();
    let res = Executor::new((), ArgminSolver::new(&lcd))
        .configure(|s| s.param(Array1::zeros(12)).max_iters(100_000))
        .run()
        .unwrap();
    assert_eq!(
        res.state().get_termination_reason(),
        Some(&TerminationReason::SolverConverged)
    );
    assert!((res.state().get_param().unwrap() - &direct.x)
        .iter()
        .all(|e| e.abs() < 1e-7));
    assert!((&x_pdhg - &x_cd).iter().all(|e| e.abs() < 1e-4));
}

/// In-memory checkpoint (argmin's `FileCheckpoint` needs serde; the mechanism is the same).
#[derive(Clone)]
struct Memory<S>(Arc<Mutex<Option<(S, St)>>>, u64);

impl<S: Clone> Checkpoint<S, St> for Memory<S> {
    fn save(&self, solver: &S, state: &St) -> Result<(), argmin::core::Error> {
        *self.0.lock().unwrap() = Some((solver.clone(), state.clone()));
        Ok(())
    }
    fn load(&self) -> Result<Option<(S, St)>, argmin::core::Error> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn frequency(&self) -> CheckpointingFrequency {
        CheckpointingFrequency::Every(self.1)
    }
}

#[test]
fn checkpointed_run_resumes_exactly() {
    let (f, g) = problem();
    let fista: &'static Fista<'static, f64, _, _> = Box::leak(Box::new(Fista::new(
        f,
        g,
        FistaParams::default().with_tol(1e-12),
    )));
    let full = Executor::new((), ArgminSolver::new(fista))
        .configure(|s| s.param(Array1::zeros(12)).max_iters(100_000))
        .run()
        .unwrap();
    let n_full = full.state().get_iter();
    assert!(n_full > 30);

    // First leg: "killed" by an observer error at iteration 25, checkpointing every 10.
    struct Kill;
    impl Observe<St> for Kill {
        fn observe_iter(&mut self, state: &St, _kv: &KV) -> Result<(), argmin::core::Error> {
            if state.get_iter() >= 25 {
                return Err(argmin::core::Error::msg("simulated crash"));
            }
            Ok(())
        }
    }
    let store = Memory(Arc::new(Mutex::new(None)), 10);
    let crashed = Executor::new((), ArgminSolver::new(fista))
        .configure(|s| s.param(Array1::zeros(12)).max_iters(100_000))
        .add_observer(Kill, ObserverMode::Always)
        .checkpointing(store.clone())
        .run();
    assert!(crashed.is_err());
    let (solver, state) = store.0.lock().unwrap().clone().unwrap();
    assert_eq!(state.get_iter(), 20);
    assert_eq!(solver.inner_state().unwrap().iter, 20);
    // Second leg: a new executor loads the checkpoint and continues.
    let resumed = Executor::new((), ArgminSolver::new(fista))
        .configure(|s| s.param(Array1::from_elem(12, 99.0)).max_iters(100_000))
        .checkpointing(store)
        .run()
        .unwrap();
    assert_eq!(resumed.state().get_iter(), n_full);
    let (a, b) = (
        resumed.state().get_param().unwrap(),
        full.state().get_param().unwrap(),
    );
    assert!(
        (a - b).iter().all(|e| e.abs() == 0.0),
        "a resumed run must continue exactly"
    );
    let _ = fista.tolerance();
}
