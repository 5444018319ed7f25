//! The table of a run's instances, printed once every app has started: which app instance
//! listens where and runs as which process. Scripts and tests read it to find the instances of a
//! scaled app, whose ports are not in the run file; the format is one header line and one
//! whitespace-separated row per instance, `-` for nothing.

use std::io::Write;

/// One instance of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The app id, with `#index` when the app has several instances.
    pub instance: String,
    pub app_port: Option<u16>,
    pub dapr_http_port: u16,
    pub dapr_grpc_port: u16,
    pub metrics_port: u16,
    /// `None`: the app has no command, only its sidecar runs.
    pub pid: Option<u32>,
}

/// The column titles.
pub const HEADER: [&str; 6] = [
    "APP",
    "APP PORT",
    "DAPR HTTP PORT",
    "DAPR GRPC PORT",
    "METRICS PORT",
    "PID",
];

/// The table as text, columns padded to their widest cell.
pub fn render(rows: &[Row]) -> String {
    let dash = || "-".to_owned();
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.instance.clone(),
                r.app_port.map_or_else(dash, |p| p.to_string()),
                r.dapr_http_port.to_string(),
                r.dapr_grpc_port.to_string(),
                r.metrics_port.to_string(),
                r.pid.map_or_else(dash, |p| p.to_string()),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&HEADER);
    for row in &cells {
        out.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    out
}

/// Prints the table to stdout in one write, so app output cannot cut into it, followed by the
/// console's URL after a blank line (readers of the table stop at the blank line).
pub fn print(rows: &[Row], console_url: Option<String>) {
    let mut text = render(rows);
    if let Some(url) = console_url {
        text.push_str(&format!("\nConsole: {url}\n"));
    }
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(%error, "cannot print the table of apps");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_is_a_row_under_aligned_titles() {
        let row = |instance: &str, app_port, pid| Row {
            instance: instance.to_owned(),
            app_port,
            dapr_http_port: 3501,
            dapr_grpc_port: 50001,
            metrics_port: 9090,
            pid,
        };
        let text = render(&[
            row("email-worker#1", Some(8081), Some(42)),
            row("email-worker#2", Some(40123), Some(43)),
            row("sidecar-only", None, None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("APP             APP PORT"), "{text}");
        let fields: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            fields,
            ["email-worker#2", "40123", "3501", "50001", "9090", "43"]
        );
        let fields: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(fields, ["sidecar-only", "-", "3501", "50001", "9090", "-"]);
        let col = lines[0].find("DAPR HTTP PORT").unwrap();
        assert_eq!(&lines[1][col..col + 4], "3501", "{text}");
    }
}
