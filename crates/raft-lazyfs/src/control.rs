//! The control socket of a mounted file system: a Unix stream socket taking one command
//! line per connection and answering one line.
//!
//! - `crash`: a power loss now: everything not made durable is dropped
//!   ([`Model::crash`](crate::model::Model::crash)); answers
//!   `ok inodes_lost=N files_rolled_back=N unsynced_bytes=N`. Stop the processes using
//!   the file system first (kill -9): their open files are forgotten.
//! - `stats`: `ok writes=N bytes_written=N fsyncs=N dir_fsyncs=N crashes=N live_bytes=N
//!   open_handles=N rule=ordered|strict`.
//! - `ping`: `ok`.
//!
//! Anything else gets `error: ...`.

use crate::fuse::State;
use crate::model::DirRule;
use parking_lot::Mutex;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Answers one command.
pub fn answer(state: &Mutex<State>, command: &str) -> String {
    match command.trim() {
        "crash" => {
            let r = state.lock().crash();
            format!(
                "ok inodes_lost={} files_rolled_back={} unsynced_bytes={}",
                r.inodes_lost, r.files_rolled_back, r.unsynced_bytes
            )
        }
        "stats" => {
            let (s, open) = state.lock().stats();
            let rule = match state.lock().rule() {
                DirRule::Ordered => "ordered",
                DirRule::Strict => "strict",
            };
            format!(
                "ok writes={} bytes_written={} fsyncs={} dir_fsyncs={} crashes={} \
                 live_bytes={} open_handles={open} rule={rule}",
                s.writes, s.bytes_written, s.fsyncs, s.dir_fsyncs, s.crashes, s.live_bytes
            )
        }
        "ping" => "ok".to_string(),
        other => format!("error: unknown command `{other}` (crash, stats, ping)"),
    }
}

/// Serves the control socket at `path` (replacing a stale one) on a thread of its own.
pub fn serve(path: &Path, state: Arc<Mutex<State>>) -> io::Result<std::thread::JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    Ok(std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let _ = handle(conn, &state);
        }
    }))
}

fn handle(conn: UnixStream, state: &Mutex<State>) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let mut out = answer(state, &line);
    out.push('\n');
    (&conn).write_all(out.as_bytes())
}

/// Sends `command` to the control socket at `path` and returns the answer (an `error: ...`
/// answer is an error).
pub fn request(path: &Path, command: &str) -> io::Result<String> {
    let mut conn = UnixStream::connect(path)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    conn.write_all(format!("{command}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let line = line.trim().to_string();
    if line.starts_with("ok") {
        Ok(line)
    } else {
        Err(io::Error::other(format!(
            "{}: {command}: {}",
            path.display(),
            if line.is_empty() { "no answer" } else { &line }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_answers_crash_stats_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl");
        let state = Arc::new(Mutex::new(State::new(DirRule::Ordered, 0, 0)));
        serve(&sock, state.clone()).unwrap();
        assert_eq!(request(&sock, "ping").unwrap(), "ok");
        let stats = request(&sock, "stats").unwrap();
        assert!(
            stats.contains("crashes=0") && stats.contains("rule=ordered"),
            "{stats}"
        );
        let crash = request(&sock, "crash").unwrap();
        assert_eq!(
            crash,
            "ok inodes_lost=0 files_rolled_back=0 unsynced_bytes=0"
        );
        assert!(request(&sock, "stats").unwrap().contains("crashes=1"));
        let err = request(&sock, "reboot").unwrap_err().to_string();
        assert!(err.contains("unknown command `reboot`"), "{err}");
    }
}
