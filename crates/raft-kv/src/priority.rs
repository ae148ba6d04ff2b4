//! The CPU priority of the crate's background threads (snapshot writing, physical
//! compaction): below apply's, so that they take what apply leaves.

/// The nice value [`lower_thread_priority`] gives the calling thread.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to nice [`BACKGROUND_NICE`] (Linux; elsewhere
/// it does nothing), for the thread that writes a snapshot.
///
/// Copy-on-write capture takes no lock that apply waits for, so what a snapshot still takes
/// from apply is CPU: the record reads, zstd, the checksums and the cleanup of pre-images
/// and dirty lists. At nice 10 the snapshot thread gets about a tenth of a core that apply
/// also wants, and whatever is otherwise idle, so apply keeps its throughput and the
/// snapshot takes longer on a busy machine. Call it on a thread that does nothing else (a
/// thread cannot raise its priority again without privileges). A thread already at or
/// above nice 10 is left alone.
pub fn lower_thread_priority() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let current = rustix::process::getpriority_process(Some(tid))?;
        if current < BACKGROUND_NICE {
            rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE)?;
        }
    }
    Ok(())
}
