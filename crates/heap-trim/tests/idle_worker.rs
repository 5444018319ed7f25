//! A worker that frees a burst of memory and then goes idle gives it back to the OS.
//!
//! Its own test binary: it reads the process's resident size, which other tests running beside
//! it would move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident memory of this process (`VmRSS`), in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

const BURST: usize = 96 << 20;

#[test]
fn a_worker_gives_back_a_freed_burst_once_it_parks() {
    let runtime = heap_trim::on_park(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all(),
    )
    .build()
    .unwrap();
    let before = resident();
    runtime.block_on(async {
        tokio::spawn(async move {
            // Small blocks, like a broker backlog's messages: they fill pages of a worker's heap,
            // and once freed those pages wait for a purge that only runs when that worker calls
            // into the allocator again.
            let blocks: Vec<Box<[u8; 240]>> =
                (0..BURST / 240).map(|i| Box::new([i as u8; 240])).collect();
            let held = resident();
            assert!(
                held > before + BURST as u64 / 2,
                "the burst was resident: {held} vs {before}"
            );
            drop(blocks);
        })
        .await
        .unwrap();
    });
    // Nothing runs on the workers from here on: they stay parked.
    let deadline = Instant::now() + Duration::from_secs(10);
    let limit = before + BURST as u64 / 8;
    loop {
        let now = resident();
        if now <= limit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the burst was freed the process still holds {} MiB of it",
            (now - before) >> 20
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
