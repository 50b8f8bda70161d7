//! Image pairs for learned reconstruction: random crops of grayscale images, blurred and noisy,
//! `y = k ∗ x + σ_n ε` (ε standard normal), as a [`BatchSource`] for [`crate::train::train_on`].
//! A sample's row `x` is the clean crop and `y` its observation, both row-major (`c × c`).

use crate::data::Batch;
use crate::train::BatchSource;
use hyperprox_core::error::{Error, Result};
use hyperprox_core::ops::{Boundary, Conv2d, ConvMethod, LinearOperator};
use ndarray::{s, Array2};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde_json::{json, Value};
use std::sync::Arc;

/// Random `crop × crop` windows of `images`, blurred by a kernel with reflecting boundaries
/// and corrupted by Gaussian noise of standard deviation `noise`.
pub struct BlurredCrops {
    images: Vec<Array2<f64>>,
    crop: usize,
    blur: Arc<Conv2d<f64>>,
    noise: f64,
    label: String,
}

impl std::fmt::Debug for BlurredCrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlurredCrops")
            .field("label", &self.label)
            .field("images", &self.images.len())
            .field("crop", &self.crop)
            .field("noise", &self.noise)
            .finish()
    }
}

impl BlurredCrops {
    /// The source; `label` names the images in checkpoints. `Err` for no images, a crop of 0
    /// or larger than an image, a non-finite pixel or kernel entry, or a negative noise level.
    pub fn new(
        images: Vec<Array2<f64>>,
        crop: usize,
        kernel: Array2<f64>,
        noise: f64,
        label: impl Into<String>,
    ) -> Result<Self> {
        if images.is_empty() {
            return Err(Error::param("images", 0, "need at least one image"));
        }
        let smallest = images.iter().map(|i| i.nrows().min(i.ncols())).min();
        if crop == 0 || smallest.is_some_and(|m| crop > m) {
            return Err(Error::param(
                "crop",
                crop,
                format!(
                    "must lie in 1..={} (the smallest image side)",
                    smallest.unwrap_or(0)
                ),
            ));
        }
        for (k, img) in images.iter().enumerate() {
            if let Some((i, v)) = img.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("image {k}"),
                    index: i,
                    value: format!("{v}"),
                });
            }
        }
        if !(noise >= 0.0 && noise.is_finite()) {
            return Err(Error::param(
                "noise",
                noise,
                "must be a finite standard deviation ≥ 0",
            ));
        }
        let blur = Conv2d::new(crop, crop, kernel, Boundary::Reflect, ConvMethod::Auto)?;
        Ok(Self {
            images,
            crop,
            blur: Arc::new(blur),
            noise,
            label: label.into(),
        })
    }

    /// The blur on a `crop × crop` image (the forward operator of the observations).
    pub fn blur(&self) -> Arc<Conv2d<f64>> {
        self.blur.clone()
    }

    /// Side of a crop.
    pub fn crop(&self) -> usize {
        self.crop
    }

    /// Noise standard deviation.
    pub fn noise(&self) -> f64 {
        self.noise
    }
}

impl BatchSource for BlurredCrops {
    fn draw(&self, size: usize, seed: u64) -> Result<Batch> {
        if size == 0 {
            return Err(Error::param("batch size", 0, "must be at least 1"));
        }
        let c = self.crop;
        let n = c * c;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut x = Array2::zeros((size, n));
        let mut y = Array2::zeros((size, n));
        for (mut xr, mut yr) in x.rows_mut().into_iter().zip(y.rows_mut()) {
            let img = &self.images[rng.random_range(0..self.images.len())];
            let i = rng.random_range(0..=img.nrows() - c);
            let j = rng.random_range(0..=img.ncols() - c);
            for (d, &v) in xr.iter_mut().zip(img.slice(s![i..i + c, j..j + c]).iter()) {
                *d = v;
            }
            self.blur.apply_into(yr.view_mut(), xr.view())?;
            if self.noise > 0.0 {
                for v in yr.iter_mut() {
                    let e: f64 = StandardNormal.sample(&mut rng);
                    *v += self.noise * e;
                }
            }
        }
        Ok(Batch { x, y })
    }

    fn fingerprint(&self) -> Value {
        let sums: Vec<f64> = self.images.iter().map(|i| i.sum()).collect();
        json!({
            "images": self.label, "count": self.images.len(), "crop": self.crop,
            "noise": self.noise, "pixel_sums": sums,
            "kernel": self.blur.kernel().iter().copied().collect::<Vec<f64>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Array2<f64> {
        Array2::from_shape_fn((h, w), |(i, j)| (i * w + j) as f64 / (h * w) as f64)
    }

    #[test]
    fn crops_are_windows_of_the_images_and_draws_are_reproducible() {
        let img = ramp(12, 10);
        let k = Conv2d::<f64>::gaussian_kernel(3, 0.8).unwrap();
        let src = BlurredCrops::new(vec![img.clone()], 4, k, 0.0, "ramp").unwrap();
        let a = src.draw(5, 3).unwrap();
        assert_eq!(a, src.draw(5, 3).unwrap());
        assert_ne!(a.x, src.draw(5, 4).unwrap().x);
        for row in a.x.rows() {
            // Every crop is a 4×4 window: consecutive rows of the window differ by the width.
            let v: Vec<f64> = row.to_vec();
            let step = 1.0 / 120.0;
            assert!((v[1] - v[0] - step).abs() < 1e-12);
            assert!((v[4] - v[0] - 10.0 * step).abs() < 1e-12);
        }
        // Without noise y is the blurred crop.
        let blurred = src.blur().apply(a.x.row(0)).unwrap();
        assert!((&blurred - &a.y.row(0)).iter().all(|d| d.abs() < 1e-15));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let k = Conv2d::<f64>::gaussian_kernel(3, 0.8).unwrap();
        assert!(BlurredCrops::new(vec![], 4, k.clone(), 0.0, "x").is_err());
        assert!(BlurredCrops::new(vec![ramp(8, 8)], 9, k.clone(), 0.0, "x").is_err());
        assert!(BlurredCrops::new(vec![ramp(8, 8)], 4, k.clone(), -1.0, "x").is_err());
        let mut bad = ramp(8, 8);
        bad[[2, 2]] = f64::NAN;
        assert!(BlurredCrops::new(vec![bad], 4, k, 0.0, "x").is_err());
    }
}
