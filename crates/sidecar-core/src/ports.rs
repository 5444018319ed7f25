//! Loopback ports to hand to a process that binds them later: the runner's extra instances of a
//! scaled app (`sidecar run --scale`) and the test harness's apps and sidecars.
//!
//! A port the kernel hands out for `:0` comes from its ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), the range it also gives every outgoing connection
//! as its local port. Between picking such a port and the process's own bind, a connection opened
//! anywhere on the machine can take it, and the process fails with "Address already in use". So
//! the ports here come from below that range, where only an explicit bind can take one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Clear of the well-known services a machine may run.
const LOW: u16 = 10_000;

/// A loopback port nobody listens on (checked by binding it) below the kernel's ephemeral range;
/// `None` only when every port of the machine is taken. Each call starts from a different place
/// (the process id, then a counter), so processes picking ports side by side rarely try the same
/// one.
#[must_use]
pub fn free_loopback_port() -> Option<u16> {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let (low, end) = fixed_range();
    let span = u32::from(end - low);
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        // 97 is prime: unless the span is a multiple of it, the walk visits every port of the
        // range before it repeats one (and the kernel's choice below ends a walk that does).
        let offset = start.wrapping_add(call.wrapping_mul(97)) % span;
        let Ok(port) = u16::try_from(u32::from(low) + offset) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Some(port);
        }
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .ok()
}

/// `[low, end)`: the ports from 10000 up to the kernel's ephemeral range, read once per process.
/// Linux's default range starts at 32768.
fn fixed_range() -> (u16, u16) {
    static RANGE: OnceLock<(u16, u16)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32_768);
        // A machine whose ephemeral range starts low leaves little room below it: there, 20000
        // ports from 10000 on, which may collide as the kernel's own choice would.
        if ephemeral_start > LOW + 1_000 {
            (LOW, ephemeral_start)
        } else {
            (LOW, LOW + 20_000)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_below_the_ephemeral_range_and_are_free() {
        let (low, end) = fixed_range();
        let picked: Vec<u16> = (0..20).filter_map(|_| free_loopback_port()).collect();
        assert_eq!(picked.len(), 20);
        for port in &picked {
            assert!((low..end).contains(port), "{port} outside [{low}, {end})");
            assert!(std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok());
        }
        let mut distinct = picked.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            picked.len(),
            "a port was handed out twice: {picked:?}"
        );
    }
}
