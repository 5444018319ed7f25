//! Peak resident memory (VmHWM) of the system's processes, found by scanning `/proc`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One process's peak memory.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMemory {
    pub name: String,
    pub pid: u32,
    pub vm_hwm_kib: u64,
}

/// Every running process whose executable's file name is in `names` (and, if given, lives in
/// `dir`), with its VmHWM. Processes that vanish or cannot be read are skipped.
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
                vm_hwm_kib: vm_hwm_kib(&status)?,
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.pid.cmp(&b.pid)));
    found
}

/// `VmHWM:  12345 kB` from a `/proc/<pid>/status` text.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
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
        assert_eq!(
            vm_hwm_kib("Name:\tx\nVmHWM:\t  4242 kB\nVmRSS:\t1 kB\n"),
            Some(4242)
        );
        let me = std::env::current_exe().ok();
        let name = me
            .as_ref()
            .and_then(|p| p.file_name()?.to_str().map(str::to_owned));
        let found = peak_memory(&[name.unwrap_or_default()], None);
        assert!(
            found
                .iter()
                .any(|p| p.pid == std::process::id() && p.vm_hwm_kib > 0)
        );
    }
}
