//! One test binary for the whole-system tests: the task flow over the real binaries and the SIGKILL
//! durability run, the trace that spans them all, and the console in a browser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod durability_support;

mod console;
mod durability;
mod scaled;
mod subscriber_crash;
mod task_flow;
mod traces;
