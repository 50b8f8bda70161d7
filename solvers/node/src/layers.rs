//! Small elementwise blocks for right-hand sides.

use hyperprox_core::diff::Differentiable;
use hyperprox_core::error::Result;
use hyperprox_core::linalg::check_len;
use hyperprox_core::nn::Layer;
use ndarray::{Array2, ArrayView2, Zip};

/// `u ↦ u³` elementwise (no parameters): the input map of the spiral model
/// (`Dense(tanh) ∘ Dense ∘ u³`, as in DiffEqFlux's neural ODE example).
#[derive(Clone, Copy, Debug)]
pub struct Cube {
    n: usize,
}

impl Cube {
    /// On `n` features.
    pub fn new(n: usize) -> Self {
        Self { n }
    }
}

impl Differentiable<f64> for Cube {
    fn name(&self) -> String {
        format!("cube ({})", self.n)
    }
    fn in_dim(&self) -> usize {
        self.n
    }
    fn out_dim(&self) -> usize {
        self.n
    }
    fn num_params(&self) -> usize {
        0
    }
    fn forward(
        &self,
        _p: &[f64],
        x: ArrayView2<'_, f64>,
        _c: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        check_len("cube", "input width", self.n, x.ncols())?;
        Ok(x.mapv(|v| v * v * v))
    }
    fn vjp(
        &self,
        _p: &[f64],
        x: ArrayView2<'_, f64>,
        _c: ArrayView2<'_, f64>,
        g: ArrayView2<'_, f64>,
        _gp: &mut [f64],
    ) -> Result<Array2<f64>> {
        check_len("cube", "input width", self.n, x.ncols())?;
        check_len("cube", "gradient width", self.n, g.ncols())?;
        let mut out = g.to_owned();
        Zip::from(&mut out)
            .and(x)
            .for_each(|o, &v| *o *= 3.0 * v * v);
        Ok(out)
    }
    fn jvp(
        &self,
        p: &[f64],
        x: ArrayView2<'_, f64>,
        c: ArrayView2<'_, f64>,
        v: ArrayView2<'_, f64>,
    ) -> Result<Array2<f64>> {
        self.vjp(p, x, c, v, &mut [])
    }
}

impl Layer<f64> for Cube {}
