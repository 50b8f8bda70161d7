//! The quadratic test problem of the MAID paper (§4.1), with closed-form `θ*`.
//!
//! `A₁, A₂, A₃ ~ U[0,1]^{n×m}`, `x₁, x₂, θₑ ~ U[0,1]^m`, `b₁ = A₁x₁ + 0.01·N(0, I)`,
//! `b₂ = A₂x₂ + A₃θₑ + 0.01·N(0, I)` (paper: `n = 1000`, `m = 10`, seed 29; our RNG differs
//! from PyTorch's, so the draw differs):
//!
//! ```text
//! h(x, θ) = ½‖A₂x + A₃θ − b₂‖²,     g(x) = ½‖A₁x − b₁‖².
//! ```
//!
//! `H = A₂ᵀA₂`, `J = A₂ᵀA₃` are constant, so `L_J = L_{H⁻¹} = 0`, and `μ`, `L` (extreme
//! eigenvalues of `A₂ᵀA₂`), `L_g = ‖A₁ᵀA₁‖` and `‖J‖` are computed exactly: the error bound is
//! certified. With `M = A₁(A₂ᵀA₂)⁻¹A₂ᵀA₃` and `d = A₁(A₂ᵀA₂)⁻¹A₂ᵀb₂ − b₁`,
//! `f(θ) = ½‖Mθ − d‖²` and `θ* = (MᵀM)⁻¹Mᵀd`.

use crate::problem::{BilevelProblem, Constant, Constants};
use hyperprox_core::error::Result;
use hyperprox_core::linalg::{cholesky_solve_in_place, Real};
use ndarray::{Array1, Array2, ArrayView1, ArrayViewMut1};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// The quadratic bilevel problem (see the module docs).
#[derive(Clone, Debug)]
pub struct QuadraticProblem {
    a1: Array2<f64>,
    b1: Array1<f64>,
    a2: Array2<f64>,
    a3: Array2<f64>,
    b2: Array1<f64>,
    h2: Array2<f64>,
    h1: Array2<f64>,
    a1tb1: Array1<f64>,
    a2ta3: Array2<f64>,
    a2tb2: Array1<f64>,
    x2: Array1<f64>,
    mu: f64,
    l: f64,
    l_g: f64,
    j_norm: f64,
    m_mat: Array2<f64>,
    d: Array1<f64>,
    theta_star: Array1<f64>,
    f_star: f64,
    l_f: f64,
    theta0: Array1<f64>,
}

fn sym_eig_extremes(a: &Array2<f64>) -> Result<(f64, f64)> {
    let (_, s, _) = f64::thin_svd(a.view())?;
    let max = s.iter().cloned().fold(0.0, f64::max);
    let min = s.iter().cloned().fold(f64::INFINITY, f64::min);
    Ok((min, max))
}

/// `A⁻¹B` for SPD `A` by Cholesky.
fn spd_solve(a: &Array2<f64>, b: &Array2<f64>) -> Result<Array2<f64>> {
    let l = f64::cholesky_lower(a.view())?;
    let mut out = b.clone();
    for mut col in out.columns_mut() {
        cholesky_solve_in_place(l.view(), col.view_mut());
    }
    Ok(out)
}

impl QuadraticProblem {
    /// A random instance with `n` rows and `m` unknowns (`x, θ ∈ ℝᵐ`), seeded, drawn as in the
    /// paper (`A₁, A₂, A₃ ~ U[0,1]`). These instances are ill-conditioned: `κ(MᵀM)` was
    /// 1e5–4e8 in three draws at `n = 1000`, `m = 10`, so gradient methods converge slowly.
    pub fn new(n: usize, m: usize, seed: u64) -> Result<Self> {
        Self::build(n, m, seed, false)
    }

    /// A well-conditioned instance of the same form: `A₁, A₂ ~ N(0, 1)` and `A₃ = A₂`, so
    /// `M = A₁` and `κ(MᵀM) = κ(A₁ᵀA₁)` (≈ 1.5 for `n = 1000`, `m = 10`). Used where a
    /// convergence *rate* is tested.
    pub fn well_conditioned(n: usize, m: usize, seed: u64) -> Result<Self> {
        Self::build(n, m, seed, true)
    }

    fn build(n: usize, m: usize, seed: u64, gaussian: bool) -> Result<Self> {
        if n < m || m == 0 {
            return Err(hyperprox_core::error::Error::param(
                "n, m",
                format!("{n}, {m}"),
                "need n ≥ m ≥ 1 (the paper uses n = 1000, m = 10)",
            ));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut draw = |r: usize, c: usize, normal: bool| {
            Array2::from_shape_fn((r, c), |_| {
                if normal {
                    StandardNormal.sample(&mut rng)
                } else {
                    rng.random::<f64>()
                }
            })
        };
        let a1 = draw(n, m, gaussian);
        let a2 = draw(n, m, gaussian);
        let a3 = if gaussian {
            a2.clone()
        } else {
            draw(n, m, false)
        };
        let mut unif = |r: usize, c: usize| draw(r, c, false);
        let x1 = unif(m, 1).column(0).to_owned();
        let x2 = unif(m, 1).column(0).to_owned();
        let te = unif(m, 1).column(0).to_owned();
        let noise = |rng: &mut rand::rngs::StdRng| {
            Array1::from_shape_fn(n, |_| {
                let e: f64 = StandardNormal.sample(rng);
                0.01 * e
            })
        };
        let b1 = a1.dot(&x1) + noise(&mut rng);
        let b2 = a2.dot(&x2) + a3.dot(&te) + noise(&mut rng);
        let h2 = a2.t().dot(&a2);
        let h1 = a1.t().dot(&a1);
        let a2ta3 = a2.t().dot(&a3);
        let a2tb2 = a2.t().dot(&b2);
        let a1tb1 = a1.t().dot(&b1);
        let (mu, l) = sym_eig_extremes(&h2)?;
        let (_, l_g) = sym_eig_extremes(&h1)?;
        let (_, s, _) = f64::thin_svd(a2ta3.view())?;
        let j_norm = s.iter().cloned().fold(0.0, f64::max);
        // M = A1 H2⁻¹ A2ᵀA3, d = A1 H2⁻¹ A2ᵀb2 − b1.
        let m_mat = a1.dot(&spd_solve(&h2, &a2ta3)?);
        let rhs = a2tb2.clone().insert_axis(ndarray::Axis(1));
        let d = a1.dot(&spd_solve(&h2, &rhs)?.column(0)) - &b1;
        let mtm = m_mat.t().dot(&m_mat);
        let mtd = m_mat.t().dot(&d).insert_axis(ndarray::Axis(1));
        let theta_star = spd_solve(&mtm, &mtd)?.column(0).to_owned();
        let (_, l_f) = sym_eig_extremes(&mtm)?;
        let r = m_mat.dot(&theta_star) - &d;
        let f_star = 0.5 * r.dot(&r);
        Ok(Self {
            a1,
            b1,
            a2,
            a3,
            b2,
            h2,
            h1,
            a1tb1,
            a2ta3,
            a2tb2,
            x2,
            mu,
            l,
            l_g,
            j_norm,
            m_mat,
            d,
            theta_star,
            f_star,
            l_f,
            theta0: Array1::ones(m),
        })
    }

    /// The paper's size: `n = 1000`, `m = 10`.
    pub fn paper(seed: u64) -> Result<Self> {
        Self::new(1000, 10, seed)
    }

    /// Exact `f(θ) = ½‖Mθ − d‖²`.
    pub fn f_exact(&self, theta: ArrayView1<'_, f64>) -> f64 {
        let r = self.m_mat.dot(&theta) - &self.d;
        0.5 * r.dot(&r)
    }

    /// Exact `∇f(θ) = Mᵀ(Mθ − d)`.
    pub fn grad_exact(&self, theta: ArrayView1<'_, f64>) -> Array1<f64> {
        self.m_mat.t().dot(&(self.m_mat.dot(&theta) - &self.d))
    }

    /// Exact lower-level solution `x̂(θ) = H⁻¹(A₂ᵀb₂ − A₂ᵀA₃θ)`.
    pub fn x_hat(&self, theta: ArrayView1<'_, f64>) -> Result<Array1<f64>> {
        let rhs = (&self.a2tb2 - &self.a2ta3.dot(&theta)).insert_axis(ndarray::Axis(1));
        Ok(spd_solve(&self.h2, &rhs)?.column(0).to_owned())
    }

    /// `θ*`.
    pub fn theta_star(&self) -> &Array1<f64> {
        &self.theta_star
    }

    /// `f(θ*)`.
    pub fn f_star(&self) -> f64 {
        self.f_star
    }

    /// Lipschitz constant of `∇f` (`‖MᵀM‖`).
    pub fn lipschitz_f(&self) -> f64 {
        self.l_f
    }

    /// The start `θ₀ = 1` as a view.
    pub fn theta_start_view(&self) -> ArrayView1<'_, f64> {
        self.theta0.view()
    }

    /// Rescales the start `θ₀`.
    pub fn with_theta_start(mut self, theta0: Array1<f64>) -> Self {
        self.theta0 = theta0;
        self
    }
}

impl BilevelProblem for QuadraticProblem {
    fn name(&self) -> &str {
        "quadratic"
    }
    fn dim_x(&self) -> usize {
        self.h2.nrows()
    }
    fn dim_theta(&self) -> usize {
        self.a3.ncols()
    }
    fn x_start(&self) -> Array1<f64> {
        self.x2.clone()
    }
    fn theta_start(&self) -> Array1<f64> {
        self.theta0.clone()
    }
    fn lower_value(&self, x: ArrayView1<'_, f64>, theta: ArrayView1<'_, f64>) -> Result<f64> {
        let r = self.a2.dot(&x) + self.a3.dot(&theta) - &self.b2;
        Ok(0.5 * r.dot(&r))
    }
    fn lower_grad_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
        theta: ArrayView1<'_, f64>,
    ) -> Result<()> {
        out.assign(&(self.h2.dot(&x) + self.a2ta3.dot(&theta) - &self.a2tb2));
        Ok(())
    }
    fn lower_hvp_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        _x: ArrayView1<'_, f64>,
        _theta: ArrayView1<'_, f64>,
        v: ArrayView1<'_, f64>,
    ) -> Result<()> {
        out.assign(&self.h2.dot(&v));
        Ok(())
    }
    fn cross_jt_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        _x: ArrayView1<'_, f64>,
        _theta: ArrayView1<'_, f64>,
        q: ArrayView1<'_, f64>,
    ) -> Result<()> {
        out.assign(&self.a2ta3.t().dot(&q));
        Ok(())
    }
    fn upper_value(&self, x: ArrayView1<'_, f64>) -> Result<f64> {
        let r = self.a1.dot(&x) - &self.b1;
        Ok(0.5 * r.dot(&r))
    }
    fn upper_grad_into(
        &self,
        mut out: ArrayViewMut1<'_, f64>,
        x: ArrayView1<'_, f64>,
    ) -> Result<()> {
        out.assign(&(self.h1.dot(&x) - &self.a1tb1));
        Ok(())
    }
    /// Convex: `g = ½‖A₁x − b₁‖²`.
    fn upper_convex(&self) -> bool {
        true
    }
    fn constants(&self, _x: ArrayView1<'_, f64>, _theta: ArrayView1<'_, f64>) -> Result<Constants> {
        Ok(Constants {
            mu: self.mu,
            lipschitz: self.l,
            l_g: self.l_g,
            j_norm: Constant::Known(self.j_norm),
            l_j: Constant::Known(0.0),
            l_hinv: Constant::Known(0.0),
        })
    }
}
