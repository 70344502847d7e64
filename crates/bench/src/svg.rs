//! Line charts as standalone SVG documents, drawn by hand: no plotting
//! library, no fonts or scripts to fetch, so the files open anywhere.
//! [`Chart`] holds axes ([`Scale`], linear or logarithmic), ticks and
//! [`Series`] (lines, optional min-max bars and markers) and renders them
//! with a legend; the plots themselves are built in [`super::plots`].

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 58.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// How values map onto an axis.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scale {
    Linear { min: f64, max: f64 },
    Log { min: f64, max: f64 },
}

impl Scale {
    /// Where `value` falls, from 0 (min) to 1 (max).
    fn fraction(self, value: f64) -> f64 {
        match self {
            Scale::Linear { min, max } => (value - min) / (max - min),
            Scale::Log { min, max } => (value.ln() - min.ln()) / (max.ln() - min.ln()),
        }
    }

    /// A log scale covering `values` out to whole powers of ten (or of
    /// two, for `base` 2).
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

    /// Tick values with their labels.
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
    pub name: String,
    pub color: &'static str,
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
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub x_ticks: Vec<(f64, String)>,
    pub y_ticks: Vec<(f64, String)>,
    pub series: Vec<Series>,
}

impl Chart {
    /// The chart as an SVG document.
    pub(crate) fn render(&self) -> String {
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let x_at = |x: f64| LEFT + self.x_scale.fraction(x).clamp(-0.05, 1.05) * plot_width;
        let y_at = |y: f64| TOP + (1.0 - self.y_scale.fraction(y).clamp(-0.05, 1.05)) * plot_height;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
             viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{}</text>",
            LEFT,
            escape(&self.title)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"36\" font-size=\"11\" fill=\"#555\">{}</text>",
            LEFT,
            escape(&self.subtitle)
        );
        // Grid and ticks.
        for (value, label) in &self.x_ticks {
            let x = x_at(*value);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e4e4e4\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                TOP + plot_height,
                TOP + plot_height + 16.0,
                escape(label)
            );
        }
        for (value, label) in &self.y_ticks {
            let y = y_at(*value);
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + plot_width,
                LEFT - 6.0,
                y + 4.0,
                escape(label)
            );
        }
        let _ = writeln!(
            svg,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_width}\" height=\"{plot_height}\" \
             fill=\"none\" stroke=\"#333\"/>"
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + plot_width / 2.0,
            HEIGHT - 14.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            "<text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            TOP + plot_height / 2.0,
            escape(&self.y_label)
        );
        // Lines, range bars, markers.
        for series in &self.series {
            let path: Vec<String> = series
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(x, y)| format!("{:.1},{:.1}", x_at(*x), y_at(*y)))
                .collect();
            if path.is_empty() {
                continue;
            }
            let dash = if series.dashed {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
                path.join(" "),
                series.color
            );
            for ((x, _), range) in series.points.iter().zip(&series.ranges) {
                if let Some((low, high)) = range {
                    let x = x_at(*x);
                    let _ = writeln!(
                        svg,
                        "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{}\" \
                         stroke-width=\"1.5\" opacity=\"0.6\"/>",
                        y_at(*low),
                        y_at(*high),
                        series.color
                    );
                }
            }
            if series.markers {
                for (x, y) in &series.points {
                    let _ = writeln!(
                        svg,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                        x_at(*x),
                        y_at(*y),
                        series.color
                    );
                }
            }
        }
        // Legend.
        let legend_x = LEFT + plot_width + 16.0;
        for (index, series) in self.series.iter().enumerate() {
            let y = TOP + 10.0 + index as f64 * 20.0;
            let dash = if series.dashed {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                "<line x1=\"{legend_x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{}\" \
                 stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                legend_x + 26.0,
                series.color,
                legend_x + 32.0,
                y + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Text safe inside SVG elements and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn color(index: usize) -> &'static str {
    COLORS[index % COLORS.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sig;

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn a_chart_renders_as_one_svg_document() {
        let scale = Scale::Log {
            min: 1.0,
            max: 1000.0,
        };
        let chart = Chart {
            title: "t <1>".into(),
            subtitle: String::new(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale: scale,
            y_scale: scale,
            x_ticks: scale.ticks(sig),
            y_ticks: scale.ticks(sig),
            series: vec![Series {
                name: "s".into(),
                color: color(0),
                dashed: true,
                points: vec![(1.0, 2.0), (100.0, 300.0)],
                ranges: vec![Some((1.5, 2.5)), None],
                markers: true,
            }],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("t &lt;1&gt;"));
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
    }
}
