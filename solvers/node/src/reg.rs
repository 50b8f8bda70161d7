//! The regularizers of the solver's heuristics and their weight schedules.
//!
//! | kind | per accepted step | default aggregate | reference |
//! |---|---|---|---|
//! | [`Kind::Error`] (ERNODE) | `EEst·h` | mean | `mnist_node.jl` of RegNeuralDE.jl |
//! | [`Kind::Stiffness`] (SRNODE) | `ρ/3.5068` | max | same |
//!
//! The **local** variants (Pal, Edelman, Rackauckas 2023) regularize one extra Tsit5 step at a
//! time drawn uniformly in the span (seeded per training iteration), from the dense-output
//! state there, with the size of the accepted step containing that time
//! ([`crate::tsit5::local_step`]).

use crate::tsit5::{Aggregate, Heuristic, RegTerm};
use hyperprox_core::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which heuristic, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// No regularization.
    None,
    /// The local error estimate (ERNODE).
    Error,
    /// The stiffness estimate (SRNODE).
    Stiffness,
}

impl Kind {
    /// By command-line name: `none`, `error`, `stiffness`.
    pub fn by_name(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "error" => Ok(Self::Error),
            "stiffness" => Ok(Self::Stiffness),
            other => Err(Error::param(
                "reg",
                other,
                "expected none, error or stiffness",
            )),
        }
    }

    fn heuristic(self) -> Option<Heuristic> {
        match self {
            Self::None => None,
            Self::Error => Some(Heuristic::Error),
            Self::Stiffness => Some(Heuristic::Stiffness),
        }
    }
}

/// A weight as a function of the training iteration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// The same weight throughout.
    Constant {
        /// The weight.
        weight: f64,
    },
    /// `from·(to/from)^{k/(K−1)}` at iteration `k` of `K`: exponential decay (ERNODE's MNIST
    /// run: 100 → 10).
    Exponential {
        /// First weight.
        from: f64,
        /// Last weight.
        to: f64,
        /// Iterations `K`.
        iters: u64,
    },
}

impl Schedule {
    /// The weight at iteration `k`.
    pub fn at(&self, k: u64) -> f64 {
        match *self {
            Self::Constant { weight } => weight,
            Self::Exponential { from, to, iters } => {
                let f = (k.min(iters.saturating_sub(1)) as f64)
                    / (iters.saturating_sub(1).max(1) as f64);
                from * (to / from).powf(f)
            }
        }
    }

    fn check(&self) -> Result<()> {
        let ok = |w: f64| w >= 0.0 && w.is_finite();
        match *self {
            Self::Constant { weight } if ok(weight) => Ok(()),
            Self::Exponential { from, to, iters }
                if from > 0.0 && to > 0.0 && ok(from) && ok(to) && iters > 0 =>
            {
                Ok(())
            }
            s => Err(Error::param(
                "regularization weight",
                format!("{s:?}"),
                "weights must be finite and ≥ 0 (> 0 for a decay)",
            )),
        }
    }
}

/// A regularizer: the heuristic, global or local, its aggregate over steps and its weight.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regularizer {
    /// The heuristic.
    pub kind: Kind,
    /// One random step (local) instead of every accepted step (global).
    pub local: bool,
    /// Aggregate over the accepted steps (global only).
    pub aggregate: Aggregate,
    /// Weight per iteration.
    pub weight: Schedule,
}

impl Regularizer {
    /// None.
    pub fn none() -> Self {
        Self {
            kind: Kind::None,
            local: false,
            aggregate: Aggregate::Mean,
            weight: Schedule::Constant { weight: 0.0 },
        }
    }

    /// `kind` with the reference code's aggregate (mean for the error, max for the
    /// stiffness) and a constant `weight`.
    pub fn new(kind: Kind, local: bool, weight: f64) -> Self {
        let aggregate = match kind {
            Kind::Stiffness => Aggregate::Max,
            _ => Aggregate::Mean,
        };
        Self {
            kind,
            local,
            aggregate,
            weight: Schedule::Constant { weight },
        }
    }

    /// `Err` on a negative or non-finite weight.
    pub fn check(&self) -> Result<()> {
        self.weight.check()
    }

    /// The heuristic, if any.
    pub fn heuristic(&self) -> Option<Heuristic> {
        self.kind.heuristic()
    }

    /// The global term at iteration `k` (none for the local variants or `Kind::None`).
    pub fn global_term(&self, k: u64) -> Option<RegTerm> {
        match (self.kind.heuristic(), self.local) {
            (Some(heuristic), false) => Some(RegTerm {
                heuristic,
                aggregate: self.aggregate,
                weight: self.weight.at(k),
            }),
            _ => None,
        }
    }

    /// A short name for reports: `none`, `error`, `stiffness`, `error-local`, ….
    pub fn label(&self) -> String {
        let base = match self.kind {
            Kind::None => return "none".into(),
            Kind::Error => "error",
            Kind::Stiffness => "stiffness",
        };
        if self.local {
            format!("{base}-local")
        } else {
            base.into()
        }
    }
}
