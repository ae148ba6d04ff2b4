//! `protoc` for the one crate that needs it: raft-bench depends on the `etcd-client` crate,
//! whose build script runs `protoc`. Every cargo that xtask starts gets `PROTOC` (unless the
//! caller set it): the binary shipped in the `protoc-bin-vendored` crate, so a fresh machine
//! needs nothing installed. The other crates generate their code in pure Rust (protox).

use std::ffi::OsString;

/// The `PROTOC` value for child cargo processes: the caller's own when set, else the
/// vendored binary (None when this platform has none; a system `protoc` is then used).
pub fn path() -> Option<OsString> {
    if let Some(p) = std::env::var_os("PROTOC") {
        return Some(p);
    }
    match protoc_bin_vendored::protoc_bin_path() {
        Ok(p) => Some(p.into_os_string()),
        Err(e) => {
            eprintln!("xtask: no vendored protoc for this platform ({e}); using protoc from PATH");
            None
        }
    }
}
