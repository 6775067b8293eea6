//! SVG charts of measured speedups beside what each block allows (`bench --plot`,
//! `replay --plot`).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One bar of a speedup chart.
pub struct Bar {
    /// What was measured (a workload or a block).
    pub label: String,
    /// Median speedup of parallel over sequential.
    pub speedup: f64,
    /// The list-scheduling bound of the block's dependency graph at the same thread count.
    pub ideal: Option<f64>,
}

const WIN: RGBColor = RGBColor(46, 125, 50);
const LOSS: RGBColor = RGBColor(198, 40, 40);
const BOUND: RGBColor = RGBColor(120, 144, 156);

/// Draws `bars` as an SVG bar chart at `path`: each measured speedup (green where it wins,
/// red where it loses), the ideal bound as a grey outline around it, and the 1x line.
/// With many bars the value labels are left out and the names written vertically.
pub fn speedup_chart(
    path: &Path,
    title: &str,
    bars: &[Bar],
) -> Result<(), Box<dyn std::error::Error>> {
    let many = bars.len() > 12;
    let width = (160 + if many { 22 } else { 70 } * bars.len() as u32).max(640);
    let root = SVGBackend::new(path, (width, if many { 560 } else { 480 })).into_drawing_area();
    root.fill(&WHITE)?;
    let top =
        bars.iter().flat_map(|b| [b.speedup, b.ideal.unwrap_or(0.0)]).fold(1.0, f64::max) * 1.35; // headroom for the legend above the bars
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(if many { 110 } else { 40 })
        .y_label_area_size(60)
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_style(("sans-serif", 13))
        .x_label_formatter(&|v| match v {
            // Many names are written vertically below, by hand: the mesh centres a rotated
            // label on its tick, where the bars would cover half of it.
            SegmentValue::CenterOf(i) if !many => {
                bars.get(*i).map_or(String::new(), |b| b.label.clone())
            }
            _ => String::new(),
        })
        .y_desc("speedup over sequential (x)")
        .draw()?;
    if many {
        let style = ("sans-serif", 11)
            .into_font()
            .transform(FontTransform::Rotate90)
            .into_text_style(&root)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, bar) in bars.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(SegmentValue::CenterOf(i), 0.0));
            root.draw(&Text::new(bar.label.clone(), (x, y + 8), style.clone()))?;
        }
    }
    let margin = if many { 3 } else { 12 };
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let colour = if b.speedup >= 1.0 { WIN } else { LOSS };
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.speedup)],
                colour.filled(),
            );
            bar.set_margin(0, 0, margin, margin);
            bar
        }))?
        .label("measured (median)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], WIN.filled()));
    if bars.iter().any(|b| b.ideal.is_some()) {
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
                let ideal = b.ideal?;
                let mut bound = Rectangle::new(
                    [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), ideal)],
                    BOUND.stroke_width(2),
                );
                bound.set_margin(0, 0, margin / 2, margin / 2);
                Some(bound)
            }))?
            .label("ideal bound (dependency graph)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BOUND.stroke_width(2)));
    }
    if !many {
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                format!("{:.2}x", b.speedup),
                (SegmentValue::CenterOf(i), b.speedup + top * 0.01),
                ("sans-serif", 14)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
    }
    chart
        .draw_series(LineSeries::new(
            [(SegmentValue::Exact(0), 1.0), (SegmentValue::Last, 1.0)],
            BLACK.stroke_width(1),
        ))?
        .label("1x: as fast as sequential")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
