//! etcd authentication on a real 3-member `raftd` cluster: users, roles and permissions set up
//! with Debian's etcdctl 3.4 (`user add`, `role add`, `role grant-permission`,
//! `user grant-role`, `auth enable`, `--user name:password`), and the negative cases: no
//! user, a wrong password, a read outside the user's role, a txn with one forbidden op in
//! its failure branch, a watch outside the role, `lease timetolive --keys` with a key outside
//! the role, compaction and member changes by a non-root
//! user, `auth disable` by a non-root user; over raw gRPC: a token obtained on one member
//! used on the others, a token expiring after its time to live without use, `AuthStatus`.
//!
//! The etcdctl test needs etcdctl on PATH (Debian's `etcd-client`); without it the test is
//! skipped, except under `CI=true` where it fails.
//!
//! Over 700 lines on purpose: every negative case needs the same cluster with users and
//! roles set up first, done once by the helpers at the top.

#![allow(clippy::print_stdout)]

use bytes::Bytes;
use raft_kv::pb::etcdserverpb::{
    AuthStatusRequest, AuthenticateRequest, PutRequest, RangeRequest, RangeResponse,
    auth_client::AuthClient, kv_client::KvClient,
};
use raft_node::testing::{Cluster, EtcdctlOutput, Raftd, etcdctl, etcdctl_retried};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Every member: tokens live 3 s without use, password hashes at bcrypt's minimum cost.
fn start() -> Cluster {
    let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd")).calm().args([
        "--set",
        "auth.token_ttl=3s",
        "--set",
        "auth.bcrypt_cost=4",
    ]);
    Cluster::start(raftd, 3).expect("raftd starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_users_roles_and_permissions() {
    let Some(bin) = etcdctl() else {
        println!("skipping etcdctl_users_roles_and_permissions: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start();
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let eps = cluster.endpoints().join(",");
        let run = |args: &[&str]| etcdctl_run(&bin, &eps, args, None);
        let ok = |args: &[&str]| {
            let o = run(args);
            assert!(o.ok, "etcdctl {args:?} failed: {}", o.stderr);
            o.stdout
        };
        let fails = |args: &[&str], why: &str| {
            let o = run(args);
            assert!(!o.ok, "etcdctl {args:?} succeeded: {}", o.stdout);
            assert!(
                o.stderr.contains(why),
                "etcdctl {args:?}: expected {why:?}, got {}",
                o.stderr
            );
        };

        // Set-up, with authentication still off.
        assert!(
            ok(&["user", "add", "root", "--new-user-password=rootpw"])
                .contains("User root created")
        );
        ok(&["user", "add", "alice", "--new-user-password=alicepw"]);
        fails(
            &["user", "add", "alice", "--new-user-password=x"],
            "etcdserver: user name already exists",
        );
        ok(&["role", "add", "app"]);
        ok(&[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "app/",
            "--prefix=true",
        ]);
        ok(&["role", "grant-permission", "app", "read", "cfg"]);
        fails(
            &["user", "grant-role", "alice", "nope"],
            "etcdserver: role name not found",
        );
        fails(
            &["user", "grant-role", "bob", "app"],
            "etcdserver: user name not found",
        );
        ok(&["user", "grant-role", "alice", "app"]);
        ok(&["put", "cfg", "v1"]);
        // root lacks the root role: etcdctl knows etcd's "root user does not have root role"
        // by its message, adds the role, grants it and enables again.
        assert!(ok(&["auth", "enable"]).contains("Authentication Enabled"));

        // Without a user, and with a wrong password.
        fails(&["put", "app/x", "1"], "etcdserver: user name is empty");
        fails(
            &["--user", "alice:wrong", "get", "app/x"],
            "etcdserver: authentication failed, invalid user ID or password",
        );
        fails(
            &["--user", "mallory:pw", "get", "app/x"],
            "etcdserver: authentication failed, invalid user ID or password",
        );

        // Inside and outside alice's role.
        let alice = ["--user", "alice:alicepw"];
        let root = ["--user", "root:rootpw"];
        let with = |who: &[&str], args: &[&str]| -> Vec<String> {
            who.iter().chain(args).map(|s| s.to_string()).collect()
        };
        let as_ok = |who: &[&str], args: &[&str]| {
            let a = with(who, args);
            ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let as_fails = |who: &[&str], args: &[&str], why: &str| {
            let a = with(who, args);
            fails(&a.iter().map(String::as_str).collect::<Vec<_>>(), why)
        };
        assert_eq!(as_ok(&alice, &["put", "app/x", "1"]), "OK\n");
        assert_eq!(as_ok(&alice, &["get", "app/", "--prefix"]), "app/x\n1\n");
        assert_eq!(as_ok(&alice, &["get", "cfg"]), "cfg\nv1\n");
        as_fails(
            &alice,
            &["put", "cfg", "v2"],
            "etcdserver: permission denied",
        );
        assert_eq!(as_ok(&root, &["put", "secret", "s"]), "OK\n");
        as_fails(&alice, &["get", "secret"], "etcdserver: permission denied");
        as_fails(
            &alice,
            &["get", "a", "--prefix"],
            "etcdserver: permission denied",
        );
        as_fails(&alice, &["del", "secret"], "etcdserver: permission denied");

        // `lease timetolive --keys` needs read on every key attached to the lease (etcd 3.5's
        // rule); without --keys anyone may ask.
        let granted = as_ok(&root, &["lease", "grant", "600"]);
        let lease = granted.split_whitespace().nth(1).unwrap().to_string();
        let lease_opt = format!("--lease={lease}");
        as_ok(&root, &["put", "app/leased", "1", &lease_opt]);
        let ttl = as_ok(&alice, &["lease", "timetolive", &lease, "--keys"]);
        assert!(ttl.contains("attached keys([app/leased])"), "{ttl}");
        as_ok(&root, &["put", "zz/leased", "1", &lease_opt]);
        as_fails(
            &alice,
            &["lease", "timetolive", &lease, "--keys"],
            "etcdserver: permission denied",
        );
        assert!(as_ok(&alice, &["lease", "timetolive", &lease]).contains("remaining"));
        assert!(as_ok(&root, &["lease", "timetolive", &lease, "--keys"]).contains("zz/leased"));
        fails(
            &["lease", "timetolive", &lease, "--keys"],
            "etcdserver: user name is empty",
        );

        // A txn whose failure branch holds one forbidden op: refused whole, nothing written.
        let txn = "value(\"app/x\") = \"1\"\n\nput app/y 2\n\nput secret 3\n\n";
        let o = etcdctl_run(
            &bin,
            &eps,
            &with(&alice, &["txn"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            Some(txn),
        );
        assert!(
            !o.ok && o.stderr.contains("etcdserver: permission denied"),
            "{}",
            o.stderr
        );
        assert_eq!(as_ok(&root, &["get", "app/y"]), "");
        assert_eq!(as_ok(&root, &["get", "secret"]), "secret\ns\n");
        // The same txn without it runs.
        let txn = "value(\"app/x\") = \"1\"\n\nput app/y 2\n\nget cfg\n\n";
        let o = etcdctl_run(
            &bin,
            &eps,
            &with(&alice, &["txn"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            Some(txn),
        );
        assert!(
            o.ok && o.stdout.starts_with("SUCCESS"),
            "{} {}",
            o.stdout,
            o.stderr
        );

        // A watch outside the role is refused by the server (an accepted watch would never
        // end: etcdctl's output says why it ended; no time bound).
        let watch = with(&alice, &["watch", "secret"]);
        let o = etcdctl_run(
            &bin,
            &eps,
            &watch.iter().map(String::as_str).collect::<Vec<_>>(),
            None,
        );
        assert!(!o.ok, "the watch was not refused: {}", o.stdout);
        assert!(
            format!("{}{}", o.stdout, o.stderr).contains("permission denied"),
            "{} {}",
            o.stdout,
            o.stderr
        );

        // Compaction, member changes and auth management are root's.
        as_fails(&alice, &["compact", "2"], "etcdserver: permission denied");
        as_fails(
            &alice,
            &["member", "add", "x", "--peer-urls=http://127.0.0.1:1"],
            "permission denied",
        );
        as_fails(&alice, &["user", "list"], "etcdserver: permission denied");
        as_fails(
            &alice,
            &["role", "add", "r2"],
            "etcdserver: permission denied",
        );
        as_fails(
            &alice,
            &["auth", "disable"],
            "etcdserver: permission denied",
        );
        // A user reads itself and its roles.
        assert!(as_ok(&alice, &["user", "get", "alice"]).contains("app"));
        assert!(as_ok(&alice, &["role", "get", "app"]).contains("app/"));
        assert!(as_ok(&root, &["compact", "2"]).contains("compacted revision 2"));
        assert_eq!(as_ok(&root, &["user", "list"]), "alice\nroot\n");
        assert_eq!(as_ok(&root, &["role", "list"]), "app\nroot\n");
        assert_eq!(
            as_ok(&root, &["user", "get", "root"]),
            "User: root\nRoles: root\n"
        );
        as_fails(
            &root,
            &["user", "delete", "root"],
            "etcdserver: invalid auth management",
        );

        // A revoked permission is enforced at once, on every member.
        as_ok(
            &root,
            &["role", "revoke-permission", "app", "app/", "--prefix=true"],
        );
        for ep in cluster.endpoints() {
            let o = etcdctl_run(
                &bin,
                &ep,
                &with(&alice, &["put", "app/z", "1"])
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                None,
            );
            assert!(
                !o.ok && o.stderr.contains("permission denied"),
                "{ep}: {}",
                o.stderr
            );
        }

        // Off again: anyone may.
        assert!(as_ok(&root, &["auth", "disable"]).contains("Authentication Disabled"));
        assert_eq!(ok(&["put", "app/x", "2"]), "OK\n");
        assert_eq!(ok(&["get", "secret"]), "secret\ns\n");
    })
    .await
    .expect("test took longer than its budget");
}

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("token", token.parse().unwrap());
    r
}

/// Runs `f` until it answers something else than UNAVAILABLE (no leader known yet, a leader
/// change), for up to 20 s.
async fn retry<T, F, Fut>(mut f: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f().await {
            Err(e) if e.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return r.map(tonic::Response::into_inner),
        }
    }
}

/// [`retry`] of one call of a client's `method` with `req` (a fresh clone per attempt).
macro_rules! call {
    ($client:expr, $method:ident, $req:expr) => {
        retry(|| {
            let mut c = $client.clone();
            let req = $req;
            async move { c.$method(req).await }
        })
    };
}

fn range_k0() -> RangeRequest {
    RangeRequest {
        key: Bytes::from_static(b"k0"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_travel_between_members_and_expire_without_use() {
    use raft_kv::pb::etcdserverpb::{
        AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = start();
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let eps = cluster.endpoints();
        let auth = AuthClient::new(channel(&eps[0]).await);
        let status = call!(auth, auth_status, AuthStatusRequest {})
            .await
            .unwrap();
        assert!(!status.enabled);
        call!(
            auth,
            user_add,
            AuthUserAddRequest {
                name: "root".into(),
                password: "pw".into(),
                options: None,
            }
        )
        .await
        .unwrap();
        call!(
            auth,
            user_grant_role,
            AuthUserGrantRoleRequest {
                user: "root".into(),
                role: "root".into(),
            }
        )
        .await
        .unwrap();
        call!(auth, auth_enable, AuthEnableRequest {})
            .await
            .unwrap();
        let status = call!(auth, auth_status, AuthStatusRequest {})
            .await
            .unwrap();
        assert!(status.enabled);
        assert_eq!(status.auth_revision, 3);
        let err = call!(
            auth,
            authenticate,
            AuthenticateRequest {
                name: "root".into(),
                password: "nope".into(),
            }
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.message(),
            "etcdserver: authentication failed, invalid user ID or password"
        );
        let token = call!(
            auth,
            authenticate,
            AuthenticateRequest {
                name: "root".into(),
                password: "pw".into(),
            }
        )
        .await
        .unwrap()
        .token;
        // The token works on every member at once: each applied its Authenticate entry
        // (a member that has not yet waits for it).
        for (i, ep) in eps.iter().enumerate() {
            let kv = KvClient::new(channel(ep).await);
            call!(
                kv,
                put,
                with_token(
                    PutRequest {
                        key: Bytes::from(format!("k{i}")),
                        value: Bytes::from_static(b"v"),
                        ..Default::default()
                    },
                    &token,
                )
            )
            .await
            .unwrap_or_else(|e| panic!("put on {ep} with the token: {e}"));
        }
        // Without a token: refused.
        let kv = KvClient::new(channel(&eps[1]).await);
        let err = call!(kv, range, range_k0()).await.unwrap_err();
        assert_eq!(err.message(), "etcdserver: user name is empty");
        // Used within its time to live (3 s), the token lives on...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            call!(kv, range, with_token(range_k0(), &token))
                .await
                .expect("a token in use stays valid");
        }
        // ...and expires after it without use.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let err = call!(kv, range, with_token(range_k0(), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.message(), "etcdserver: invalid auth token");
        // The Lock service runs as its caller: root may lock, nobody else.
        let token = call!(
            auth,
            authenticate,
            AuthenticateRequest {
                name: "root".into(),
                password: "pw".into(),
            }
        )
        .await
        .unwrap()
        .token;
        {
            use raft_kv::pb::etcdserverpb::{LeaseGrantRequest, lease_client::LeaseClient};
            use raft_kv::pb::v3lockpb::{LockRequest, UnlockRequest, lock_client::LockClient};
            let ch = channel(&eps[2]).await;
            let lease = call!(
                LeaseClient::new(ch.clone()),
                lease_grant,
                with_token(LeaseGrantRequest { ttl: 30, id: 0 }, &token)
            )
            .await
            .unwrap()
            .id;
            let lock = LockClient::new(ch);
            let err = call!(
                lock,
                lock,
                LockRequest {
                    name: Bytes::from_static(b"jobs"),
                    lease,
                }
            )
            .await
            .unwrap_err();
            assert_eq!(err.message(), "etcdserver: user name is empty");
            let held = call!(
                lock,
                lock,
                with_token(
                    LockRequest {
                        name: Bytes::from_static(b"jobs"),
                        lease,
                    },
                    &token
                )
            )
            .await
            .unwrap();
            assert!(held.key.starts_with(b"jobs/"));
            call!(
                lock,
                unlock,
                with_token(
                    UnlockRequest {
                        key: held.key.clone()
                    },
                    &token
                )
            )
            .await
            .unwrap();
        }
        // A made-up token too.
        let err = call!(kv, range, with_token(range_k0(), "forged.1"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    })
    .await
    .expect("test took longer than its budget");
}

/// With `--client-cert-auth` and authentication on, a client certificate's common name is
/// its user (etcd's behaviour): etcdctl with alice's certificate and no `--user` is alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_common_name_is_the_user() {
    let Some(bin) = etcdctl() else {
        println!("skipping client_certificate_common_name_is_the_user: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        use raft_node::certs::Validity;
        use raft_node::testing::TlsFiles;
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::generate(&dir.path().join("certs"), true).unwrap();
        let alice_pem = files
            .ca
            .client("alice", Validity::For(Duration::from_secs(86_400)))
            .unwrap();
        let (alice_cert, alice_key) = alice_pem.write(dir.path(), "alice").unwrap();
        let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .calm()
            .tls(files.clone())
            .args(["--set", "auth.bcrypt_cost=4"]);
        let cluster = Cluster::start(raftd, 1).expect("raftd starts");
        cluster.leader(Duration::from_secs(30)).await.unwrap();
        let eps = format!("https://{}", cluster.endpoint(1));
        let c = &files.certs;
        let ca = c.ca.display().to_string();
        let (root_cert, root_key) = (
            c.client.0.display().to_string(),
            c.client.1.display().to_string(),
        );
        let (alice_cert, alice_key) = (
            alice_cert.display().to_string(),
            alice_key.display().to_string(),
        );
        let as_cert = |cert: &str, key: &str, args: &[&str]| {
            let mut a = vec!["--cacert", &ca, "--cert", cert, "--key", key];
            a.extend_from_slice(args);
            etcdctl_run(&bin, &eps, &a, None)
        };
        let root = |args: &[&str]| {
            let o = as_cert(&root_cert, &root_key, args);
            assert!(o.ok, "etcdctl {args:?} as root: {}", o.stderr);
            o.stdout
        };
        root(&["user", "add", "root", "--new-user-password=rootpw"]);
        root(&["user", "grant-role", "root", "root"]);
        root(&["user", "add", "alice", "--new-user-password=alicepw"]);
        root(&["role", "add", "app"]);
        root(&[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "app/",
            "--prefix=true",
        ]);
        root(&["user", "grant-role", "alice", "app"]);
        root(&["auth", "enable"]);
        // The root certificate acts as root: anything goes, operator calls included.
        assert_eq!(root(&["put", "secret", "s"]), "OK\n");
        assert!(root(&["member", "list"]).contains("started"));
        // Alice's certificate acts as alice.
        let o = as_cert(&alice_cert, &alice_key, &["put", "app/x", "1"]);
        assert!(o.ok, "{}", o.stderr);
        let o = as_cert(&alice_cert, &alice_key, &["get", "secret"]);
        assert!(
            !o.ok && o.stderr.contains("etcdserver: permission denied"),
            "{}",
            o.stderr
        );
        let o = as_cert(&alice_cert, &alice_key, &["compact", "2"]);
        assert!(
            !o.ok && o.stderr.contains("etcdserver: permission denied"),
            "{}",
            o.stderr
        );
        // A token wins over the certificate: alice's certificate with root's password.
        let o = as_cert(
            &alice_cert,
            &alice_key,
            &["--user", "root:rootpw", "get", "secret"],
        );
        assert!(
            o.ok && o.stdout == "secret\ns\n",
            "{} {}",
            o.stdout,
            o.stderr
        );
    })
    .await
    .expect("test took longer than its budget");
}

/// `GET path` on the plain HTTP endpoint `addr` with extra header lines; the status code and
/// the body.
async fn http_get(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// With authentication on and no TLS, `/status` (like pprof) answers only the root user:
/// HTTP Basic credentials or a root token; `/metrics` stays open. raftctl's Admin and KV
/// calls work with `--user`, and are refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_status_page_answers_root_once_auth_is_on() {
    use base64::Engine as _;
    use raft_kv::pb::etcdserverpb::{
        AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, MemberListRequest,
        cluster_client::ClusterClient,
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd"))
            .calm()
            .with_metrics()
            .args(["--set", "auth.bcrypt_cost=4"]);
        let cluster = Cluster::start(raftd, 1).expect("raftd starts");
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        // The member publishes its client URL through the log after it sees a leader;
        // `raftctl status` below reaches members by that URL, so wait until it is applied.
        let members = ClusterClient::new(channel(&cluster.endpoint(1)).await);
        cluster
            .eventually(20, "member 1 to publish its client URL", || {
                let mut c = members.clone();
                async move {
                    let list = c
                        .member_list(MemberListRequest { linearizable: true })
                        .await
                        .ok()?
                        .into_inner();
                    list.members
                        .iter()
                        .any(|m| m.id == 1 && !m.client_ur_ls.is_empty())
                        .then_some(())
                }
            })
            .await;
        let http = cluster.metrics(1).to_string();
        assert_eq!(
            http_get(&http, "/status", &[]).await.0,
            200,
            "open while auth is off"
        );
        let auth = AuthClient::new(channel(&cluster.endpoint(1)).await);
        for (name, pw) in [("root", "rootpw"), ("alice", "alicepw")] {
            call!(
                auth,
                user_add,
                AuthUserAddRequest {
                    name: name.into(),
                    password: pw.into(),
                    options: None,
                }
            )
            .await
            .unwrap();
        }
        call!(
            auth,
            user_grant_role,
            AuthUserGrantRoleRequest {
                user: "root".into(),
                role: "root".into(),
            }
        )
        .await
        .unwrap();
        call!(auth, auth_enable, AuthEnableRequest {})
            .await
            .unwrap();
        let basic = |cred: &str| {
            format!(
                "Authorization: Basic {}",
                base64::engine::general_purpose::STANDARD.encode(cred)
            )
        };
        let (code, body) = http_get(&http, "/status", &[]).await;
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("root"), "{body}");
        assert_eq!(
            http_get(&http, "/status", &[&basic("root:wrong")]).await.0,
            403
        );
        assert_eq!(
            http_get(&http, "/status", &[&basic("alice:alicepw")])
                .await
                .0,
            403
        );
        let (code, body) = http_get(&http, "/status", &[&basic("root:rootpw")]).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"leader\""), "{body}");
        let token = call!(
            auth,
            authenticate,
            AuthenticateRequest {
                name: "root".into(),
                password: "rootpw".into(),
            }
        )
        .await
        .unwrap()
        .token;
        let header = format!("token: {token}");
        assert_eq!(http_get(&http, "/status", &[&header]).await.0, 200);
        assert_eq!(http_get(&http, "/metrics", &[]).await.0, 200);
        // raftctl: its Admin calls need root too, which `--user` gives it; so do its KV calls.
        let raftctl = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_raftctl"))
                .args(["--endpoints", &cluster.endpoint(1), "--timeout", "5s"])
                .args(args)
                .output()
                .unwrap();
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        };
        let (ok, out) = raftctl(&["status"]);
        assert!(!ok && out.contains("permission denied"), "{out}");
        let (ok, out) = raftctl(&["--user", "root:rootpw", "status"]);
        assert!(ok, "{out}");
        let (ok, out) = raftctl(&["put", "k", "v"]);
        assert!(!ok && out.contains("user name is empty"), "{out}");
        let (ok, out) = raftctl(&["--user", "root:rootpw", "put", "k", "v"]);
        assert!(ok, "{out}");
        let (ok, out) = raftctl(&["--user", "root:nope", "get", "k"]);
        assert!(
            !ok && out.contains("authentication failed, invalid user ID or password"),
            "{out}"
        );
    })
    .await
    .expect("test took longer than its budget");
}

/// JWT keys for a test cluster: an ES256 pair in `dir`, and raftd's `--auth-token` value.
fn jwt_flag(dir: &std::path::Path, ttl: &str) -> String {
    let k = rcgen::KeyPair::generate().unwrap();
    let (private, public) = (dir.join("jwt.key"), dir.join("jwt.pub"));
    std::fs::write(&private, k.serialize_pem()).unwrap();
    std::fs::write(&public, k.public_key_pem()).unwrap();
    format!(
        "jwt,pub-key={},priv-key={},sign-method=ES256,ttl={ttl}",
        public.display(),
        private.display()
    )
}

/// etcd's JWT tokens (`--auth-token jwt,...`) on 3 members: etcdctl works against every
/// member; a token issued by one member is accepted by the others without the log; an
/// expired token, a forged one (another user under the old signature, or signed with
/// another key) are "invalid auth token"; a token older than the auth revision is "revision
/// of auth store is old"; a key file that is not there stops raftd at start with a config
/// error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_verify_on_every_member_and_expire() {
    use base64::Engine as _;
    let Some(bin) = etcdctl() else {
        println!("skipping jwt_tokens_verify_on_every_member_and_expire: etcdctl is not on PATH");
        return;
    };
    tokio::time::timeout(TEST_TIMEOUT, async {
        let keys = tempfile::tempdir().unwrap();
        let flag = jwt_flag(keys.path(), "4s");

        // A wrong key file at start: a clear config error, before anything starts.
        let out = Command::new(env!("CARGO_BIN_EXE_raftd"))
            .args(["--id", "1", "--data-dir"])
            .arg(keys.path().join("unused"))
            .args([
                "--auth-token",
                &format!(
                    "jwt,pub-key={}/missing.pub,sign-method=ES256",
                    keys.path().display()
                ),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("auth.token pub-key") && stderr.contains("missing.pub"),
            "{stderr}"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_raftd"))
            .args(["--id", "1", "--data-dir"])
            .arg(keys.path().join("unused"))
            .args([
                "--auth-token",
                &format!(
                    "jwt,pub-key={},sign-method=RS256",
                    keys.path().join("jwt.pub").display()
                ),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("not a RS256 public key"), "{stderr}");

        let raftd = Raftd::new(env!("CARGO_BIN_EXE_raftd")).calm().args([
            "--set",
            "auth.bcrypt_cost=4",
            "--auth-token",
            &flag,
        ]);
        let cluster = Cluster::start(raftd, 3).expect("raftd starts");
        cluster.leader(Duration::from_secs(20)).await.unwrap();
        let eps = cluster.endpoints();
        let all = eps.join(",");
        let ok = |ep: &str, args: &[&str]| {
            let o = etcdctl_run(&bin, ep, args, None);
            assert!(o.ok, "etcdctl {args:?} on {ep} failed: {}", o.stderr);
            o.stdout
        };
        ok(&all, &["user", "add", "root", "--new-user-password=rootpw"]);
        ok(&all, &["user", "grant-role", "root", "root"]);
        assert!(ok(&all, &["auth", "enable"]).contains("Authentication Enabled"));
        // etcdctl authenticates on each member and uses the JWT it gets there.
        for (i, ep) in eps.iter().enumerate() {
            let key = format!("jwt{i}");
            assert_eq!(ok(ep, &["--user", "root:rootpw", "put", &key, "v"]), "OK\n");
            assert_eq!(
                ok(ep, &["--user", "root:rootpw", "get", &key]),
                format!("{key}\nv\n")
            );
        }

        // A token from member 1 works on every member.
        let auth = AuthClient::new(channel(&eps[0]).await);
        let login = || {
            call!(
                auth,
                authenticate,
                AuthenticateRequest {
                    name: "root".into(),
                    password: "rootpw".into(),
                }
            )
        };
        let token = login().await.unwrap().token;
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        let claims = String::from_utf8(payload).unwrap();
        assert!(claims.contains(r#""username":"root""#), "{claims}");
        assert!(claims.contains(r#""revision":"#), "{claims}");
        assert!(claims.contains(r#""exp":"#), "{claims}");
        let kvs = [
            KvClient::new(channel(&eps[0]).await),
            KvClient::new(channel(&eps[1]).await),
            KvClient::new(channel(&eps[2]).await),
        ];
        for (i, kv) in kvs.iter().enumerate() {
            call!(
                kv,
                put,
                with_token(
                    PutRequest {
                        key: Bytes::from(format!("k{i}")),
                        value: Bytes::from_static(b"v"),
                        ..Default::default()
                    },
                    &token,
                )
            )
            .await
            .unwrap_or_else(|e| panic!("put on member {} with member 1's token: {e}", i + 1));
        }

        // Forged: another user under the old signature; and a token signed with another key.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = claims.replace(r#""username":"root""#, r#""username":"rooT""#);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_claims),
            parts[2]
        );
        let other = tempfile::tempdir().unwrap();
        jwt_flag(other.path(), "1m");
        let their_keys = raft_kv::auth::jwt::JwtTokens::new(
            "ES256",
            Some(&std::fs::read(other.path().join("jwt.pub")).unwrap()),
            Some(&std::fs::read(other.path().join("jwt.key")).unwrap()),
            Duration::from_secs(60),
        )
        .unwrap();
        let foreign = their_keys.sign("root", 3).unwrap();
        for bad in [&forged, &foreign] {
            let err = call!(kvs[1], range, with_token(range_k0(), bad))
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
            assert_eq!(err.message(), "etcdserver: invalid auth token");
        }

        // Expired: 4 s after it was issued, whatever its use.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let err = call!(kvs[2], range, with_token(range_k0(), &token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.message(), "etcdserver: invalid auth token");

        // A change of the auth state makes older tokens old (etcd's ErrAuthOldRevision).
        let token = login().await.unwrap().token;
        call!(kvs[1], range, with_token(range_k0(), &token))
            .await
            .expect("a fresh token");
        ok(&all, &["--user", "root:rootpw", "role", "add", "r2"]);
        for kv in &kvs {
            let err = retry(|| {
                let mut c = kv.clone();
                let req = with_token(range_k0(), &token);
                async move {
                    let answer: Result<tonic::Response<RangeResponse>, tonic::Status> =
                        c.range(req).await;
                    match answer {
                        // A member that has not applied the change yet still accepts it.
                        Ok(_) => Err(tonic::Status::unavailable("not applied yet")),
                        Err(e) => Err::<tonic::Response<RangeResponse>, _>(e),
                    }
                }
            })
            .await
            .unwrap_err();
            assert_eq!(err.message(), "etcdserver: revision of auth store is old");
        }
        let token = login().await.unwrap().token;
        call!(kvs[0], range, with_token(range_k0(), &token))
            .await
            .expect("a token at the new revision");
    })
    .await
    .expect("test took longer than its budget");
}

/// etcdctl against `endpoints`, retried for up to 20 s over what a leader change on a
/// loaded machine makes fail.
fn etcdctl_run(bin: &Path, endpoints: &str, args: &[&str], stdin: Option<&str>) -> EtcdctlOutput {
    etcdctl_retried(bin, endpoints, args, stdin).0
}
