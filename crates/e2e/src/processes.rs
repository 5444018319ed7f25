//! What `/proc` says about processes: a parent's children and whether a process still runs.
//! Used to check that stopping a run leaves nothing behind.

/// A running process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    /// The program as started (`argv[0]`).
    pub program: String,
}

/// `(ppid, state)` from `/proc/<pid>/stat`; the command name may contain spaces and parentheses,
/// so the fields are read after the last `)`.
fn stat(pid: i32) -> Option<(i32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// True while `pid` exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    matches!(stat(pid), Some((_, state)) if state != 'Z' && state != 'X')
}

/// The live children of `parent`.
pub fn children_of(parent: i32) -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<ProcessInfo> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| matches!(stat(*pid), Some((ppid, state)) if ppid == parent && state != 'Z'))
        .map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let program = cmdline
                .split(|b| *b == 0)
                .next()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_default();
            ProcessInfo { pid, program }
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sees_its_own_child_and_its_end() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let me = i32::try_from(std::process::id()).unwrap();
        // Between fork and exec the child has no command line yet, so poll until it has one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut kids = children_of(me);
        while !kids.iter().any(|k| k.pid == pid && k.program == "sleep")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
            kids = children_of(me);
        }
        assert!(
            kids.iter().any(|k| k.pid == pid && k.program == "sleep"),
            "{kids:?}"
        );
        assert!(is_running(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_running(pid));
        assert!(!children_of(me).iter().any(|k| k.pid == pid));
    }
}
