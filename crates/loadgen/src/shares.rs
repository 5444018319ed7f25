//! Each instance's share of the work, for a run with scaled apps (`sidecar run -f --scale`): the
//! instances come from the table the runner prints once everything has started (`--run-log`), and
//! each one's work from a counter on its own `/metrics` page, read after the load.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// The counter that measures an app's work, per app id, and what it counts.
const WORK: [(&str, &str, &str); 4] = [
    (
        "task-api",
        "task_api_changes_committed_total",
        "changes committed",
    ),
    ("email-worker", "emails_sent_total", "emails sent"),
    (
        "audit-logger",
        "audit_entries_total",
        "audit entries appended",
    ),
    (
        "reminder-scheduler",
        "reminder_task_events_total",
        "task events handled",
    ),
];

/// One instance of the runner's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `app-id` or `app-id#index`.
    pub label: String,
    pub app_id: String,
    pub app_port: u16,
    /// Its sidecar's HTTP port.
    pub dapr_port: u16,
}

/// What one instance did.
#[derive(Debug, Clone, Serialize)]
pub struct Share {
    pub instance: String,
    pub work: &'static str,
    pub count: f64,
    /// Of the app's total over all its instances, 0..=1.
    pub share: f64,
}

/// The instances of the last table in `log` (the runner's output).
pub fn instances(log: &str) -> Vec<Instance> {
    let lines: Vec<&str> = log.lines().collect();
    let Some(start) = lines
        .iter()
        .rposition(|l| l.starts_with("APP ") && l.contains("DAPR HTTP PORT"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in lines.iter().skip(start + 1) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let [label, app_port, dapr_port, _, _, _] = cells[..] else {
            break;
        };
        let Ok(dapr_port) = dapr_port.parse::<u16>() else {
            break;
        };
        let Ok(app_port) = app_port.parse() else {
            continue;
        };
        let app_id = label.rsplit_once('#').map_or(label, |(id, _)| id);
        out.push(Instance {
            label: label.to_owned(),
            app_id: app_id.to_owned(),
            app_port,
            dapr_port,
        });
    }
    out
}

/// Sum of every series of counter `name` in a Prometheus text page.
pub fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        // Not `sum()`: an empty float sum is -0.0, which prints as such.
        .fold(0.0, |a, b| a + b)
}

/// Reads each instance's counter and works out its share of its app's total. Apps with one
/// instance are left out: their share is all of it.
pub async fn measure(client: &reqwest::Client, run_log: &Path) -> anyhow::Result<Vec<Share>> {
    let log = std::fs::read_to_string(run_log)
        .with_context(|| format!("--run-log {}", run_log.display()))?;
    let all = instances(&log);
    anyhow::ensure!(
        !all.is_empty(),
        "--run-log {}: no table of instances in it",
        run_log.display()
    );
    let mut by_app: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for i in &all {
        by_app.entry(i.app_id.as_str()).or_default().push(i);
    }
    let mut shares = Vec::new();
    for (app_id, metric, work) in WORK {
        let Some(list) = by_app.get(app_id).filter(|l| l.len() > 1) else {
            continue;
        };
        let mut counts = Vec::new();
        for i in list {
            let url = format!("http://127.0.0.1:{}/metrics", i.app_port);
            let page = client
                .get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("{}: {url}", i.label))?
                .text()
                .await
                .with_context(|| format!("{}: {url}", i.label))?;
            counts.push((i.label.clone(), counter(&page, metric)));
        }
        let total = counts.iter().fold(0.0, |a, (_, c)| a + c);
        for (instance, count) in counts {
            shares.push(Share {
                instance,
                work,
                count,
                share: if total > 0.0 {
                    (count / total * 1000.0).round() / 1000.0
                } else {
                    0.0
                },
            });
        }
    }
    Ok(shares)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_last_table_of_the_log_gives_the_instances() {
        let log = "\
APP    APP PORT  DAPR HTTP PORT  DAPR GRPC PORT  METRICS PORT  PID
old    1         2               3               4             5
== APP - old == bye
APP             APP PORT  DAPR HTTP PORT  DAPR GRPC PORT  METRICS PORT  PID
task-api        8080      3500            40001           40002         11
email-worker#1  8081      3501            40003           40004         12
email-worker#2  40005     40006           40007           40008         13
sidecar-only    -         40009           40010           40011         -
== APP - task-api == started
";
        let got = instances(log);
        let labels: Vec<&str> = got.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["task-api", "email-worker#1", "email-worker#2"]);
        assert_eq!(got[2].app_id, "email-worker");
        assert_eq!(got[2].app_port, 40005);
        assert_eq!(got[2].dapr_port, 40006);
    }

    #[test]
    fn a_counter_sums_its_series_and_ignores_longer_names() {
        let page = "\
# TYPE emails_sent_total counter
emails_sent_total{event_type=\"task-created\"} 7
emails_sent_total{event_type=\"task-due-soon\"} 2
emails_sent_total_other 100
emails_sent_total 1
";
        assert_eq!(counter(page, "emails_sent_total"), 10.0);
    }
}
