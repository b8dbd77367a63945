//! Line charts as hand-written SVG: no plotting dependency for two small plots.

use std::fmt::Write;

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    /// Drawn dashed (a reference line, such as the ideal).
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A chart with logarithmic (base 2 for x, base 10 or 2 for y) or linear axes.
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn render(&self) -> String {
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            if self.log_x && x <= 0.0 || self.log_y && y <= 0.0 {
                continue;
            }
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        if x_min > x_max {
            (x_min, x_max, y_min, y_max) = (1.0, 2.0, 1.0, 2.0);
        }
        let x_ticks = ticks(x_min, x_max, self.log_x, 2.0);
        let y_ticks = ticks(y_min, y_max, self.log_y, 10.0);
        let (x_lo, x_hi) = (x_ticks[0], *x_ticks.last().unwrap_or(&x_max));
        let (y_lo, y_hi) = (y_ticks[0], *y_ticks.last().unwrap_or(&y_max));
        let scale = |v: f64, lo: f64, hi: f64, log: bool| {
            let (v, lo, hi) = if log {
                (v.log10(), lo.log10(), hi.log10())
            } else {
                (v, lo, hi)
            };
            if hi > lo { (v - lo) / (hi - lo) } else { 0.5 }
        };
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let px = |x: f64| LEFT + scale(x, x_lo, x_hi, self.log_x) * plot_w;
        let py = |y: f64| TOP + plot_h - scale(y, y_lo, y_hi, self.log_y) * plot_h;

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="28" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );
        for &x in &x_ticks {
            let gx = px(x);
            let _ = writeln!(
                svg,
                r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 18.0,
                number(x)
            );
        }
        for &y in &y_ticks {
            let gy = py(y);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 8.0,
                gy + 4.0,
                number(y)
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 18.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let path: Vec<String> = series
                .points
                .iter()
                .filter(|&&(x, y)| !(self.log_x && x <= 0.0 || self.log_y && y <= 0.0))
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                path.join(" "),
                series.color
            );
            if !series.dashed {
                for point in &path {
                    let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
                    let _ = writeln!(
                        svg,
                        r#"<circle cx="{x}" cy="{y}" r="3.5" fill="{}"/>"#,
                        series.color
                    );
                }
            }
            let ly = TOP + 14.0 + 22.0 * i as f64;
            let lx = LEFT + plot_w + 16.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                lx + 24.0,
                series.color,
                lx + 30.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Tick values covering `[lo, hi]`: powers of `base` on a log axis, round steps otherwise.
fn ticks(lo: f64, hi: f64, log: bool, base: f64) -> Vec<f64> {
    if log {
        let mut decade = base.powf((lo.log(base)).floor());
        // Powers of 2; or 1-2-5 steps per decade for base 10.
        let steps: &[f64] = if base == 10.0 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let mut out = Vec::new();
        'outer: loop {
            for step in steps {
                let tick = decade * step;
                out.push(tick);
                if tick >= hi * 0.999_999 {
                    break 'outer;
                }
            }
            decade *= base;
        }
        if out.len() == 1 {
            out.push(out[0] * base);
        }
        return out;
    }
    let lo = lo.min(0.0);
    let span = (hi - lo).max(1e-9);
    let raw = span / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(magnitude * 10.0);
    let mut out = vec![(lo / step).floor() * step];
    while *out.last().unwrap_or(&hi) < hi - 1e-9 {
        let next = out.last().unwrap_or(&lo) + step;
        out.push(next);
    }
    out
}

fn number(v: f64) -> String {
    if v == v.round() && v.abs() < 1e7 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
