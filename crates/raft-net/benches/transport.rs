//! Transport benchmarks (filled in later).
fn main() {}
