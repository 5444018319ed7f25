//! Scan benchmark (filled in below).
fn main() {}
