//! Names and descriptions of the peer transport's metrics (recorded by `raft-net`).
