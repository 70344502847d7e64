//! Line charts as standalone SVG documents, drawn with plotters' SVG
//! backend. [`Chart`] says what to draw: axes ([`Scale`], linear or
//! logarithmic) with their ticks and labels, and [`Series`] (lines, solid or
//! dashed, with optional min-max bars and markers); [`Chart::render`] draws
//! it with a title, a subtitle and a legend to the right of the plot. The
//! plots themselves are built in [`super::plots`].
//!
//! Text is written as SVG `<text>` in a generic sans-serif font and laid out
//! by plotters' estimate of its size: no font files are read, so the
//! benchmark needs no font library and the files open anywhere.

use std::fmt::Display;

use plotters::coord::Shift;
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 760;
const HEIGHT: u32 = 460;
/// The width of the legend, right of the plot.
const LEGEND: u32 = 200;
const FONT: &str = "sans-serif";
// Plotters writes a font size of n / 1.24 into the SVG: these give 15, 11
// and 12 pixels, as in a browser's default chart text.
const TITLE_SIZE: f64 = 18.6;
const SUBTITLE_SIZE: f64 = 13.64;
const TEXT_SIZE: f64 = 14.88;
const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
const AXIS: RGBColor = RGBColor(0x33, 0x33, 0x33);
const SUBTITLE: RGBColor = RGBColor(0x55, 0x55, 0x55);
const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// The color of the `index`th system, the same in every chart.
pub(crate) fn color(index: usize) -> RGBColor {
    COLORS[index % COLORS.len()]
}

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    /// Evenly spaced values from `min` to `max`.
    Linear { min: f64, max: f64 },
    /// Evenly spaced powers (plotters' log scale); `min` must be positive.
    Log { min: f64, max: f64 },
}

impl Scale {
    /// A log scale covering `values` out to whole powers of `base`.
    pub(crate) fn log_covering(values: impl Iterator<Item = f64>, base: f64) -> Scale {
        let (low, high) = values
            .filter(|value| *value > 0.0 && value.is_finite())
            .fold((f64::MAX, f64::MIN), |(low, high), value| {
                (low.min(value), high.max(value))
            });
        if low > high {
            return Scale::Log {
                min: 1.0,
                max: 10.0,
            };
        }
        // The epsilon keeps log10(1000) = 2.9999999... from flooring to 2.
        let min = base.powf((low.log(base) + 1e-9).floor());
        let mut max = base.powf((high.log(base) - 1e-9).ceil());
        if max <= min {
            max = min * base;
        }
        Scale::Log { min, max }
    }

    /// Tick values with their labels: a 1-2-5 step on a linear scale; powers
    /// of ten on a log scale, with 2 and 5 times them over a short range.
    pub(crate) fn ticks(self, label: impl Fn(f64) -> String) -> Vec<(f64, String)> {
        match self {
            Scale::Linear { min, max } => {
                let step = nice_step((max - min) / 5.0);
                let mut ticks = Vec::new();
                let mut value = (min / step).ceil() * step;
                while value <= max + step * 1e-9 {
                    ticks.push((value, label(value)));
                    value += step;
                }
                ticks
            }
            Scale::Log { min, max } => {
                let decades = (max / min).log10();
                let multipliers: &[f64] = if decades <= 2.5 {
                    &[1.0, 2.0, 5.0]
                } else {
                    &[1.0]
                };
                let mut ticks = Vec::new();
                let mut decade = 10f64.powf(min.log10().floor());
                while decade <= max * 1.0001 {
                    for multiplier in multipliers {
                        let value = decade * multiplier;
                        if value >= min * 0.9999 && value <= max * 1.0001 {
                            ticks.push((value, label(value)));
                        }
                    }
                    decade *= 10.0;
                }
                ticks
            }
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// The name in the legend.
    pub name: String,
    pub color: RGBColor,
    /// Dashed rather than solid (lossless latency, several consumers).
    pub dashed: bool,
    /// (x, y), in data units.
    pub points: Vec<(f64, f64)>,
    /// Optional (low, high) of y at each point, drawn as a bar.
    pub ranges: Vec<Option<(f64, f64)>>,
    /// Draw a marker at each point.
    pub markers: bool,
}

/// A chart: axes, ticks, lines and a legend.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    /// Above the plot, in bold.
    pub title: String,
    /// Under the title, in grey: how the figures were measured.
    pub subtitle: String,
    /// The name of the x axis, with its unit.
    pub x_label: String,
    /// The name of the y axis, with its unit.
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// Where the x axis has a tick and a grid line, and its label.
    pub x_ticks: Vec<(f64, String)>,
    /// Where the y axis has a tick and a grid line, and its label.
    pub y_ticks: Vec<(f64, String)>,
    /// The lines, in the order of the legend.
    pub series: Vec<Series>,
}

impl Chart {
    /// The chart as an SVG document, or why plotters could not draw it.
    pub(crate) fn render(&self) -> Result<String, String> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            root.fill(&WHITE).map_err(text)?;
            let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
            let plot = plot
                .titled(
                    &self.title,
                    (FONT, TITLE_SIZE).into_font().style(FontStyle::Bold),
                )
                .map_err(text)?
                .titled(
                    &self.subtitle,
                    (FONT, SUBTITLE_SIZE).into_font().color(&SUBTITLE),
                )
                .map_err(text)?;
            let x_points = || self.x_ticks.iter().map(|tick| tick.0).collect::<Vec<_>>();
            let y_points = || self.y_ticks.iter().map(|tick| tick.0).collect::<Vec<_>>();
            // Each pair of scales is its own coordinate type in plotters.
            match (self.x_scale, self.y_scale) {
                (Scale::Log { min: x0, max: x1 }, Scale::Log { min: y0, max: y1 }) => self.draw(
                    &plot,
                    (x0..x1).log_scale().with_key_points(x_points()),
                    (y0..y1).log_scale().with_key_points(y_points()),
                ),
                (Scale::Log { min: x0, max: x1 }, Scale::Linear { min: y0, max: y1 }) => self.draw(
                    &plot,
                    (x0..x1).log_scale().with_key_points(x_points()),
                    Linear::new(y0..y1, y_points()),
                ),
                (Scale::Linear { min: x0, max: x1 }, Scale::Log { min: y0, max: y1 }) => self.draw(
                    &plot,
                    Linear::new(x0..x1, x_points()),
                    (y0..y1).log_scale().with_key_points(y_points()),
                ),
                (Scale::Linear { min: x0, max: x1 }, Scale::Linear { min: y0, max: y1 }) => self
                    .draw(
                        &plot,
                        Linear::new(x0..x1, x_points()),
                        Linear::new(y0..y1, y_points()),
                    ),
            }?;
            self.draw_legend(&legend)?;
            root.present().map_err(text)?;
        }
        Ok(svg)
    }

    /// Axes, grid, ticks and series on `area`.
    fn draw<DB, X, Y>(&self, area: &DrawingArea<DB, Shift>, x: X, y: Y) -> Result<(), String>
    where
        DB: DrawingBackend,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(area)
            .margin_top(6)
            .margin_left(8)
            .margin_right(12)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(x, y)
            .map_err(text)?;
        let x_label = |value: &f64| tick_label(&self.x_ticks, *value);
        let y_label = |value: &f64| tick_label(&self.y_ticks, *value);
        chart
            .configure_mesh()
            .bold_line_style(GRID)
            .axis_style(AXIS)
            .label_style((FONT, TEXT_SIZE))
            .axis_desc_style((FONT, TEXT_SIZE))
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .draw()
            .map_err(text)?;
        // A frame around the plot (the mesh draws only the two axes).
        let (x, y) = (chart.x_range(), chart.y_range());
        chart
            .plotting_area()
            .draw(&Rectangle::new([(x.start, y.start), (x.end, y.end)], AXIS))
            .map_err(text)?;
        for series in &self.series {
            let points: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            let line = series.color.stroke_width(2);
            if series.dashed {
                chart
                    .draw_series(DashedLineSeries::new(points.clone(), 6, 4, line))
                    .map_err(text)?;
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), line))
                    .map_err(text)?;
            }
            let bar = series.color.mix(0.6).stroke_width(1);
            let bars = series
                .points
                .iter()
                .zip(&series.ranges)
                .filter_map(|(&(x, y), range)| {
                    let (low, high) = (*range)?;
                    [x, y, low, high]
                        .iter()
                        .all(|value| value.is_finite())
                        .then(|| ErrorBar::new_vertical(x, low, y, high, bar, 6))
                });
            chart.draw_series(bars).map_err(text)?;
            if series.markers {
                let marker = series.color.filled();
                chart
                    .draw_series(points.iter().map(|&point| Circle::new(point, 3, marker)))
                    .map_err(text)?;
            }
        }
        Ok(())
    }

    /// One line per series: a sample of its line and its name.
    fn draw_legend<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let label = (FONT, TEXT_SIZE)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (index, series) in self.series.iter().enumerate() {
            let y = 54 + 20 * index as i32;
            let sample = vec![(8, y), (34, y)];
            let line = series.color.stroke_width(2);
            if series.dashed {
                area.draw(&DashedPathElement::new(sample, 6, 4, line))
                    .map_err(text)?;
            } else {
                area.draw(&PathElement::new(sample, line)).map_err(text)?;
            }
            area.draw(&Text::new(series.name.as_str(), (40, y), label.clone()))
                .map_err(text)?;
        }
        Ok(())
    }
}

/// A linear axis with our ticks. (Plotters' own `with_key_points` over a
/// linear `f64` range loses the label formatting the mesh needs; its log
/// axis keeps it.)
struct Linear {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Linear {
    fn new(range: Range<f64>, ticks: Vec<f64>) -> Linear {
        Linear {
            inner: range.into(),
            ticks,
        }
    }
}

impl Ranged for Linear {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Grid lines at the ticks only: no light lines between them.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// The label of the tick at `value` (a key point we gave plotters).
fn tick_label(ticks: &[(f64, String)], value: f64) -> String {
    ticks
        .iter()
        .find(|(tick, _)| (tick - value).abs() <= tick.abs() * 1e-9)
        .map_or_else(String::new, |(_, label)| label.clone())
}

fn text(error: impl Display) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sig;

    #[test]
    fn a_chart_renders_as_one_svg_document_with_its_text_escaped() {
        let scale = Scale::Log {
            min: 1.0,
            max: 1000.0,
        };
        let chart = Chart {
            title: "t <1>".into(),
            subtitle: "a & b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale: scale,
            y_scale: Scale::Linear {
                min: 0.0,
                max: 500.0,
            },
            x_ticks: scale.ticks(sig),
            y_ticks: vec![(0.0, "none".into()), (300.0, "three hundred".into())],
            series: vec![Series {
                name: "solid \"s\"".into(),
                color: color(0),
                dashed: false,
                points: vec![(1.0, 2.0), (100.0, 300.0), (f64::NAN, 1.0)],
                ranges: vec![Some((1.5, 2.5)), None, None],
                markers: true,
            }],
        };
        let svg = chart.render().expect("drawn");
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        let lines = svg
            .lines()
            .filter(|line| line.starts_with("<polyline") && line.contains("stroke=\"#1F77B4\""))
            .count();
        assert_eq!(lines, 2, "the line and the legend's: {svg}");
        // Plotters writes each text on a line of its own.
        for text in [
            "t &lt;1&gt;",
            "a &amp; b",
            "solid &quot;s&quot;",
            "1,000",
            "three hundred",
        ] {
            assert!(svg.lines().any(|line| line == text), "no {text} in {svg}");
        }
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn ticks_cover_the_scale() {
        let ticks = Scale::Linear {
            min: 90.0,
            max: 100.0,
        }
        .ticks(sig);
        assert_eq!(ticks.first().map(|t| t.0), Some(90.0));
        assert_eq!(ticks.last().map(|t| t.0), Some(100.0));
        let decades = Scale::Log { min: 1.0, max: 1e6 }.ticks(sig);
        assert_eq!(decades.len(), 7);
        assert_eq!(
            Scale::log_covering([3.0, 1000.0].into_iter(), 10.0),
            Scale::Log {
                min: 1.0,
                max: 1000.0
            }
        );
    }
}
