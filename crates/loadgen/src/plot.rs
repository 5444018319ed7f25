//! The latency plot, written as plain SVG: end-to-end latency of each request over the run
//! (left) and the latency CDFs of HTTP and end-to-end (right). Hand-written primitives keep the
//! build free of font libraries.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::driver::Run;

const W: f64 = 1000.0;
const H: f64 = 420.0;
const PANEL_W: f64 = 400.0;
const PANEL_H: f64 = 300.0;
const TOP: f64 = 60.0;

struct Panel {
    left: f64,
    x_max: f64,
    y_max: f64,
}

impl Panel {
    fn x(&self, v: f64) -> f64 {
        self.left + v / self.x_max * PANEL_W
    }
    fn y(&self, v: f64) -> f64 {
        TOP + PANEL_H - v / self.y_max * PANEL_H
    }
    fn axes(
        &self,
        svg: &mut String,
        title: &str,
        x_label: &str,
        y_label: &str,
        y_fmt: fn(f64) -> String,
    ) {
        let (l, b) = (self.left, TOP + PANEL_H);
        let _ = write!(
            svg,
            r##"<rect x="{l}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#444"/>"##
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="15">{title}</text>"#,
            l + PANEL_W / 2.0,
            TOP - 12.0
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#,
            l + PANEL_W / 2.0,
            b + 38.0
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{y_label}</text>"#,
            l - 48.0,
            TOP + PANEL_H / 2.0,
            l - 48.0,
            TOP + PANEL_H / 2.0
        );
        for i in 0..=4 {
            let f = f64::from(i) / 4.0;
            let (xv, yv) = (self.x_max * f, self.y_max * f);
            let (x, y) = (self.x(xv), self.y(yv));
            let _ = write!(
                svg,
                r##"<line x1="{l}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##,
                l + PANEL_W
            );
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                l - 6.0,
                y + 4.0,
                y_fmt(yv)
            );
            let _ = write!(
                svg,
                r#"<text x="{x}" y="{}" text-anchor="middle">{:.0}</text>"#,
                b + 18.0,
                xv
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sorted values as CDF points (value, fraction).
fn cdf(mut values: Vec<f64>) -> Vec<(f64, f64)> {
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, (i + 1) as f64 / n))
        .collect()
}

fn polyline(svg: &mut String, points: impl Iterator<Item = (f64, f64)>, color: &str) {
    let pts: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        svg,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
        pts.join(" ")
    );
}

pub fn render(run: &Run) -> String {
    let ok: Vec<_> = run.samples.iter().filter(|s| s.error.is_none()).collect();
    let e2e: Vec<(f64, f64)> = ok
        .iter()
        .filter_map(|s| Some((s.sent_at.as_secs_f64(), ms(s.e2e?))))
        .collect();
    let http: Vec<f64> = ok.iter().map(|s| ms(s.http)).collect();
    let lat_max = e2e
        .iter()
        .map(|p| p.1)
        .chain(http.iter().copied())
        .fold(1.0, f64::max)
        * 1.05;
    let t_max = e2e.iter().map(|p| p.0).fold(1.0, f64::max).ceil();

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let over_time = Panel {
        left: 80.0,
        x_max: t_max,
        y_max: lat_max,
    };
    over_time.axes(
        &mut svg,
        "End-to-end latency per request",
        "request sent at (s)",
        "latency (ms)",
        |v| format!("{v:.0}"),
    );
    for (t, l) in &e2e {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="1.3" fill="#1f77b4" fill-opacity="0.5"/>"##,
            over_time.x(*t),
            over_time.y(*l)
        );
    }
    let cdfs = Panel {
        left: 570.0,
        x_max: lat_max,
        y_max: 1.0,
    };
    cdfs.axes(
        &mut svg,
        "Latency CDF",
        "latency (ms)",
        "fraction of requests",
        |v| format!("{v:.2}"),
    );
    polyline(
        &mut svg,
        cdf(http).into_iter().map(|(v, f)| (cdfs.x(v), cdfs.y(f))),
        "#ff7f0e",
    );
    polyline(
        &mut svg,
        cdf(e2e.iter().map(|p| p.1).collect())
            .into_iter()
            .map(|(v, f)| (cdfs.x(v), cdfs.y(f))),
        "#1f77b4",
    );
    let legend_y = TOP + PANEL_H - 40.0;
    let _ = write!(
        svg,
        r##"<rect x="{}" y="{}" width="12" height="3" fill="#ff7f0e"/><text x="{}" y="{}">HTTP (POST /api/tasks)</text>"##,
        cdfs.left + 200.0,
        legend_y,
        cdfs.left + 218.0,
        legend_y + 5.0
    );
    let _ = write!(
        svg,
        r##"<rect x="{}" y="{}" width="12" height="3" fill="#1f77b4"/><text x="{}" y="{}">end-to-end (email accepted)</text>"##,
        cdfs.left + 200.0,
        legend_y + 18.0,
        cdfs.left + 218.0,
        legend_y + 23.0
    );
    svg.push_str("</svg>\n");
    svg
}

pub fn write(run: &Run, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render(run))?;
    Ok(())
}
