//! The benchmark cases of the core (the bench report of `hyperprox bench` and
//! `benches/solvers.rs` measure the same problems) and the bench report's line format.
//!
//! * **Lasso**: Gaussian `A ∈ ℝ^{500×2000}` with unit-norm columns, a 5 %-sparse Gaussian
//!   ground truth, noise `0.01·N(0, 1)`, `λ = 0.1·λ_max`, objective `½/n‖Ax − b‖² + λ‖x‖₁`,
//!   stopped at an absolute duality gap of `1e-8` (the setting of the classical-solvers issue).
//! * **ROF**: Kodak image 23 (shipped, 256²; the 512² case tiles it with its mirror images),
//!   Gaussian noise `σ = 0.1`, `λ = 0.1`, stopped at a certified relative objective error of
//!   `1e-4` (duality gap `≤ 1e-4·(P − gap)`).

use crate::error::{Error, Result};
use crate::io::shipped_data_dir;
use crate::prelude::*;
use ndarray::{s, Array1, Array2};
use rand::seq::index::sample;
use rand::SeedableRng;
use std::time::Instant;

fn seeded_normal(n: usize, seed: u64) -> Array1<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    crate::linalg::randn(n, &mut rng)
}

/// The Lasso case (seeded).
pub fn lasso_case(seed: u64) -> Result<LassoProblem<f64>> {
    let (n, p) = (500, 2000);
    let a = DenseMatrix::<f64>::gaussian(n, p, seed)?.normalize_columns();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 1);
    let support = sample(&mut rng, p, p / 20).into_vec();
    let vals = seeded_normal(support.len(), seed + 2);
    let mut x = Array1::zeros(p);
    for (k, &j) in support.iter().enumerate() {
        x[j] = vals[k];
    }
    let b = &a.apply(x.view())? + &seeded_normal(n, seed + 3).mapv(|v| 0.01 * v);
    let pen = LassoPenalty::L1 { weights: None };
    let am = a.matrix().to_owned();
    let lmax = LassoProblem::lambda_max(am.view(), b.view(), &pen)?;
    LassoProblem::new(am, b, 0.1 * lmax, pen)
}

/// The ROF case: (noisy image, clean image), row-major, for `size ∈ {256, 512}` (seeded noise).
pub fn rof_case(size: usize, seed: u64) -> Result<(Array2<f64>, Array2<f64>)> {
    let path = shipped_data_dir().join("kodak/gray256/kodim23.png");
    let im = crate::io::read_png_gray(&path)?;
    let clean = match size {
        256 => im,
        512 => {
            let mut big = Array2::zeros((512, 512));
            big.slice_mut(s![..256, ..256]).assign(&im);
            big.slice_mut(s![..256, 256..])
                .assign(&im.slice(s![.., ..;-1]));
            big.slice_mut(s![256.., ..256])
                .assign(&im.slice(s![..;-1, ..]));
            big.slice_mut(s![256.., 256..])
                .assign(&im.slice(s![..;-1, ..;-1]));
            big
        }
        _ => {
            return Err(Error::param(
                "size",
                size,
                "the ROF bench case exists for 256 and 512",
            ));
        }
    };
    let noise = seeded_normal(size * size, seed)
        .into_shape_with_order((size, size))
        .expect("shape");
    Ok((&clean + &noise.mapv(|v| 0.1 * v), clean))
}

/// One line of the bench report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchLine {
    /// The case.
    pub case: String,
    /// The solver.
    pub solver: String,
    /// Wall-clock seconds.
    pub time_s: f64,
    /// Iterations (or work units).
    pub iterations: usize,
    /// `time_s / iterations`.
    pub time_per_iter_s: f64,
    /// Objective (or error) reached.
    pub objective: f64,
    /// The certificate reached.
    pub certificate: f64,
    /// What the certificate is.
    pub certificate_kind: String,
    /// Estimated bytes moved per iteration.
    pub bytes_per_iter_estimate: f64,
    /// Estimated memory throughput.
    pub gbytes_per_s_estimate: f64,
}

impl BenchLine {
    /// A line with the case, solver, time, iterations and `(objective, certificate)`.
    pub fn new(
        case: &str,
        solver: &str,
        time_s: f64,
        iterations: usize,
        values: (f64, f64),
    ) -> Self {
        Self {
            case: case.into(),
            solver: solver.into(),
            time_s,
            iterations,
            time_per_iter_s: time_s / iterations.max(1) as f64,
            objective: values.0,
            certificate: values.1,
            certificate_kind: String::new(),
            bytes_per_iter_estimate: f64::NAN,
            gbytes_per_s_estimate: f64::NAN,
        }
    }

    /// Sets the certificate's kind and the estimated bytes per iteration.
    pub fn with(mut self, kind: &str, bytes_per_iter: f64) -> Self {
        self.certificate_kind = kind.into();
        self.bytes_per_iter_estimate = bytes_per_iter;
        self.gbytes_per_s_estimate = bytes_per_iter * self.iterations as f64 / self.time_s / 1e9;
        self
    }
}

/// Where the bench report goes: one JSON value per case and solver.
pub type BenchSink<'a> = dyn FnMut(serde_json::Value) + 'a;

/// Sends a line to the sink.
pub fn emit(sink: &mut BenchSink<'_>, line: BenchLine) {
    sink(serde_json::to_value(line).unwrap_or_default());
}

/// Runs `f` and returns its result with the seconds it took.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let r = f()?;
    Ok((r, t.elapsed().as_secs_f64()))
}

/// The Lasso case with coordinate descent, FISTA and ADMM (gap 1e-8).
pub fn bench_lasso(sink: &mut BenchSink<'_>) -> Result<()> {
    use crate::experiments::{lasso_admm, lasso_fista};
    let prob = lasso_case(0)?;
    let (n, p) = (prob.n_samples(), prob.n_features());
    let mat = (n * p * 8) as f64;
    let (s, dt) = timed(|| {
        let params = CoordinateDescentParams::default().with_tol(1e-8);
        CoordinateDescent::new(&prob, params)?.run(Array1::zeros(p).view(), NoObserver)
    })?;
    // An epoch reads the active columns once (gap checks every 5 epochs read A twice more).
    let active = s.state.active.len() as f64 / p as f64;
    let line = BenchLine::new(LASSO, "cd", dt, s.iterations, (s.objective, s.certificate));
    emit(sink, line.with("duality_gap", mat * (active + 0.4)));
    let (s, dt) = timed(|| lasso_fista(&prob, 1e-8, FistaParams::<f64>::default().max_iters))?;
    // Gradient (A and Aᵀ) and objective (A) each iteration, the gap (A, Aᵀ) every 10th.
    let line = BenchLine::new(
        LASSO,
        "fista",
        dt,
        s.iterations,
        (s.objective, s.certificate),
    );
    emit(sink, line.with("duality_gap", 3.2 * mat));
    let (s, dt) = timed(|| lasso_admm(&prob, 1e-8, AdmmParams::<f64>::default().max_iters))?;
    // Woodbury x-update (A, Aᵀ, n² triangular solves), objective (A) and gap (A, Aᵀ).
    let line = BenchLine::new(
        LASSO,
        "admm",
        dt,
        s.iterations,
        (s.objective, s.certificate),
    );
    emit(
        sink,
        line.with("duality_gap", 5.0 * mat + (2 * n * n * 8) as f64),
    );
    Ok(())
}

const LASSO: &str = "lasso-500x2000";

/// The ROF case at `size²` with FGP and PDHG (relative gap 1e-4).
pub fn bench_rof(size: usize, sink: &mut BenchSink<'_>) -> Result<()> {
    let (noisy, _) = rof_case(size, 0)?;
    let y = Array1::from_iter(noisy.iter().copied());
    let npx = (size * size) as f64;
    let case = format!("rof-{size}");
    let tv = TotalVariation::new(size, size, 0.1, TvKind::Isotropic)?;
    let (r, dt) = timed(|| tv.solve_rof(y.view(), 1e-4))?;
    let obj = 0.5 * (&r.x - &y).mapv(|v| v * v).sum() + tv.value(r.x.view())?;
    // Fused sweep: read v, r, q, write q, r (9 numbers per pixel); certificate every 5th
    // iteration (∇ᵀq, ∇x, norms: about 10 more).
    let line = BenchLine::new(&case, "fgp", dt, r.iterations, (obj, r.gap / (obj - r.gap)));
    emit(
        sink,
        line.with("relative_duality_gap", 8.0 * npx * (9.0 + 10.0 / 5.0)),
    );
    let grad = Gradient2d::new(size, size)?;
    let fq = Translate::new(SqrNormL2::new(1.0)?, y.clone())?;
    let n = size * size;
    let pairs: Vec<Vec<usize>> = (0..n).map(|p| vec![p, n + p]).collect();
    let gl = NormL21::new(Groups::new(2 * n, pairs)?, 0.1)?;
    let params = PdhgParams::default()
        .with_tol(1e-4)
        .relative(true)
        .with_max_iters(20_000);
    let (s, dt) = timed(|| Pdhg::new(&fq, &gl, &grad, params).run(y.view(), NoObserver))?;
    let rel = s.certificate / s.objective;
    let line = BenchLine::new(&case, "pdhg", dt, s.iterations, (s.objective, rel));
    // ∇x̄ (read 1, write 2), the fused dual update (read y, t; write y: 6), ∇ᵀy (3), the fused
    // primal update with extrapolation (read x, u; write x, x̄: 4), and every 10th iteration
    // the saved iterates and the gap (about 15 more).
    emit(sink, line.with("relative_duality_gap", 8.0 * npx * 17.5));
    Ok(())
}
