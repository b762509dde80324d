//! The charts `make bench` draws beside its table (SVG, with plotters): purge time against
//! table size, and live traffic's latency second by second across a purge.

use plotters::prelude::*;

/// One measured series: its name and (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 4] = [RGBColor(120, 120, 120), RGBColor(214, 96, 77), RGBColor(33, 102, 172), RGBColor(27, 158, 119)];

/// The axis' end: `room` times the largest value (1 when there is none above zero: a tiny
/// range would map the shaded window to pixels past i32).
fn upper(values: impl Iterator<Item = f64>, room: f64) -> f64 {
    let largest = values.filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    if largest > 0.0 { largest * room } else { 1.0 }
}

/// Lines with points, one per series, over a shared x axis starting at 0.
pub fn lines(path: &str, title: &str, x_label: &str, y_label: &str, series: &[Series], shaded: Option<(f64, f64, &str)>) -> Result<(), String> {
    let error = |e: &dyn std::fmt::Display| format!("{path}: {e}");
    let window_end = shaded.map(|(_, to, _)| to).filter(|to| to.is_finite());
    let x_max = upper(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).chain(window_end), 1.05);
    // Headroom above the data for the legend in the upper left.
    let y_max = upper(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), 1.45);
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| error(&e))?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).light_line_style(WHITE.mix(0.0)).draw().map_err(|e| error(&e))?;
    let shaded = shaded.filter(|(from, to, _)| from.is_finite() && to.is_finite());
    if let Some((from, to, what)) = shaded.map(|(from, to, what)| (from.clamp(0.0, x_max), to.clamp(0.0, x_max), what)) {
        let band = RGBColor(255, 200, 80).mix(0.3);
        chart
            .draw_series(std::iter::once(Rectangle::new([(from, 0.0), (to, y_max)], band.filled())))
            .map_err(|e| error(&e))?
            .label(what)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], band.filled()));
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| error(&e))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(|e| error(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| error(&e))?;
    root.present().map_err(|e| error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_title_labels_and_series() {
        let path = std::env::temp_dir().join("pg_retention_chart_test.svg");
        let path = path.to_str().unwrap();
        let series = vec![
            Series { name: "plain DELETE".into(), points: vec![(1.0, 2.0), (2.0, 4.1)] },
            Series { name: "pg_retention".into(), points: vec![(1.0, 1.5), (2.0, 3.0)] },
        ];
        lines(path, "purge time", "rows (millions)", "seconds", &series, Some((0.5, 1.5, "purge"))).unwrap();
        let svg = std::fs::read_to_string(path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in ["purge time", "rows (millions)", "seconds", "plain DELETE", "pg_retention"] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 2, "a line per series");
        // A run too short for a whole second: no points, a window past them. Drawn, not a panic
        // (the smoke run's, which overflowed plotters' pixel arithmetic).
        let empty = vec![Series { name: "alone".into(), points: Vec::new() }];
        lines(path, "traffic", "s", "ms", &empty, Some((2.0, 2.1, "the purge"))).unwrap();
        lines(path, "traffic", "s", "ms", &empty, Some((-3.0, f64::NAN, "the purge"))).unwrap();
    }
}
