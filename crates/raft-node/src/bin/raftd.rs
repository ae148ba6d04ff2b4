//! `raftd`: a node of a replicated key-value store serving the etcd v3 API.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use clap::Parser;
use raft_node::cli::RaftdArgs;

/// mimalloc instead of the system allocator: the gRPC, sled and apply paths allocate per
/// request, and glibc's malloc took about a sixth of a leader's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = RaftdArgs::parse();
    let source = match args.overrides() {
        Ok(overrides) => raft_node::config::ConfigSource {
            file: args.config.clone(),
            overrides,
        },
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let config = match source.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.print_config {
        print!("{config}");
        return;
    }
    if args.check_config {
        println!("config OK");
        return;
    }
    if let Some(raft_node::cli::RaftdCommand::Defrag) = &args.command {
        let kv = config.data_dir().join("kv");
        match raft_kv::rebuild::rebuild_store(&kv) {
            Ok(d) => {
                println!(
                    "defragmented {}: {} bytes before, {} after",
                    kv.display(),
                    d.size_before,
                    d.size_after
                );
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!(
                    "raftd defrag: {}: {e} (is raftd still running on it?)",
                    kv.display()
                );
                std::process::exit(1);
            }
        }
    }
    if let Some(raft_node::cli::RaftdCommand::Restore(r)) = &args.command {
        let opts = match r.options(&config) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        match raft_node::restore::restore_data_dir(&opts) {
            Ok(done) => {
                let snapshot = match &done.source {
                    Some(s) => format!("snapshot {} (index {})", s.id, s.index),
                    None if std::path::Path::new(&opts.from).is_file() => {
                        format!("the snapshot file {}", opts.from)
                    }
                    None => "no snapshot (the WAL archive from index 1)".to_string(),
                };
                println!(
                    "restored {snapshot} and the old cluster's log up to index {} \
                     into {}: a one-member cluster (id {}) at index {}, term {}",
                    done.restored_index,
                    opts.data_dir.display(),
                    opts.id,
                    done.meta.index,
                    done.meta.term
                );
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("raftd restore: {e}");
                std::process::exit(1);
            }
        }
    }
    let log = match raft_node::logging::init(&config.log_filter, config.log_format) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("config error: {e}");
            std::process::exit(2);
        }
    };
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("raftd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(raft_node::node::run(config, source, log));
    // Everything durable is flushed by now; exit without waiting for background threads.
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("raftd: {e}");
            std::process::exit(1);
        }
    }
}
