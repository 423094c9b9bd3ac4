//! A comparison as a table for a terminal and as an SVG plot of the trade-off: cold starts
//! against wasted memory, one point per policy, fixed keep-alives joined as a curve. (JSON is
//! the serde form of [`Comparison`].)

use std::fmt::Write;

use crate::compare::{BASELINE, Comparison};
use crate::engine::PolicyOutcome;

impl Comparison {
    /// The comparison as an aligned table with a heading.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}\n{} functions, {} calls over {} minutes; policy tick {} s; a cold start costs {} ms",
            self.trace,
            thousands(self.functions as f64),
            thousands(self.invocations as f64),
            thousands(self.minutes as f64),
            self.options.tick / 1000,
            self.options.load_ms,
        );
        if let Some(budget) = self.options.budget_mb {
            let _ = writeln!(out, "memory budget: {} MB", thousands(budget));
        } else if let Some(budget) = self.implied_budget_mb {
            let _ = writeln!(
                out,
                "budget for lru and gdsf: {} MB (the mean resident memory of {BASELINE})",
                thousands(budget)
            );
        }
        let header = [
            "policy",
            "cold starts",
            "p75 fn cold",
            "wasted memory",
            "vs fixed:10m",
            "mean resident",
            "peak resident",
            "pre-warms (hits)",
        ];
        let rows: Vec<[String; 8]> = self.outcomes.iter().map(row).collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[&str]| {
            let mut text = String::new();
            for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                if i == 0 {
                    let _ = write!(text, "{cell:<width$}");
                } else {
                    let _ = write!(text, "  {cell:>width$}");
                }
            }
            text
        };
        let _ = writeln!(out, "\n{}", line(&header));
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            let _ = writeln!(out, "{}", line(&cells));
        }
        out
    }

    /// The trade-off as a standalone SVG document: two panels (share of calls that were cold;
    /// the 75th-percentile function's cold-start percentage) against wasted memory relative to
    /// the baseline.
    pub fn svg(&self) -> String {
        let width = 1000.0;
        let height = 470.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"##
        );
        let _ = writeln!(
            out,
            r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="22" text-anchor="middle" font-size="15">Keep-alive policies: cold starts against wasted memory ({} functions, {} calls)</text>"##,
            width / 2.0,
            thousands(self.functions as f64),
            thousands(self.invocations as f64),
        );
        let panels: [(&str, Measure); 2] = [
            ("cold starts, % of calls", |o| o.cold_start_pct),
            ("p75 per-function cold starts, %", |o| {
                o.p75_function_cold_start_pct
            }),
        ];
        for (n, (title, y_of)) in panels.into_iter().enumerate() {
            let frame = Frame {
                left: 70.0 + n as f64 * 490.0,
                top: 50.0,
                width: 400.0,
                height: 360.0,
            };
            self.panel(&mut out, &frame, title, y_of);
        }
        let _ = writeln!(out, "</svg>");
        out
    }

    fn panel(&self, out: &mut String, frame: &Frame, title: &str, y_of: Measure) {
        let points: Vec<(f64, f64, &PolicyOutcome)> = self
            .outcomes
            .iter()
            .map(|o| (o.wasted_vs_baseline_pct.unwrap_or(0.0), y_of(o), o))
            .collect();
        let (x_step, x_max) = axis(points.iter().map(|p| p.0).fold(0.0, f64::max) * 1.05);
        let (y_step, y_max) = axis(points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.05);
        let x = |v: f64| frame.left + v / x_max * frame.width;
        let y = |v: f64| frame.top + frame.height - v / y_max * frame.height;
        let bottom = frame.top + frame.height;
        let _ = writeln!(
            out,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            frame.left, frame.top, frame.width, frame.height
        );
        for (step, max, horizontal) in [(x_step, x_max, true), (y_step, y_max, false)] {
            for i in 0.. {
                let v = step * f64::from(i);
                if v > max + 1e-9 {
                    break;
                }
                if horizontal {
                    let _ = writeln!(
                        out,
                        r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#eee"/><text x="{0}" y="{3}" text-anchor="middle">{4}</text>"##,
                        x(v),
                        frame.top,
                        bottom,
                        bottom + 16.0,
                        short(v)
                    );
                } else {
                    let _ = writeln!(
                        out,
                        r##"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#eee"/><text x="{3}" y="{4}" text-anchor="end">{5}</text>"##,
                        frame.left,
                        y(v),
                        frame.left + frame.width,
                        frame.left - 6.0,
                        y(v) + 4.0,
                        short(v)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle">wasted memory-time, % of fixed 10-minute keep-alive</text>"##,
            frame.left + frame.width / 2.0,
            bottom + 36.0
        );
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle">{title}</text>"##,
            frame.left + frame.width / 2.0,
            frame.top - 8.0
        );
        // Each family of settings (fixed keep-alives, Kindling's hazards) as one curve.
        for family in ["fixed-ttl", "kindling"] {
            let mut curve: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.2.name.starts_with(family))
                .map(|p| (x(p.0), y(p.1)))
                .collect();
            curve.sort_by(|a, b| a.0.total_cmp(&b.0));
            if curve.len() > 1 {
                let path: Vec<String> = curve
                    .iter()
                    .map(|(a, b)| format!("{a:.1},{b:.1}"))
                    .collect();
                let _ = writeln!(
                    out,
                    r##"<polyline points="{}" fill="none" stroke="{}" stroke-opacity="0.6" stroke-dasharray="4 3"/>"##,
                    path.join(" "),
                    color(family)
                );
            }
        }
        let centres: Vec<(f64, f64)> = points.iter().map(|p| (x(p.0), y(p.1))).collect();
        for ((cx, cy), (px, py, outcome)) in centres.iter().zip(&points) {
            let radius = if outcome.policy == BASELINE || outcome.policy == "kindling" {
                6.0
            } else {
                4.5
            };
            let _ = writeln!(
                out,
                r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="{radius}" fill="{}"><title>{}: {py:.2}, {px:.1}% wasted</title></circle>"##,
                color(&outcome.name),
                escape(&outcome.policy),
            );
        }
        // Labels where they overlap neither another label nor a point, the most important
        // first; a label pushed away from its point gets a leader line.
        let mut order: Vec<usize> = (0..points.len()).collect();
        order.sort_by_key(|&i| match points[i].2.policy.as_str() {
            "kindling" => 0,
            BASELINE => 1,
            _ => 2,
        });
        let mut placed: Vec<[f64; 4]> = Vec::new();
        for i in order {
            let (cx, cy) = centres[i];
            let outcome = points[i].2;
            let width = 6.6 * outcome.policy.chars().count() as f64;
            let free = |rect: &[f64; 4]| {
                placed.iter().all(|r| !overlaps(r, rect))
                    && centres
                        .iter()
                        .all(|&(px, py)| !overlaps(rect, &[px - 5.0, py - 5.0, px + 5.0, py + 5.0]))
            };
            let candidates = LABEL_OFFSETS.iter().map(|&(dx, dy)| {
                let left = if dx >= 0.0 { cx + dx } else { cx + dx - width };
                [left, cy + dy - 10.0, left + width, cy + dy + 2.0]
            });
            let rect = candidates
                .clone()
                .find(|r| free(r))
                .unwrap_or_else(|| candidates.clone().next().expect("offsets"));
            if (rect[3] - 4.0 - cy).abs() > 12.0 {
                let anchor_x = if rect[0] > cx { rect[0] } else { rect[2] };
                let _ = writeln!(
                    out,
                    r##"<line x1="{cx:.1}" y1="{cy:.1}" x2="{anchor_x:.1}" y2="{:.1}" stroke="{}" stroke-opacity="0.5"/>"##,
                    rect[3] - 4.0,
                    color(&outcome.name)
                );
            }
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" fill="{}">{}</text>"##,
                rect[0],
                rect[3] - 2.0,
                color(&outcome.name),
                escape(&outcome.policy)
            );
            placed.push(rect);
        }
    }
}

/// Where a label may go relative to its point: right or left, then further up or down.
const LABEL_OFFSETS: [(f64, f64); 14] = [
    (8.0, -4.0),
    (8.0, 12.0),
    (-8.0, -4.0),
    (-8.0, 12.0),
    (8.0, -18.0),
    (8.0, 26.0),
    (-8.0, -18.0),
    (-8.0, 26.0),
    (14.0, -32.0),
    (14.0, 40.0),
    (-14.0, -32.0),
    (-14.0, 40.0),
    (20.0, -46.0),
    (20.0, 54.0),
];

fn overlaps(a: &[f64; 4], b: &[f64; 4]) -> bool {
    a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
}

/// What a panel plots upwards.
type Measure = fn(&PolicyOutcome) -> f64;

struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

fn row(outcome: &PolicyOutcome) -> [String; 8] {
    let gb_hours = outcome.wasted_mb_minutes / 1024.0 / 60.0;
    [
        match outcome.budget_mb {
            Some(budget) => format!("{} ({} MB)", outcome.policy, thousands(budget)),
            None => outcome.policy.clone(),
        },
        format!("{:.2}%", outcome.cold_start_pct),
        format!("{:.1}%", outcome.p75_function_cold_start_pct),
        if gb_hours < 100.0 {
            format!("{gb_hours:.2} GB-h")
        } else {
            format!("{} GB-h", thousands(gb_hours))
        },
        outcome
            .wasted_vs_baseline_pct
            .map_or("-".into(), |p| format!("{p:.1}%")),
        format!("{:.1} GB", outcome.mean_resident_mb / 1024.0),
        format!("{:.1} GB", outcome.peak_resident_mb / 1024.0),
        format!(
            "{} ({})",
            thousands(outcome.prewarms as f64),
            thousands(outcome.prewarm_hits as f64)
        ),
    ]
}

fn color(name: &str) -> &'static str {
    match name {
        n if n.starts_with("fixed-ttl") => "#555555",
        "lru" => "#1f77b4",
        "gdsf" => "#9467bd",
        "hybrid-histogram" => "#ff7f0e",
        "kindling" => "#d62728",
        _ => "#2ca02c",
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < -0.5 {
        out.insert(0, '-');
    }
    out
}

/// An axis label without needless decimals.
fn short(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// A round tick step (1, 2, 2.5 or 5 times a power of ten) giving about five ticks up to
/// `value`, and the axis end: the first multiple of the step at or above it.
fn axis(value: f64) -> (f64, f64) {
    if value <= 0.0 {
        return (0.2, 1.0);
    }
    let rough = value / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&c| c >= rough - 1e-12)
        .unwrap_or(10.0 * power);
    (step, (value / step - 1e-9).ceil() * step)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(thousands(927_272.0), "927,272");
        assert_eq!(thousands(12.4), "12");
        assert_eq!(thousands(-1500.0), "-1,500");
        assert_eq!(axis(105.0), (25.0, 125.0));
        assert_eq!(axis(167.0), (50.0, 200.0));
        assert_eq!(axis(9.9), (2.0, 10.0));
        assert_eq!(short(20.0), "20");
        assert_eq!(short(0.5), "0.5");
    }
}
