//! A JSON description of a composed image-restoration model (`hyperprox tune variational
//! --spec model.json`): the forward operator, the regularizers with their starting weights,
//! how weights depend on `θ`, and the upper loss. Paths (kernels, masks) are relative to the
//! spec file's folder.
//!
//! ```json
//! {
//!   "forward": { "operator": "blur", "kernel": "gaussian5.npy", "boundary": "reflect" },
//!   "weights": "exp",
//!   "upper": "squared-error",
//!   "regularizers": [
//!     { "penalty": "tv", "tv": "anisotropic", "smoothing": 0.01, "weight": 0.005 },
//!     { "penalty": "huber", "operator": "gradient", "delta": 0.05, "weight": 0.005 },
//!     { "penalty": "squared-l2", "operator": "identity", "weight": 1e-4, "learn": false }
//!   ]
//! }
//! ```
//!
//! * `forward.operator`: `identity` (denoising), `blur` (`kernel`: a 2-D `.npy`; `boundary`:
//!   `zero`, `reflect` (default) or `periodic`), `mask` (`mask`: a 2-D `.npy` of the image's
//!   size, non-zero = observed);
//! * `penalty`: `tv` (`tv`: `anisotropic` (default) on the differences inside the image, or
//!   `isotropic` on the Neumann gradient; `smoothing` ν, `learn_smoothing`), `charbonnier`
//!   (`smoothing`, `learn_smoothing`), `huber` (`delta`), `squared-l2`,
//!   `generalized-gaussian` (`p` in (1, 2], `smoothing`);
//! * `operator` (all but `tv`): `gradient` (differences inside the image, the default except
//!   for `squared-l2`), `identity` (the default of `squared-l2`), or `filter` with `kernel` (a
//!   square `.npy`, valid correlation);
//! * `weight`: the starting (or fixed) weight, `learn` (default `true`);
//! * `weights`: `exp` (default, `w = e^θ`) or `softplus`;
//! * `upper`: `squared-error` (default, `(1/N)Σᵢ ½‖xᵢ − cᵢ‖²`) or `mse` (`½·MSE`, PSNR-equivalent).

use super::{
    Charbonnier, ComposedProblem, Correlation, DataFit, DiffBoundary, Differences2d,
    GeneralizedGaussian, Identity, IsotropicTvPenalty, Linear, ParametricSmooth, PartOperator,
    Smoothing, SquaredL2, Term, UpperLoss, Weight,
};
use hyperprox_core::error::{Error, Result};
use hyperprox_core::ops::Boundary;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The forward operator of the data fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operator", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ForwardSpec {
    /// Denoising.
    Identity,
    /// A "same"-size blur.
    Blur {
        /// A 2-D `.npy` kernel.
        kernel: PathBuf,
        /// The boundary extension (default `reflect`).
        #[serde(default = "reflect")]
        boundary: Boundary,
    },
    /// Inpainting.
    Mask {
        /// A 2-D `.npy` of the image's size, non-zero = observed.
        mask: PathBuf,
    },
}

fn reflect() -> Boundary {
    Boundary::Reflect
}

fn yes() -> bool {
    true
}

/// How learned weights depend on `θ`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightMap {
    /// `w = e^θ`.
    #[default]
    Exp,
    /// `w = log(1 + e^θ)`.
    Softplus,
}

/// The upper loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpperSpec {
    /// `(1/N) Σᵢ ½‖xᵢ − cᵢ‖²`.
    #[default]
    SquaredError,
    /// `½·MSE` (PSNR-equivalent).
    Mse,
}

/// The TV flavour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TvFlavor {
    /// `Σ √(d² + ν²)` over the differences inside the image.
    #[default]
    Anisotropic,
    /// `Σ_p √(|∇x|_p² + ν²)`, Neumann gradient.
    Isotropic,
}

/// The operator a penalty is applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperatorKind {
    /// The differences inside the image.
    Gradient,
    /// The identity.
    Identity,
    /// A fixed filter (`kernel`), valid correlation.
    Filter,
}

/// One regularizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegularizerSpec {
    /// `tv`, `charbonnier`, `huber`, `squared-l2` or `generalized-gaussian`.
    pub penalty: Penalty,
    /// The starting (or fixed) weight.
    pub weight: f64,
    /// Whether the weight is learned (default `true`).
    #[serde(default = "yes")]
    pub learn: bool,
    /// The operator (not for `tv`).
    #[serde(default)]
    pub operator: Option<OperatorKind>,
    /// The filter of `operator: filter`.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The TV flavour (`tv` only).
    #[serde(default)]
    pub tv: Option<TvFlavor>,
    /// The smoothing ν (`tv`, `charbonnier`, `generalized-gaussian`).
    #[serde(default)]
    pub smoothing: Option<f64>,
    /// Whether ν is learned (`tv`, `charbonnier`).
    #[serde(default)]
    pub learn_smoothing: bool,
    /// Huber's δ.
    #[serde(default)]
    pub delta: Option<f64>,
    /// The generalized Gaussian's exponent.
    #[serde(default)]
    pub p: Option<f64>,
}

/// The penalties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Penalty {
    /// Smoothed TV.
    Tv,
    /// `Σ √(z² + ν²)`.
    Charbonnier,
    /// Huber.
    Huber,
    /// `½‖z‖²`.
    SquaredL2,
    /// `Σ (z² + ν²)^{p/2}`.
    GeneralizedGaussian,
}

/// A composed image-restoration model (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The forward operator.
    pub forward: ForwardSpec,
    /// The regularizers (at least one).
    pub regularizers: Vec<RegularizerSpec>,
    /// How learned weights depend on `θ`.
    #[serde(default)]
    pub weights: WeightMap,
    /// The upper loss.
    #[serde(default)]
    pub upper: UpperSpec,
}

impl ModelSpec {
    /// Reads a spec file; `Err` names the file and what is wrong.
    pub fn load(path: &Path) -> Result<(Self, PathBuf)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let spec: Self = serde_json::from_str(&text).map_err(|e| {
            Error::param(
                "model spec",
                format!("{}: {e}", path.display()),
                "see `hyperprox tune variational --help` or examples/deblur_tv_huber.json for the format",
            )
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((spec, base))
    }

    /// The forward operator for `h × w` images (paths relative to `base`).
    pub fn forward_operator(
        &self,
        base: &Path,
        h: usize,
        w: usize,
    ) -> Result<Arc<dyn PartOperator>> {
        Ok(match &self.forward {
            ForwardSpec::Identity => Arc::new(Identity(h * w)),
            ForwardSpec::Blur { kernel, boundary } => {
                let k = hyperprox_core::io::read_npy_2d(base.join(kernel))?;
                Arc::new(Linear::blur(h, w, k, *boundary)?)
            }
            ForwardSpec::Mask { mask } => {
                let m = hyperprox_core::io::read_npy_2d(base.join(mask))?;
                if m.dim() != (h, w) {
                    return Err(Error::shape(
                        "mask",
                        base.join(mask).display().to_string(),
                        format!("{h}×{w}"),
                        format!("{:?}", m.dim()),
                    ));
                }
                Arc::new(Linear::mask(m.iter().map(|v| *v != 0.0).collect())?)
            }
        })
    }

    /// Degrades clean images by the forward operator and adds Gaussian noise `sigma` (seeded).
    pub fn degrade(
        &self,
        base: &Path,
        clean: &[Array2<f64>],
        sigma: f64,
        seed: u64,
    ) -> Result<Vec<Array2<f64>>> {
        let (h, w) = clean
            .first()
            .map(|c| c.dim())
            .ok_or_else(|| Error::param("images", 0, "pass at least one image"))?;
        let op = self.forward_operator(base, h, w)?;
        let blurred: Vec<Array2<f64>> = clean
            .iter()
            .map(|c| {
                let mut y = vec![0.0; h * w];
                op.apply(&[], &c.iter().copied().collect::<Vec<_>>(), &mut y);
                Array2::from_shape_vec((h, w), y)
                    .map_err(|e| Error::param("image", e, "internal shape"))
            })
            .collect::<Result<_>>()?;
        if !(sigma >= 0.0 && sigma.is_finite()) {
            return Err(Error::param("sigma", sigma, "must be finite and ≥ 0"));
        }
        Ok(crate::data::add_noise(&blurred, sigma, seed))
    }

    /// The bilevel problem on clean/degraded pairs (paths relative to `base`).
    pub fn build(
        &self,
        base: &Path,
        clean: &[Array2<f64>],
        degraded: &[Array2<f64>],
    ) -> Result<ComposedProblem> {
        let (h, w) = crate::data::check_image_pairs("variational model", clean, degraded, 8)?;
        if self.regularizers.is_empty() {
            return Err(Error::param(
                "regularizers",
                0,
                "the spec needs at least one regularizer",
            ));
        }
        let op = self.forward_operator(base, h, w)?;
        let obs: Vec<Array1<f64>> = degraded
            .iter()
            .map(|y| y.iter().copied().collect())
            .collect();
        let data = DataFit::least_squares(op, &obs)?;
        let upper = match self.upper {
            UpperSpec::SquaredError => UpperLoss::squared_error(clean),
            UpperSpec::Mse => UpperLoss::mean_squared_error(clean),
        };
        let mut theta0 = Vec::new();
        let mut labels = Vec::new();
        let mut terms = Vec::new();
        for (i, r) in self.regularizers.iter().enumerate() {
            let ctx = format!("regularizer {i} ({:?})", r.penalty);
            let need = |v: Option<f64>, what: &str| {
                v.ok_or_else(|| Error::param(&ctx, "missing", format!("give its \"{what}\"")))
            };
            let nu = |r: &RegularizerSpec| -> Result<Smoothing> {
                let v = need(r.smoothing, "smoothing")?;
                Ok(if r.learn_smoothing {
                    Smoothing::Learned(v)
                } else {
                    Smoothing::Fixed(v)
                })
            };
            let default_op = match r.penalty {
                Penalty::SquaredL2 => OperatorKind::Identity,
                _ => OperatorKind::Gradient,
            };
            let opk = r.operator.unwrap_or(default_op);
            let k: Arc<dyn PartOperator> = match (r.penalty, opk) {
                (Penalty::Tv, _) if r.operator.is_some() => {
                    return Err(Error::param(
                        &ctx,
                        "operator",
                        "tv is always on the gradient: drop \"operator\" (or use charbonnier)",
                    ));
                }
                (Penalty::Tv, _) => match r.tv.unwrap_or_default() {
                    TvFlavor::Anisotropic => {
                        Arc::new(Differences2d::new(h, w, DiffBoundary::Interior)?)
                    }
                    TvFlavor::Isotropic => {
                        Arc::new(Differences2d::new(h, w, DiffBoundary::Neumann)?)
                    }
                },
                (_, OperatorKind::Gradient) => {
                    Arc::new(Differences2d::new(h, w, DiffBoundary::Interior)?)
                }
                (_, OperatorKind::Identity) => Arc::new(Identity(h * w)),
                (_, OperatorKind::Filter) => {
                    let path = r.kernel.as_ref().ok_or_else(|| {
                        Error::param(
                            &ctx,
                            "missing",
                            "operator \"filter\" needs a \"kernel\" (.npy)",
                        )
                    })?;
                    Arc::new(Correlation::fixed(
                        h,
                        w,
                        hyperprox_core::io::read_npy_2d(base.join(path))?,
                    )?)
                }
            };
            let reg: Arc<dyn ParametricSmooth> = match r.penalty {
                Penalty::Tv => match r.tv.unwrap_or_default() {
                    TvFlavor::Anisotropic => Arc::new(Charbonnier::new(nu(r)?)?),
                    TvFlavor::Isotropic => Arc::new(IsotropicTvPenalty::new(nu(r)?)?),
                },
                Penalty::Charbonnier => Arc::new(Charbonnier::new(nu(r)?)?),
                Penalty::Huber => Arc::new(super::CoreSmooth::new(
                    hyperprox_core::func::Huber::new(1.0, need(r.delta, "delta")?)?,
                )?),
                Penalty::SquaredL2 => Arc::new(SquaredL2),
                Penalty::GeneralizedGaussian => Arc::new(GeneralizedGaussian::new(
                    need(r.p, "p")?,
                    need(r.smoothing, "smoothing")?,
                )?),
            };
            let name = format!("{} ∘ {}", reg.name(), k.name());
            let weight = if r.learn {
                if !(r.weight > 0.0 && r.weight.is_finite()) {
                    return Err(Error::param(
                        &ctx,
                        r.weight,
                        "a learned weight starts at a finite value > 0",
                    ));
                }
                theta0.push(match self.weights {
                    WeightMap::Exp => r.weight.ln(),
                    WeightMap::Softplus => r.weight.exp_m1().ln(),
                });
                labels.push(format!("{name}: weight"));
                let index = theta0.len() - 1;
                match self.weights {
                    WeightMap::Exp => Weight::Exp {
                        indices: vec![index],
                        scale: 1.0,
                    },
                    WeightMap::Softplus => Weight::Softplus { index, scale: 1.0 },
                }
            } else {
                Weight::Fixed(r.weight)
            };
            let mut reg_idx = Vec::new();
            for v in reg.initial_params() {
                theta0.push(v);
                labels.push(format!("{name}: log smoothing"));
                reg_idx.push(theta0.len() - 1);
            }
            terms.push(Term::new(weight, reg, reg_idx, k, Vec::new()));
        }
        if theta0.is_empty() {
            return Err(Error::param(
                "model spec",
                "nothing to learn",
                "mark at least one weight or smoothing as learned",
            ));
        }
        let mut p = ComposedProblem::new(data, terms, upper, Array1::from(theta0))?
            .with_name("variational");
        p.set_labels(labels);
        Ok(p)
    }
}
