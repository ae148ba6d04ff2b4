//! The fault switch for failure drills: with `RAFTD_FAULT_INJECTION=1` in its environment,
//! raftd cuts itself off from its peers on SIGUSR1 and reconnects on SIGUSR2 (the peer
//! transport's [`set_isolated`](raft_net::PeerTransport::set_isolated)). Clients can still
//! reach it. Never enable this in production.

use tokio::signal::unix::{SignalKind, signal};

/// The environment variable that enables the fault switch.
pub const ENV: &str = "RAFTD_FAULT_INJECTION";

/// True when the environment enables the fault switch.
pub fn enabled() -> bool {
    std::env::var(ENV).is_ok_and(|v| v == "1")
}

/// Flips the transport's fault switch on SIGUSR1 (isolate) and SIGUSR2 (heal); runs until
/// aborted.
pub async fn serve(net: raft_net::PeerTransport) -> std::io::Result<()> {
    let mut cut = signal(SignalKind::user_defined1())?;
    let mut heal = signal(SignalKind::user_defined2())?;
    tracing::warn!("{ENV}=1: SIGUSR1 isolates this node from its peers, SIGUSR2 heals");
    loop {
        tokio::select! {
            Some(()) = cut.recv() => {
                tracing::warn!("fault switch: isolated from every peer");
                net.set_isolated(true);
            }
            Some(()) = heal.recv() => {
                tracing::warn!("fault switch: healed");
                net.set_isolated(false);
            }
            else => return Ok(()),
        }
    }
}
