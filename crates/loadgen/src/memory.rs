//! Resident memory of the system's processes, found by scanning `/proc`: the peak (VmHWM), and
//! the current size (VmRSS) before the run and after it has settled, to tell what a run leaves
//! behind per task.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One process's peak memory.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMemory {
    pub name: String,
    pub pid: u32,
    pub vm_hwm_kib: u64,
    /// Resident memory when read (VmRSS).
    #[serde(skip)]
    pub vm_rss_kib: u64,
}

/// What one process holds after the run compared with before it.
#[derive(Debug, Clone, Serialize)]
pub struct RetainedMemory {
    pub name: String,
    pub pid: u32,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// `(after - before) / tasks created`, in bytes (negative when the process shrank).
    pub bytes_per_task: f64,
}

/// The processes found both `before` and `after` (same pid), with their growth per task.
pub fn retained(
    before: &[ProcessMemory],
    after: &[ProcessMemory],
    tasks: usize,
) -> Vec<RetainedMemory> {
    after
        .iter()
        .filter_map(|a| {
            let b = before.iter().find(|b| b.pid == a.pid && b.name == a.name)?;
            let grown = (a.vm_rss_kib as f64 - b.vm_rss_kib as f64) * 1024.0;
            Some(RetainedMemory {
                name: a.name.clone(),
                pid: a.pid,
                rss_before_kib: b.vm_rss_kib,
                rss_after_kib: a.vm_rss_kib,
                bytes_per_task: (grown / tasks.max(1) as f64).round(),
            })
        })
        .collect()
}

/// Every running process whose executable's file name is in `names` (and, if given, lives in
/// `dir`), with its VmHWM and VmRSS. Processes that vanish or cannot be read are skipped.
pub fn peak_memory(names: &[String], dir: Option<&Path>) -> Vec<ProcessMemory> {
    let dir = dir.and_then(|d| fs::canonicalize(d).ok());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<ProcessMemory> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let exe: PathBuf = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let name = exe.file_name()?.to_str()?.to_owned();
            if !names.contains(&name) || dir.as_ref().is_some_and(|d| exe.parent() != Some(d)) {
                return None;
            }
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            Some(ProcessMemory {
                name,
                pid,
                vm_hwm_kib: status_kib(&status, "VmHWM:")?,
                vm_rss_kib: status_kib(&status, "VmRSS:")?,
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.pid.cmp(&b.pid)));
    found
}

/// The kB figure of a line such as `VmHWM:  12345 kB` (`field` is `"VmHWM:"`) from a
/// `/proc/<pid>/status` text.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_hwm_and_finds_this_process() {
        let status = "Name:\tx\nVmHWM:\t  4242 kB\nVmRSS:\t1 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(4242));
        assert_eq!(status_kib(status, "VmRSS:"), Some(1));
        let me = std::env::current_exe().ok();
        let name = me
            .as_ref()
            .and_then(|p| p.file_name()?.to_str().map(str::to_owned));
        let found = peak_memory(&[name.unwrap_or_default()], None);
        assert!(
            found
                .iter()
                .any(|p| p.pid == std::process::id() && p.vm_hwm_kib > 0 && p.vm_rss_kib > 0)
        );
    }

    #[test]
    fn retained_memory_is_the_growth_per_task_of_the_same_process() {
        let at = |pid, rss| ProcessMemory {
            name: "sidecar".into(),
            pid,
            vm_hwm_kib: 0,
            vm_rss_kib: rss,
        };
        let kept = retained(
            &[at(1, 1000), at(2, 500)],
            &[at(1, 3000), at(3, 9000)],
            1024,
        );
        assert_eq!(
            kept.len(),
            1,
            "a process restarted in between is not compared"
        );
        assert_eq!(kept[0].rss_before_kib, 1000);
        assert_eq!(kept[0].rss_after_kib, 3000);
        assert_eq!(kept[0].bytes_per_task, 2000.0);
    }
}
