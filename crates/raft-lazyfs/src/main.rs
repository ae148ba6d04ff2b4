//! `raft-lazyfs`: mounts the power-loss file system, or sends a command to a mounted one
//! (see the library's documentation).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use parking_lot::Mutex;
use raft_lazyfs::control;
use raft_lazyfs::fuse::{LazyFs, State};
use raft_lazyfs::model::DirRule;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(about = "A FUSE file system that drops what was not fsynced on command")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mounts an empty file system on DIR and serves it until SIGTERM or SIGINT.
    Mount {
        /// The mount point (an existing directory).
        dir: PathBuf,
        /// Where to put the control socket.
        #[arg(long)]
        control: PathBuf,
        /// Only an fsync of a directory makes its entries durable (by default an fsync of a
        /// file or directory also makes the entries naming it, and its ancestors', durable,
        /// as ext4 with data=ordered does).
        #[arg(long)]
        strict_dirs: bool,
    },
    /// Sends a command (crash, stats, ping) to a mounted file system's control socket.
    Ctl {
        /// The control socket.
        socket: PathBuf,
        /// The command.
        command: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Mount {
            dir,
            control,
            strict_dirs,
        } => mount(dir, control, strict_dirs),
        Cmd::Ctl { socket, command } => {
            let answer = control::request(&socket, &command)?;
            #[allow(clippy::print_stdout)]
            {
                println!("{answer}");
            }
            Ok(())
        }
    }
}

fn mount(dir: PathBuf, socket: PathBuf, strict: bool) -> Result<()> {
    let rule = if strict {
        DirRule::Strict
    } else {
        DirRule::Ordered
    };
    let meta = std::fs::metadata(&dir).with_context(|| format!("mount point {}", dir.display()))?;
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        (meta.uid(), meta.gid())
    };
    let state = Arc::new(Mutex::new(State::new(rule, uid, gid)));
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("raft-lazyfs".into()),
        fuser::MountOption::Subtype("raft-lazyfs".into()),
    ];
    let session =
        fuser::spawn_mount(LazyFs::new(state.clone()), &dir, &config).with_context(|| {
            format!(
                "mounting on {} (needs /dev/fuse and root, or fusermount3)",
                dir.display()
            )
        })?;
    control::serve(&socket, state)
        .with_context(|| format!("control socket {}", socket.display()))?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "raft-lazyfs: mounted on {} ({rule:?} directory rule), control socket {}",
            dir.display(),
            socket.display()
        );
    }
    let _ = signals.forever().next();
    drop(session);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
