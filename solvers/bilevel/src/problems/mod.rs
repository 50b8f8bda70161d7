//! The bilevel problems of the MAID paper.

mod foe;
mod logreg;
mod quadratic;
mod ridge;
mod tv;

pub use crate::composed::c3_isotropic;
pub use foe::FieldOfExperts;
pub use logreg::MultinomialLogistic;
pub use quadratic::QuadraticProblem;
pub use ridge::RidgeProblem;
pub use tv::{TvDenoising, TvModel};
