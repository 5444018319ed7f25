//! One test binary for the whole-system tests: the task flow over the real binaries and the SIGKILL
//! durability run, the trace that spans them all, the console in a browser, and the benchmark
//! scripts over the real binaries, and the run script's checks on a fresh machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod durability_support;

mod bench_scripts;
mod console;
mod durability;
mod run_script;
mod scaled;
mod subscriber_crash;
mod task_flow;
mod traces;
