//! Every solver of this module as an argmin [`Solver`](argmin::core::Solver), so it runs under
//! argmin's `Executor` with its observers, iteration limits, timers and checkpointing.
//!
//! ```
//! use argmin::core::{Executor, State};
//! use hyperprox_core::prelude::*;
//! use hyperprox_core::solve::ArgminSolver;
//! use ndarray::array;
//! let f = LeastSquares::new(DenseMatrix::<f64>::new(array![[1.0, 0.0], [0.0, 2.0]]).unwrap(), array![1.0, 1.0]).unwrap();
//! let g = NormL1::new(0.1).unwrap();
//! let fista = Fista::new(&f, &g, FistaParams::default().with_tol(1e-10));
//! let res = Executor::new((), ArgminSolver::new(&fista))
//!     .configure(|s| s.param(array![0.0, 0.0]).max_iters(1000))
//!     .run()
//!     .unwrap();
//! let x = res.state().get_best_param().unwrap();
//! assert!((x[0] - 0.9).abs() < 1e-8);
//! ```

use super::{
    Admm, AdmmState, CoordinateDescent, CoordinateDescentState, DouglasRachford,
    DouglasRachfordState, Fista, FistaState, IterInfo, Iterative, LogisticCd, LogisticCdState,
};
use crate::backend::{ProxOn, SmoothOn};
use crate::error::Result;
use crate::func::Prox;
use crate::linalg::{Real, Vector};
use argmin::core::{
    ArgminFloat, IterState, Problem, Solver, TerminationReason, TerminationStatus, KV,
};
use ndarray::Array1;

/// `Iterative` for a solver with `init(x0)`, `step(&mut state)` and `params().tol`, whose
/// estimate is the state field `$field`.
macro_rules! iterative_via_init_step {
    ($name:literal, $field:ident, $state:ident, [$($gen:tt)*], $ty:ty) => {
        impl<$($gen)*> Iterative<T> for $ty {
            type State = $state<T>;
            fn name(&self) -> &'static str {
                $name
            }
            fn start(&self, x0: &Array1<T>) -> Result<Self::State> {
                self.init(x0.view())
            }
            fn advance(&self, s: &mut Self::State) -> Result<IterInfo<T>> {
                self.step(s)
            }
            fn estimate<'s>(&self, s: &'s Self::State) -> &'s Array1<T> {
                &s.$field
            }
            fn tolerance(&self) -> T {
                self.params().tol
            }
            fn max_iters(&self) -> usize {
                self.params().max_iters
            }
        }
    };
}

impl<T, V, F, G> Iterative<T, V> for Fista<'_, T, F, G, V>
where
    T: Real,
    V: Vector<T>,
    F: SmoothOn<T, V> + ?Sized,
    G: ProxOn<T, V> + ?Sized,
{
    type State = FistaState<T, V>;
    fn name(&self) -> &'static str {
        "FISTA"
    }
    fn start(&self, x0: &V) -> Result<Self::State> {
        self.init_on(x0)
    }
    fn advance(&self, s: &mut Self::State) -> Result<IterInfo<T>> {
        self.step(s)
    }
    fn estimate<'s>(&self, s: &'s Self::State) -> &'s V {
        &s.x
    }
    fn tolerance(&self) -> T {
        self.params().tol
    }
    fn max_iters(&self) -> usize {
        self.params().max_iters
    }
}
iterative_via_init_step!("ADMM", z, AdmmState, [T: Real, G: Prox<T> + ?Sized], Admm<'_, T, G>);
// For Douglas–Rachford the argmin parameter is the start `z0` of the governing sequence.
iterative_via_init_step!("Douglas-Rachford", x, DouglasRachfordState, [T: Real, F: Prox<T> + ?Sized, G: Prox<T> + ?Sized], DouglasRachford<'_, T, F, G>);

/// Coordinate descent (Lasso-type and logistic) under argmin: one argmin iteration is
/// `check_every` epochs and a gap check (see [`Epochs`](super::cd::Epochs)).
macro_rules! iterative_via_epochs {
    ($ty:ty, $state:ident) => {
        impl<T: Real> Iterative<T> for $ty {
            type State = $state<T>;
            fn name(&self) -> &'static str {
                "coordinate descent"
            }
            fn start(&self, x0: &Array1<T>) -> Result<Self::State> {
                super::cd::Epochs(self).start(x0)
            }
            fn advance(&self, s: &mut Self::State) -> Result<IterInfo<T>> {
                super::cd::Epochs(self).advance(s)
            }
            fn estimate<'s>(&self, s: &'s Self::State) -> &'s Array1<T> {
                &s.x
            }
            fn tolerance(&self) -> T {
                self.params().tol
            }
            fn max_iters(&self) -> usize {
                self.params().max_epochs
            }
        }
    };
}

iterative_via_epochs!(CoordinateDescent<'_, T>, CoordinateDescentState);
iterative_via_epochs!(LogisticCd<'_, T>, LogisticCdState);

/// Adapter running an [`Iterative`] solver under argmin's `Executor`. The argmin state's
/// parameter is the iterate (`Array1<T>`), its cost the objective; the certificate is reported
/// in the key-value store (`certificate`) and the run terminates with `SolverConverged` once
/// it is `≤ tol`. The adapter is `Clone` (solver reference + state), which is all argmin's
/// checkpointing needs.
pub struct ArgminSolver<'s, T: Real, S: Iterative<T>> {
    solver: &'s S,
    state: Option<S::State>,
    last: Option<IterInfo<T>>,
}

impl<'s, T: Real, S: Iterative<T>> Clone for ArgminSolver<'s, T, S> {
    fn clone(&self) -> Self {
        Self {
            solver: self.solver,
            state: self.state.clone(),
            last: self.last,
        }
    }
}

impl<'s, T: Real, S: Iterative<T>> ArgminSolver<'s, T, S> {
    /// Wraps a solver.
    pub fn new(solver: &'s S) -> Self {
        Self {
            solver,
            state: None,
            last: None,
        }
    }
    /// The inner solver state (after or during a run).
    pub fn inner_state(&self) -> Option<&S::State> {
        self.state.as_ref()
    }
}

type State<T> = IterState<Array1<T>, (), (), (), (), T>;

impl<'s, O, T: Real + ArgminFloat, S: Iterative<T>> Solver<O, State<T>> for ArgminSolver<'s, T, S> {
    fn name(&self) -> &str {
        self.solver.name()
    }

    fn init(
        &mut self,
        _problem: &mut Problem<O>,
        mut state: State<T>,
    ) -> std::result::Result<(State<T>, Option<KV>), argmin::core::Error> {
        if self.state.is_none() {
            let x0 = state.take_param().ok_or_else(|| {
                argmin::core::Error::msg(
                    "no initial point: configure the executor with state.param(x0)",
                )
            })?;
            self.state = Some(self.solver.start(&x0)?);
        }
        let x = self
            .solver
            .estimate(self.state.as_ref().expect("initialized"))
            .clone();
        Ok((state.param(x), None))
    }

    fn next_iter(
        &mut self,
        _problem: &mut Problem<O>,
        state: State<T>,
    ) -> std::result::Result<(State<T>, Option<KV>), argmin::core::Error> {
        let s = self.state.as_mut().expect("initialized");
        let info = self.solver.advance(s)?;
        self.last = Some(info);
        let x = self.solver.estimate(s).clone();
        let kv = argmin::kv!(
            "certificate" => info.certificate.as_f64();
            "certificate_kind" => info.kind.name();
        );
        Ok((state.param(x).cost(info.objective), Some(kv)))
    }

    /// The method's own stopping rule ([`Iterative::stop`]): convergence, relative
    /// tolerances, work budgets and stalls hold under the `Executor` as in [`drive`](super::drive).
    fn terminate(&mut self, _state: &State<T>) -> TerminationStatus {
        use super::TerminationReason as Why;
        let (Some(s), Some(info)) = (self.state.as_ref(), self.last.as_ref()) else {
            return TerminationStatus::NotTerminated;
        };
        match self.solver.stop(s, info) {
            None => TerminationStatus::NotTerminated,
            Some(Why::Converged) => {
                TerminationStatus::Terminated(TerminationReason::SolverConverged)
            }
            Some(Why::MaxIters) => {
                TerminationStatus::Terminated(TerminationReason::MaxItersReached)
            }
            Some(why) => TerminationStatus::Terminated(TerminationReason::SolverExit(format!(
                "{}: {why:?}",
                self.solver.name()
            ))),
        }
    }
}
