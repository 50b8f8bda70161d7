//! Data for the bilevel problems: the image-pair checks and the upper levels they share. The
//! image utilities (loading, noise, PSNR, stacking) are the core's, re-exported here.

use hyperprox_core::error::{Error, Result};
use ndarray::Array2;
use std::path::Path;

pub use hyperprox_core::io::{add_noise_all as add_noise, load_images, psnr, stack, unstack};

/// Checks a clean/noisy image set: as many noisy as clean images (at least one), all of one
/// size with both sides `≥ min_side`, all finite. Returns `(height, width)`.
pub(crate) fn check_image_pairs(
    context: &str,
    clean: &[Array2<f64>],
    noisy: &[Array2<f64>],
    min_side: usize,
) -> Result<(usize, usize)> {
    if clean.is_empty() || clean.len() != noisy.len() {
        return Err(Error::param(
            "images",
            format!("{} clean, {} noisy", clean.len(), noisy.len()),
            "pass at least one image and as many noisy as clean ones",
        ));
    }
    let (h, w) = clean[0].dim();
    if h < min_side || w < min_side {
        return Err(Error::param(
            "image size",
            format!("{h}×{w}"),
            format!("{context} needs images of at least {min_side}×{min_side}"),
        ));
    }
    let labelled = (clean.iter().enumerate().map(|(i, im)| ("clean", i, im)))
        .chain(noisy.iter().enumerate().map(|(i, im)| ("noisy", i, im)));
    for (set, i, im) in labelled {
        if im.dim() != (h, w) {
            return Err(Error::shape(
                context,
                format!("{set} image {i}"),
                format!("{h}×{w}"),
                format!("{:?}", im.dim()),
            ));
        }
        if let Some(v) = im.iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("{set} image {i}"),
                index: 0,
                value: v.to_string(),
            });
        }
    }
    Ok((h, w))
}

/// The elements of a contiguous array as a slice; `Err` (never a panic) otherwise. Pass
/// `v.as_standard_layout()` to accept strided views (copied once).
pub(crate) fn slice<S: ndarray::Data<Elem = f64>>(
    a: &ndarray::ArrayBase<S, ndarray::Ix1>,
) -> Result<&[f64]> {
    a.as_slice().ok_or_else(|| {
        hyperprox_core::error::Error::param(
            "array layout",
            "strided",
            "pass a contiguous array (e.g. `.as_standard_layout()`)",
        )
    })
}

/// Runs `f` on `out` as a slice: directly when `out` is contiguous, else on a temporary that
/// is copied back (strided outputs work, at the cost of one copy).
pub(crate) fn fill<R>(
    mut out: ndarray::ArrayViewMut1<'_, f64>,
    f: impl FnOnce(&mut [f64]) -> R,
) -> R {
    if let Some(s) = out.as_slice_mut() {
        return f(s);
    }
    let mut tmp = vec![0.0; out.len()];
    let r = f(&mut tmp);
    out.assign(&ndarray::ArrayView1::from(&tmp[..]));
    r
}

/// Loads a digits CSV (`label,p0..p63`, grey levels 0..16): features in `[0, 1]` (`n × 64`)
/// and labels. See [`hyperprox_core::io::read_digits_csv`].
pub fn load_digits(path: &Path) -> Result<(Array2<f64>, Vec<usize>)> {
    hyperprox_core::io::read_digits_csv(path)
}
