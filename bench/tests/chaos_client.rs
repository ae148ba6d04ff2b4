//! The chaos client (`raft-bench chaos-client`, which `cargo xtask chaos` runs) against real
//! `raftd` processes, with the leader killed and restarted under load: every workload records
//! a history and every checker passes on it. The same path as a chaos run, in a few seconds,
//! so that the client and the checkers stay in working order between chaos runs.
//!
//! The raftd binary comes from `RAFT_BENCH_RAFTD` (`cargo xtask ci` points it at the debug
//! build the same test run makes); without it the test builds raftd with cargo first.

use raft_bench::binaries::test_raftd as raftd;
use raft_bench::chaos::{Spec, Workload, run};
use raft_bench::cluster::{Cluster, Server};
use raft_chaos::history::{
    AppendOp, BankOp, LockOp, RegisterOp, SreadOp, WatchRecord, WatchWrite, read_jsonl,
};
use raft_node::testing::CALM;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_check_passes_on_a_healthy_cluster_with_a_leader_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(Server::Raftd(raftd()), &dir.path().join("c"), 3, &CALM)
        .expect("cluster starts");
    let leader = cluster.leader(Duration::from_secs(30)).await.unwrap();
    let out = dir.path().join("run");
    let spec = Spec {
        endpoints: cluster.endpoints(),
        workloads: Workload::ALL.to_vec(),
        time: Duration::from_secs(6),
        seed: 1,
        out: out.clone(),
        register_clients: 3,
        bank_clients: 2,
        watch_writers: 1,
        watchers: 2,
        lock_clients: 2,
        append_clients: 2,
        sread_writers: 1,
        sread_readers: 2,
        timeout: Duration::from_secs(2),
        catch_up: Duration::from_secs(20),
        serializable_reads: false,
        unguarded_transfers: false,
        watch_resume_at_last: false,
        unfenced_lock_writes: false,
        unguarded_appends: false,
        sread_hop_members: false,
    };
    let client = tokio::spawn(run(spec));
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill9(leader).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.spawn(leader).unwrap();
    let summary = client.await.unwrap().expect("the client runs to its end");

    let register: Vec<RegisterOp> = read_jsonl(&out.join("register.jsonl")).unwrap();
    let bank: Vec<BankOp> = read_jsonl(&out.join("bank.jsonl")).unwrap();
    let writes: Vec<WatchWrite> = read_jsonl(&out.join("watch-writes.jsonl")).unwrap();
    let events: Vec<WatchRecord> = read_jsonl(&out.join("watch-events.jsonl")).unwrap();
    let lock: Vec<LockOp> = read_jsonl(&out.join("lock.jsonl")).unwrap();
    let append: Vec<AppendOp> = read_jsonl(&out.join("append.jsonl")).unwrap();
    let sread: Vec<SreadOp> = read_jsonl(&out.join("sread.jsonl")).unwrap();
    assert!(
        register.len() > 20,
        "{} register operations",
        register.len()
    );
    assert!(bank.len() > 10, "{} bank operations", bank.len());
    assert!(writes.len() > 10, "{} watched puts", writes.len());
    assert!(lock.len() > 10, "{} lock operations", lock.len());
    assert!(append.len() > 10, "{} append transactions", append.len());
    assert!(
        sread.len() > 10,
        "{} serializable reads and writes",
        sread.len()
    );
    assert!(summary.sread_final_revision > 0);
    assert_eq!(summary.bank_total, 100);
    assert!(summary.watch_last_revision >= summary.watch_start_revision);
    for v in [
        raft_chaos::register::check(&register),
        raft_chaos::bank::check(&bank, summary.bank_accounts, summary.bank_total),
        raft_chaos::watch::check(&writes, &events, &summary),
        raft_chaos::lock::check(&lock),
        raft_chaos::append::check(&append),
        raft_chaos::sread::check(&sread, summary.sread_final_revision),
    ] {
        assert!(v.ok, "{}\n{}", v.render(), cluster.logs(20));
    }
}
