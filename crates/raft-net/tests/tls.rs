//! Mutual TLS between peers, with member ids bound to certificates: peers with
//! certificates from the cluster CA talk; a client without a certificate, with one from
//! another CA or with an expired one is refused at the handshake; a valid certificate
//! cannot speak for another member, nor answer for one; new certificates apply to new
//! connections while established ones keep working. Certificates are generated at test
//! time.

#[path = "util/harness.rs"]
mod harness;

use harness::*;
use raft_net::TlsConfig;
use raft_net::tls::member_uri;
use raft_net::wire::{self, peer_client::PeerClient};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLUSTER_NAME: &str = "test-cluster";

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate and key (PEM) from `ca` for member `member`, valid for 127.0.0.1;
/// `expired` makes one whose validity ended in 2021.
fn member_cert(ca: &Ca, member: u64, expired: bool) -> (String, String) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("member-{member}"));
    params.subject_alt_names.push(SanType::URI(
        member_uri(CLUSTER_NAME, member).try_into().unwrap(),
    ));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// TLS settings for member `member` with a certificate from `ca`, trusting `trusted`.
fn tls(ca: &Ca, trusted: &Ca, member: u64) -> TlsConfig {
    let (cert, key) = member_cert(ca, member, false);
    let mut t = TlsConfig::new(trusted.pem.clone(), cert, key);
    t.cluster_name = Some(CLUSTER_NAME.into());
    t
}

fn node_config(id: u64, tls: TlsConfig) -> raft_net::TransportConfig {
    let mut cfg = config(id);
    cfg.tls = Some(tls);
    cfg
}

/// Two members of `ca`'s cluster that know each other, and a third member's settings.
async fn pair(ca: &Ca) -> (Node, Node) {
    let a = start(node_config(1, tls(ca, ca, 1))).await;
    let b = start(node_config(2, tls(ca, ca, 2))).await;
    a.transport.add_peer(2, b.addr.to_string()).unwrap();
    b.transport.add_peer(1, a.addr.to_string()).unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_and_foreign_or_expired_certificates_are_refused() {
    let cluster_ca = ca("cluster CA");
    let other_ca = ca("some other CA");
    let (mut a, mut b) = pair(&cluster_ca).await;

    a.transport.send(heartbeat(1, 2, 5)).unwrap();
    a.transport
        .send(append(1, 2, 1, json_like(50_000)))
        .unwrap();
    let got = [recv(&mut b, 10).await, recv(&mut b, 10).await];
    assert!(got.iter().all(|m| m.from == 1));
    b.transport.send(heartbeat(2, 1, 6)).unwrap();
    assert_eq!(recv(&mut a, 10).await, heartbeat(2, 1, 6));

    // Member 3 of the cluster, as far as b knows: every attempt below is refused at the
    // handshake, not by the membership check.
    b.transport.add_peer(3, "127.0.0.1:1").unwrap();
    // A certificate from another CA (its holder trusts ours).
    let mut c = start(node_config(3, tls(&other_ca, &cluster_ca, 3))).await;
    c.transport.add_peer(2, b.addr.to_string()).unwrap();
    c.transport.send(heartbeat(3, 2, 1)).unwrap();
    c.transport.send(append(3, 2, 1, json_like(100))).unwrap();
    unreachable(&mut c, 2, 10).await;
    // An expired certificate from the cluster CA.
    let (cert, key) = member_cert(&cluster_ca, 3, true);
    let mut expired = TlsConfig::new(cluster_ca.pem.clone(), cert, key);
    expired.cluster_name = Some(CLUSTER_NAME.into());
    let mut d = start(node_config(3, expired)).await;
    d.transport.add_peer(2, b.addr.to_string()).unwrap();
    d.transport.send(heartbeat(3, 2, 1)).unwrap();
    unreachable(&mut d, 2, 10).await;
    // A plaintext client.
    let mut plain = start(config(3)).await;
    plain.transport.add_peer(2, b.addr.to_string()).unwrap();
    plain.transport.send(heartbeat(3, 2, 1)).unwrap();
    unreachable(&mut plain, 2, 10).await;
    // No client certificate at all: the handshake is refused (TLS 1.3 reports it on the
    // client's first read).
    assert!(!tls_without_client_cert_works(&cluster_ca, &b).await);
    recv_nothing(&mut b, 300).await;

    // The cluster members still talk.
    a.transport.send(heartbeat(1, 2, 9)).unwrap();
    assert_eq!(recv(&mut b, 10).await, heartbeat(1, 2, 9));
}

/// Whether a TLS client that trusts `ca` but has no certificate gets an HTTP/2 answer
/// from `node`.
async fn tls_without_client_cert_works(ca: &Ca, node: &Node) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    let der = raft_net::tls::certs_from_pem("ca", &ca.pem).unwrap();
    roots.add(der[0].clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    if tls
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 9];
    matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
}

/// A gRPC channel to `node` over TLS with `cert`/`key`, trusting `ca`.
async fn tls_channel(ca: &Ca, cert: String, key: String, node: &Node) -> tonic::transport::Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem))
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .domain_name("127.0.0.1");
    tonic::transport::Channel::from_shared(format!("https://{}", node.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_certificate_cannot_speak_or_answer_for_another_member() {
    let ca = ca("cluster CA");
    let (mut a, mut b) = pair(&ca).await;
    b.transport.add_peer(3, "127.0.0.1:1").unwrap();

    // Member 3's own certificate, on a raw connection to b.
    let (cert, key) = member_cert(&ca, 3, false);
    let mut client = PeerClient::new(tls_channel(&ca, cert, key, &b).await);
    let frame = |from| {
        wire::build_frame(
            CLUSTER,
            from,
            2,
            0,
            &[heartbeat(from, 2, 40 + from)],
            &Default::default(),
        )
        .unwrap()
    };
    // As itself it is heard ...
    client.send(frame(3)).await.unwrap();
    assert_eq!(recv(&mut b, 10).await, heartbeat(3, 2, 43));
    // ... as member 1 it is refused, with a message that says why.
    let err = client.send(frame(1)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("speaks for member(s) [3]"),
        "{err:?}"
    );
    // Asking for the cluster id as another member is refused too.
    let err = client
        .hello(wire::HelloRequest { from: 1, to: 2 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let hello = client
        .hello(wire::HelloRequest { from: 3, to: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((hello.cluster_id, hello.from), (CLUSTER, 2));
    recv_nothing(&mut b, 200).await;

    // A server whose certificate names another member than the one dialled: a believes
    // member 3 lives at b's address; b's certificate says member 2, so a refuses it.
    a.transport.add_peer(3, b.addr.to_string()).unwrap();
    a.transport.send(heartbeat(1, 3, 1)).unwrap();
    unreachable(&mut a, 3, 10).await;
    recv_nothing(&mut b, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_certificates_apply_to_new_connections_and_keep_established_ones() {
    let old_ca = ca("old CA");
    let new_ca = ca("new CA");
    let (mut a, mut b) = pair(&old_ca).await;
    a.transport.send(heartbeat(1, 2, 1)).unwrap();
    assert_eq!(recv(&mut b, 10).await, heartbeat(1, 2, 1));
    b.transport.send(heartbeat(2, 1, 1)).unwrap();
    assert_eq!(recv(&mut a, 10).await, heartbeat(2, 1, 1));

    // b moves to a new CA and trusts only it.
    b.transport.set_tls(&tls(&new_ca, &new_ca, 2)).unwrap();
    // a's established connections (old CA) keep working in both directions.
    for i in 2..5 {
        a.transport.send(heartbeat(1, 2, i)).unwrap();
        assert_eq!(recv(&mut b, 10).await, heartbeat(1, 2, i));
        b.transport.send(heartbeat(2, 1, i)).unwrap();
        assert_eq!(recv(&mut a, 10).await, heartbeat(2, 1, i));
    }
    // A new connection with an old-CA certificate is refused.
    b.transport.add_peer(3, "127.0.0.1:1").unwrap();
    let mut c = start(node_config(3, tls(&old_ca, &old_ca, 3))).await;
    c.transport.add_peer(2, b.addr.to_string()).unwrap();
    c.transport.send(heartbeat(3, 2, 1)).unwrap();
    unreachable(&mut c, 2, 10).await;
    // One with a new-CA certificate is heard.
    let d = start(node_config(3, tls(&new_ca, &new_ca, 3))).await;
    d.transport.add_peer(2, b.addr.to_string()).unwrap();
    d.transport.send(heartbeat(3, 2, 7)).unwrap();
    assert_eq!(recv(&mut b, 10).await, heartbeat(3, 2, 7));

    // Bad input keeps the settings in force; a plaintext transport cannot turn TLS on.
    let mut broken = tls(&new_ca, &new_ca, 2);
    broken.key_pem = "not a key".into();
    assert!(b.transport.set_tls(&broken).is_err());
    d.transport.send(heartbeat(3, 2, 8)).unwrap();
    assert_eq!(recv(&mut b, 10).await, heartbeat(3, 2, 8));
    let plain = start(config(4)).await;
    let err = plain
        .transport
        .set_tls(&tls(&new_ca, &new_ca, 4))
        .unwrap_err();
    assert!(err.to_string().contains("without TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_this_members_uri_is_refused_at_start() {
    let ca = ca("cluster CA");
    let params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let mut t = TlsConfig::new(ca.pem.clone(), cert.pem(), key.serialize_pem());
    t.cluster_name = Some(CLUSTER_NAME.into());
    let (inbound, _rx) =
        raft_net::Inbound::channels(16, Arc::new(raft_net::MemorySnapshotSink::new()));
    let err = raft_net::PeerTransport::new(node_config(1, t), inbound).unwrap_err();
    assert!(err.to_string().contains("names no member"), "{err}");
    // Another member's certificate is refused too.
    let (inbound, _rx) =
        raft_net::Inbound::channels(16, Arc::new(raft_net::MemorySnapshotSink::new()));
    let err = raft_net::PeerTransport::new(node_config(1, tls(&ca, &ca, 2)), inbound).unwrap_err();
    assert!(err.to_string().contains("not this node's (1)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_requests_run_over_mutual_tls_and_check_the_sender() {
    struct Who;
    impl raft_net::AppHandler for Who {
        fn handle(&self, from: u64, _kind: &str, _payload: bytes::Bytes) -> raft_net::AppFuture {
            Box::pin(async move { Ok(bytes::Bytes::from(format!("from {from}"))) })
        }
    }
    let ca = ca("cluster CA");
    let (a, b) = pair(&ca).await;
    b.transport.set_app_handler(Some(Arc::new(Who)));
    let got = a.transport.call(2, "k", bytes::Bytes::new()).await.unwrap();
    assert_eq!(got, bytes::Bytes::from("from 1"));
    // Member 3's certificate cannot call as member 1.
    b.transport.add_peer(3, "127.0.0.1:1").unwrap();
    let (cert, key) = member_cert(&ca, 3, false);
    let mut client = PeerClient::new(tls_channel(&ca, cert, key, &b).await);
    let call = |from| wire::AppRequest {
        cluster_id: CLUSTER,
        from,
        to: 2,
        kind: "k".into(),
        payload: Default::default(),
    };
    let err = client.call(call(1)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let ok = client.call(call(3)).await.unwrap().into_inner();
    assert_eq!(ok.payload, bytes::Bytes::from("from 3"));
}
