//! # hyperprox-unfolded
//!
//! Deep unfolding for sparse recovery `y = A x + v`: the iterations of ISTA and IHT, run for a
//! fixed number of layers T with learned parameters, and the LISTA family.
//!
//! - [`data`]: the synthetic Bernoulli–Gaussian setting (N = 500, M = 250, p = 0.1, 40 dB).
//! - [`layers`]: the DU-ISTA/DU-IHT layer and the TISTA layer (explicit VJPs).
//! - [`model`]: DU-ISTA, DU-IHT, LISTA, LISTA-CP, LISTA-CPSS, ALISTA and TISTA behind
//!   [`UnfoldedModel`]; the other layers are compositions of the core blocks in
//!   [`hyperprox_core::diff`].
//! - [`train`]: supervised (`‖x_T − x‖²`) and unsupervised (the original objective at `x_T`)
//!   training on fresh minibatches, incremental (layer-wise) stages, validation,
//!   checkpoint/resume; evaluation per layer.
//! - [`baselines`]: ISTA, FISTA and IHT per iteration and the LASSO optimum (FISTA to a
//!   duality gap).
//!
//! A new unfolded algorithm is either a [`hyperprox_core::diff::Chain`] of core blocks or one
//! new [`hyperprox_core::diff::Differentiable`] layer; `examples/unfolded_fista.rs` learns the
//! momentum of FISTA that way.

pub mod baselines;
pub mod data;
pub mod experiments;
pub mod images;
pub mod layers;
pub mod model;
pub mod train;

pub use data::{nmse_db, sample, Batch, Problem, Signal};
pub use layers::{Penalty, ProxGradLayer, TistaLayer};
pub use model::{Composed, ModelKind, ModelSpec, Unfolded, UnfoldedModel};
pub use train::{
    evaluate, train_on, BatchSource, LossKind, Objective, SparseSource, TrainConfig, TrainState,
};
