//! Hyperparameters as the STN code keeps them: an unconstrained value `u` (what the
//! hypernetwork reads), a map to the hyperparameter's range, and a perturbation scale
//! `σ = softplus(s)`.
//!
//! * Perturbation (training steps): `ũ = u + σ ⊙ ε`, `ε ~ N(0, I)`, one draw per example (or
//!   per minibatch where the hyperparameter acts on the whole batch, e.g. a weight decay:
//!   pomonam/Self-Tuning-Networks issue #2).
//! * Entropy of the perturbation: `H = Σᵢ ln(σᵢ √(2πe))`; the hyper step minimizes
//!   `L_V − τH`, so `τ > 0` keeps the scales from collapsing.
//! * Ranges: `(lo, hi)` by a stretched sigmoid (dropout rates), `(0, ∞)` by `exp` (penalty
//!   weights in log scale) or softplus, integers `lo..=hi` by flooring the stretched sigmoid
//!   over `[lo, hi + 1)` (the code's cutout length and holes: the hypernetwork sees the
//!   continuous `u`, the training pipeline the integer).

use hyperprox_core::error::{Error, Result};
use hyperprox_core::linalg::{log1pexp, sigmoid};
use ndarray::Array2;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// The map from the unconstrained value to the hyperparameter's range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Range {
    /// `lo + (hi − lo)·sigmoid(u)`.
    Sigmoid {
        /// Lower end.
        lo: f64,
        /// Upper end.
        hi: f64,
    },
    /// `e^u`.
    Exp,
    /// `softplus(u) = ln(1 + e^u)`.
    Softplus,
    /// `⌊lo + (hi + 1 − lo)·sigmoid(u)⌋`, clamped to `hi`.
    Integer {
        /// Smallest value.
        lo: i64,
        /// Largest value.
        hi: i64,
    },
}

impl Range {
    /// The hyperparameter's value at `u`.
    pub fn map(&self, u: f64) -> f64 {
        match *self {
            Range::Sigmoid { lo, hi } => lo + (hi - lo) * sigmoid(u),
            Range::Exp => u.exp(),
            Range::Softplus => log1pexp(u),
            Range::Integer { lo, hi } => {
                let v = lo as f64 + (hi + 1 - lo) as f64 * sigmoid(u);
                v.floor().min(hi as f64)
            }
        }
    }

    /// The unconstrained value of `v` (for an integer range, the middle of its interval).
    /// `Err` outside the open range.
    pub fn inverse(&self, v: f64) -> Result<f64> {
        let bad = |what: String| Error::param("hyperparameter value", v, what);
        match *self {
            Range::Sigmoid { lo, hi } => {
                if !(v > lo && v < hi) {
                    return Err(bad(format!("must lie strictly between {lo} and {hi}")));
                }
                let t = (v - lo) / (hi - lo);
                Ok((t / (1.0 - t)).ln())
            }
            Range::Exp => {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(bad("must be positive".into()));
                }
                Ok(v.ln())
            }
            Range::Softplus => {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(bad("must be positive".into()));
                }
                Ok(softplus_inv(v))
            }
            Range::Integer { lo, hi } => {
                if !(v >= lo as f64 && v <= hi as f64 && v.fract() == 0.0) {
                    return Err(bad(format!("must be an integer in {lo}..={hi}")));
                }
                let t = (v + 0.5 - lo as f64) / (hi + 1 - lo) as f64;
                Ok((t / (1.0 - t)).ln())
            }
        }
    }

    /// `v` moved into the open range by a margin of 1e-9 of its width (0 and `hi` become
    /// usable fixed values, e.g. for a grid), integers and positive values unchanged otherwise.
    pub fn clamp_open(&self, v: f64) -> f64 {
        match *self {
            Range::Sigmoid { lo, hi } => {
                let m = 1e-9 * (hi - lo);
                v.clamp(lo + m, hi - m)
            }
            Range::Exp | Range::Softplus => v.max(1e-300),
            Range::Integer { .. } => v,
        }
    }

    fn check(&self) -> Result<()> {
        match *self {
            Range::Sigmoid { lo, hi } if !(lo < hi && lo.is_finite() && hi.is_finite()) => Err(
                Error::param("range", format!("({lo}, {hi})"), "needs finite lo < hi"),
            ),
            Range::Integer { lo, hi } if lo > hi => Err(Error::param(
                "range",
                format!("{lo}..={hi}"),
                "needs lo ≤ hi",
            )),
            _ => Ok(()),
        }
    }
}

/// `ln(e^σ − 1)`, the inverse of softplus, stable for small and large `σ > 0`.
pub fn softplus_inv(sigma: f64) -> f64 {
    sigma + (-(-sigma).exp_m1()).ln()
}

/// One tuned hyperparameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// Name for reports.
    pub name: String,
    /// Range map.
    pub range: Range,
    /// Unconstrained value.
    pub u: f64,
    /// Raw perturbation scale: `σ = softplus(s)`.
    pub s: f64,
}

impl Hyper {
    /// A hyperparameter at `value` with perturbation scale `scale` (in the unconstrained
    /// space). `Err` on a value outside the range or a scale that is not positive.
    pub fn new(name: impl Into<String>, range: Range, value: f64, scale: f64) -> Result<Self> {
        range.check()?;
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(Error::param(
                "perturbation scale",
                scale,
                "must be positive (e.g. 0.5)",
            ));
        }
        Ok(Self {
            name: name.into(),
            range,
            u: range.inverse(value)?,
            s: softplus_inv(scale),
        })
    }

    /// The hyperparameter's value.
    pub fn value(&self) -> f64 {
        self.range.map(self.u)
    }

    /// The perturbation scale `σ = softplus(s)`.
    pub fn sigma(&self) -> f64 {
        log1pexp(self.s)
    }
}

/// The tuned hyperparameters, in the order of the hypernetwork's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HyperSet {
    /// The hyperparameters.
    pub hypers: Vec<Hyper>,
}

impl HyperSet {
    /// `Err` on an empty list.
    pub fn new(hypers: Vec<Hyper>) -> Result<Self> {
        if hypers.is_empty() {
            return Err(Error::param("hyperparameters", 0, "tune at least one"));
        }
        Ok(Self { hypers })
    }

    /// Number of hyperparameters.
    pub fn len(&self) -> usize {
        self.hypers.len()
    }

    /// Always `false` (a set holds at least one).
    pub fn is_empty(&self) -> bool {
        self.hypers.is_empty()
    }

    /// The unconstrained values `u`.
    pub fn unconstrained(&self) -> Vec<f64> {
        self.hypers.iter().map(|h| h.u).collect()
    }

    /// `rows` copies of `u` (the validation step's context: no perturbation).
    pub fn repeated(&self, rows: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, self.len()), |(_, j)| self.hypers[j].u)
    }

    /// `(ũ, ε)`: `rows` perturbed rows `ũ = u + σ ⊙ ε`, one draw `ε ~ N(0, I)` per row, and the
    /// draws.
    pub fn perturbed(&self, rows: usize, rng: &mut impl Rng) -> (Array2<f64>, Array2<f64>) {
        let eps =
            Array2::from_shape_simple_fn((rows, self.len()), || StandardNormal.sample(&mut *rng));
        let mut ut = eps.clone();
        for mut r in ut.rows_mut() {
            for (j, v) in r.iter_mut().enumerate() {
                *v = self.hypers[j].u + self.hypers[j].sigma() * *v;
            }
        }
        (ut, eps)
    }

    /// The entropy `H = Σᵢ ln(σᵢ √(2πe))` of the perturbation.
    pub fn entropy(&self) -> f64 {
        let c = 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln();
        self.hypers.iter().map(|h| h.sigma().ln() + c).sum()
    }

    /// `∂H/∂sᵢ = sigmoid(sᵢ)/σᵢ`.
    pub fn entropy_grad(&self) -> Vec<f64> {
        self.hypers
            .iter()
            .map(|h| sigmoid(h.s) / h.sigma())
            .collect()
    }

    /// The values in their ranges.
    pub fn values(&self) -> Vec<f64> {
        self.hypers.iter().map(|h| h.value()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_invert_and_validate() {
        for (r, v) in [
            (Range::Sigmoid { lo: 0.0, hi: 0.95 }, 0.05),
            (Range::Exp, 3e-3),
            (Range::Softplus, 0.2),
            (Range::Integer { lo: 0, hi: 4 }, 1.0),
            (Range::Integer { lo: 0, hi: 4 }, 4.0),
        ] {
            let u = r.inverse(v).unwrap();
            assert!((r.map(u) - v).abs() < 1e-12, "{r:?} {v}");
        }
        assert!(Range::Sigmoid { lo: 0.0, hi: 0.95 }.inverse(0.95).is_err());
        assert!(Range::Exp.inverse(0.0).is_err());
        assert!(Range::Integer { lo: 0, hi: 4 }.inverse(1.5).is_err());
        assert!(Hyper::new("p", Range::Sigmoid { lo: 1.0, hi: 0.0 }, 0.5, 1.0).is_err());
        assert!(Hyper::new("p", Range::Exp, 1.0, 0.0).is_err());
        assert!((softplus_inv(log1pexp(0.3)) - 0.3).abs() < 1e-12);
        assert!((softplus_inv(log1pexp(-20.0)) + 20.0).abs() < 1e-9);
    }

    #[test]
    fn entropy_gradient_matches_finite_differences() {
        let mut set = HyperSet::new(vec![
            Hyper::new("a", Range::Exp, 1.0, 0.5).unwrap(),
            Hyper::new("b", Range::Softplus, 1.0, 2.0).unwrap(),
        ])
        .unwrap();
        let g = set.entropy_grad();
        for (i, gi) in g.iter().enumerate() {
            let h = 1e-6;
            set.hypers[i].s += h;
            let p = set.entropy();
            set.hypers[i].s -= 2.0 * h;
            let m = set.entropy();
            set.hypers[i].s += h;
            assert!(((p - m) / (2.0 * h) - gi).abs() < 1e-8);
        }
        // A Gaussian of standard deviation 1 has entropy ½ ln(2πe) ≈ 1.4189.
        let one = HyperSet::new(vec![Hyper::new("c", Range::Exp, 1.0, 1.0).unwrap()]).unwrap();
        assert!((one.entropy() - 1.418_938_533_204_672_7).abs() < 1e-12);
    }
}
