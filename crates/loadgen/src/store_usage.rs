//! What the run left in the in-memory state store, per task and by key family: read after the
//! settle from each app's sidecar (`sidecar_state_keys` and `sidecar_state_bytes` on its
//! `/metrics`, which counts that app's keys), one instance per app since the instances of an
//! app share its keys; and the memory each store holds all of them in
//! (`sidecar_state_reserved_bytes`, free space not yet compacted included), once per store.

use std::collections::BTreeSet;

use anyhow::Context;
use serde::Serialize;

use crate::shares::Instance;

/// One key family of one app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyUsage {
    pub app_id: String,
    pub family: String,
    pub keys: u64,
    /// Key text plus value as the store holds it.
    pub bytes: u64,
    pub bytes_per_task: f64,
}

/// The memory one store holds every app's keys and values in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreMemory {
    pub store: String,
    pub bytes: u64,
    pub bytes_per_task: f64,
}

/// What the store holds after the run: by app and family, and each store's memory.
#[derive(Debug, Default)]
pub struct Usage {
    pub families: Vec<FamilyUsage>,
    pub stores: Vec<StoreMemory>,
}

/// The `(store, bytes)` of each `sidecar_state_reserved_bytes` line of a `/metrics` page.
pub fn parse_reserved(page: &str) -> Vec<(String, u64)> {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("sidecar_state_reserved_bytes{")?;
            let (labels, value) = rest.rsplit_once("} ")?;
            Some((label(labels, "store")?, value.trim().parse().ok()?))
        })
        .collect()
}

fn per_task(bytes: u64, tasks: usize) -> f64 {
    (bytes as f64 / tasks.max(1) as f64 * 10.0).round() / 10.0
}

/// The families on a `/metrics` page: `(app_id, family, keys, bytes)`.
pub fn parse(page: &str) -> Vec<(String, String, u64, u64)> {
    let mut out: Vec<(String, String, u64, u64)> = Vec::new();
    for line in page.lines() {
        let (is_keys, rest) = if let Some(rest) = line.strip_prefix("sidecar_state_keys{") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("sidecar_state_bytes{") {
            (false, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        let (Some(app), Some(family)) = (label(labels, "app_id"), label(labels, "family")) else {
            continue;
        };
        let slot = match out.iter_mut().position(|r| r.0 == app && r.1 == family) {
            Some(i) => &mut out[i],
            None => {
                out.push((app, family, 0, 0));
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        if is_keys {
            slot.2 += value;
        } else {
            slot.3 += value;
        }
    }
    out
}

/// The value of label `name` in `a="x",b="y"` (the sidecar escapes no character families use).
fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(labels[start..end].to_owned())
}

/// Reads the families of every app of `instances` and each store's memory, divided by `tasks`,
/// largest first.
pub async fn measure(
    client: &reqwest::Client,
    instances: &[Instance],
    tasks: usize,
) -> anyhow::Result<Usage> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut stores: Vec<StoreMemory> = Vec::new();
    for i in instances {
        if !seen.insert(i.app_id.clone()) {
            continue;
        }
        let url = format!("http://127.0.0.1:{}/metrics", i.dapr_port);
        let page = client
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("{}'s sidecar: {url}", i.label))?
            .text()
            .await
            .with_context(|| format!("{}'s sidecar: {url}", i.label))?;
        for (app_id, family, keys, bytes) in parse(&page) {
            out.push(FamilyUsage {
                app_id,
                family,
                keys,
                bytes,
                bytes_per_task: per_task(bytes, tasks),
            });
        }
        for (store, bytes) in parse_reserved(&page) {
            // Every app's sidecar reports the same store: once is enough.
            if !stores.iter().any(|s| s.store == store) {
                stores.push(StoreMemory {
                    store,
                    bytes,
                    bytes_per_task: per_task(bytes, tasks),
                });
            }
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.bytes));
    Ok(Usage {
        families: out,
        stores,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_and_bytes_of_a_family_come_together() {
        let page = "\
# TYPE sidecar_state_keys gauge
sidecar_state_keys{app_id=\"audit-logger\",store=\"statestore\",family=\"trail:task:*:head\"} 3
sidecar_state_keys{app_id=\"audit-logger\",store=\"statestore\",family=\"ev:*\"} 6
# TYPE sidecar_state_bytes gauge
sidecar_state_bytes{app_id=\"audit-logger\",store=\"statestore\",family=\"trail:task:*:head\"} 300
sidecar_state_bytes{app_id=\"audit-logger\",store=\"statestore\",family=\"ev:*\"} 240
sidecar_state_keysx{app_id=\"a\",family=\"f\"} 1
resiliency_count{app_id=\"a\"} 1
# TYPE sidecar_state_reserved_bytes gauge
sidecar_state_reserved_bytes{store=\"statestore\"} 1048576
";
        let got = parse(page);
        assert_eq!(
            got,
            [
                ("audit-logger".into(), "trail:task:*:head".into(), 3, 300),
                ("audit-logger".into(), "ev:*".into(), 6, 240),
            ]
        );
        assert_eq!(parse_reserved(page), [("statestore".to_owned(), 1_048_576)]);
    }
}
