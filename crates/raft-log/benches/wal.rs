//! WAL benchmarks (placeholder).
fn main() {}
