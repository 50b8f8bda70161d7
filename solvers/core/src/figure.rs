//! Figures as data: line plots and captioned images that experiments return beside their
//! numbers. The facade crate draws them to PNG (`hyperprox::report::write_figure`); keeping
//! them as plain data lets a library user plot them with any tool, or serialize them.

use ndarray::Array2;
use serde::Serialize;

/// A named curve.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A curve from its points.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }

    /// The curve `(i + first, v[i])`: one point per entry, e.g. per layer or iteration.
    pub fn indexed(name: impl Into<String>, values: &[f64], first: usize) -> Self {
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + first) as f64, *v))
            .collect();
        Self::new(name, points)
    }
}

/// A line plot.
#[derive(Clone, Debug, Serialize)]
pub struct LinePlot {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// The curves.
    pub series: Vec<Series>,
}

impl LinePlot {
    /// An empty plot with linear axes.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            log_x: false,
            log_y: false,
            series: Vec::new(),
        }
    }

    /// Sets the axes' scales.
    pub fn log(mut self, log_x: bool, log_y: bool) -> Self {
        self.log_x = log_x;
        self.log_y = log_y;
        self
    }

    /// Adds a curve.
    pub fn with(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }
}

/// A grayscale image with a caption.
#[derive(Clone, Debug, Serialize)]
pub struct ImagePanel {
    /// Caption (e.g. with the PSNR).
    pub caption: String,
    /// Values in `[0, 1]` (clipped when drawn); not serialized.
    #[serde(skip)]
    pub image: Array2<f64>,
}

impl ImagePanel {
    /// A captioned image.
    pub fn new(caption: impl Into<String>, image: Array2<f64>) -> Self {
        Self {
            caption: caption.into(),
            image,
        }
    }
}

/// What an experiment draws: a row of line plots and a row of images.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figure {
    /// Line plots (top row).
    pub plots: Vec<LinePlot>,
    /// Images (bottom row).
    pub panels: Vec<ImagePanel>,
}

/// Serde helpers for numbers that may be NaN (JSON has none: written as `null`, read back as
/// NaN) and for 1-D arrays written as plain lists.
pub mod serde_num {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `NaN`/`±∞` as `null`.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Reads `null` as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Serde helper writing a 1-D array as a plain list (`#[serde(with = "serde_array")]`).
pub mod serde_array {
    use ndarray::Array1;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the entries as a list.
    pub fn serialize<S: Serializer>(v: &Array1<f64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter())
    }

    /// Reads a list.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Array1<f64>, D::Error> {
        Ok(Array1::from(Vec::<f64>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Rec {
        #[serde(with = "super::serde_num")]
        v: f64,
        #[serde(with = "super::serde_array")]
        a: ndarray::Array1<f64>,
    }

    #[test]
    fn nan_is_written_as_null_and_read_back() {
        let r = Rec {
            v: f64::NAN,
            a: ndarray::array![1.0, 2.5],
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"v":null,"a":[1.0,2.5]}"#);
        let back: Rec = serde_json::from_str(&text).unwrap();
        assert!(back.v.is_nan() && back.a == r.a);
        let back: Rec = serde_json::from_str(r#"{"v":0.25,"a":[]}"#).unwrap();
        assert_eq!(back.v, 0.25);
    }

    #[test]
    fn indexed_series_start_at_the_given_index() {
        let s = super::Series::indexed("s", &[3.0, 4.0], 1);
        assert_eq!(s.points, vec![(1.0, 3.0), (2.0, 4.0)]);
    }
}
