//! Names and descriptions of the write-ahead log's metrics (recorded by `raft-log`).
