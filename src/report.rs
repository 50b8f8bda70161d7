//! PNG figures of the experiments' [`Figure`]s (plotters, with the DejaVu Sans font embedded so no
//! system font is needed).

use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // Registration only fails for an unparsable font; the embedded one parses.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

pub use hyperprox_core::figure::{Figure, ImagePanel, LinePlot, Series};

type Res<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    format!("figure: {e}")
}

fn range(vals: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    if log {
        if hi <= lo {
            return (lo / 2.0, hi * 2.0);
        }
        (lo / 1.1, hi * 1.1)
    } else {
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else {
            lo.abs().max(1.0) * 0.05
        };
        (lo - pad, hi + pad)
    }
}

/// Tick labels: plain for moderate magnitudes, scientific otherwise, trailing zeros trimmed.
fn tick(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.1e}");
        s.replace(".0e", "e")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

/// Draws the mesh, the series and the legend of plot `$p` on `$chart` (a macro because each
/// axis-scale combination is its own chart type).
macro_rules! body {
    ($chart:expr, $p:expr) => {{
        let p: &LinePlot = $p;
        let mut chart = $chart;
        chart
            .configure_mesh()
            .x_desc(p.x_label.as_str())
            .y_desc(p.y_label.as_str())
            .label_style(("sans-serif", 13))
            .x_label_formatter(&|v: &f64| tick(*v))
            .y_label_formatter(&|v: &f64| tick(*v))
            .draw()
            .map_err(err)?;
        for (i, s) in p.series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let data: Vec<(f64, f64)> = s
                .points
                .iter()
                .cloned()
                .filter(|q| {
                    q.0.is_finite()
                        && q.1.is_finite()
                        && (!p.log_x || q.0 > 0.0)
                        && (!p.log_y || q.1 > 0.0)
                })
                .collect();
            chart
                .draw_series(LineSeries::new(data, c.stroke_width(2)))
                .map_err(err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
    }};
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &LinePlot,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let pts = || p.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range(pts().map(|q| q.0), p.log_x);
    let (y0, y1) = range(pts().map(|q| q.1), p.log_y);
    let mut b = ChartBuilder::on(area);
    b.caption(p.title.as_str(), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70);
    match (p.log_x, p.log_y) {
        (false, false) => body!(b.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?, p),
        (true, false) => body!(
            b.build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(err)?,
            p
        ),
        (false, true) => body!(
            b.build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(err)?,
            p
        ),
        (true, true) => body!(
            b.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(err)?,
            p
        ),
    }
    Ok(())
}

fn draw_image<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &ImagePanel,
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    area.draw_text(
        &p.caption,
        &("sans-serif", 16).into_font().color(&BLACK),
        (10, 5),
    )
    .map_err(err)?;
    let (ih, iw) = p.image.dim();
    let top = 28i32;
    let avail_h = h.saturating_sub(top as u32 + 5).max(1);
    let scale = ((w.saturating_sub(10)) as f64 / iw as f64)
        .min(avail_h as f64 / ih as f64)
        .max(0.01);
    let (sw, sh) = ((iw as f64 * scale) as i32, (ih as f64 * scale) as i32);
    let left = ((w as i32 - sw) / 2).max(0);
    for py in 0..sh {
        for px in 0..sw {
            let i = ((py as f64 / scale) as usize).min(ih - 1);
            let j = ((px as f64 / scale) as usize).min(iw - 1);
            let v = (p.image[[i, j]].clamp(0.0, 1.0) * 255.0).round() as u8;
            area.draw_pixel((left + px, top + py), &RGBColor(v, v, v))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Writes a figure: a row of line plots, and below it (if any) a row of image panels (drawn in
/// memory, then written atomically).
pub fn write_figure(path: &Path, figure: &Figure) -> Res<()> {
    register_font();
    let (plots, images) = (&figure.plots, &figure.panels);
    let cols = plots.len().max(images.len()).max(1) as u32;
    let width = 520 * cols;
    let height = if images.is_empty() { 420 } else { 420 + 400 };
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    draw_figure(&mut rgb, (width, height), figure)?;
    hyperprox_core::io::write_png_rgb(path, width, height, rgb).map_err(|e| e.to_string())
}

/// Draws `figure` into an RGB buffer of `width × height` pixels.
fn draw_figure(rgb: &mut [u8], (width, height): (u32, u32), figure: &Figure) -> Res<()> {
    let (plots, images) = (&figure.plots, &figure.panels);
    let root = BitMapBackend::with_buffer(rgb, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = if images.is_empty() {
        (root.clone(), None)
    } else {
        let (a, b) = root.split_vertically(420);
        (a, Some(b))
    };
    let cells = top.split_evenly((1, plots.len().max(1)));
    for (c, p) in cells.iter().zip(plots) {
        draw_lines(c, p)?;
    }
    if let Some(b) = bottom {
        let cells = b.split_evenly((1, images.len()));
        for (c, p) in cells.iter().zip(images) {
            draw_image(c, p)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
