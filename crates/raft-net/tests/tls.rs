//! Mutual TLS: peers with certificates from the cluster CA talk; a peer whose certificate
//! comes from another CA is refused. Certificates are generated at test time.

#[path = "util/harness.rs"]
mod harness;

use harness::*;
use raft_net::TlsConfig;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};

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

/// A node certificate from `ca`, valid for localhost and 127.0.0.1, whose holder trusts
/// `trusted` as the cluster CA.
fn tls(ca: &Ca, trusted: &Ca, name: &str) -> TlsConfig {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    TlsConfig {
        ca_pem: trusted.pem.clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        server_name: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_cluster_peers_and_refuses_foreign_certificates() {
    let cluster_ca = ca("cluster CA");
    let other_ca = ca("some other CA");

    let mut cfg1 = config(1);
    cfg1.tls = Some(tls(&cluster_ca, &cluster_ca, "node-1"));
    let mut cfg2 = config(2);
    cfg2.tls = Some(tls(&cluster_ca, &cluster_ca, "node-2"));
    let mut a = start(cfg1).await;
    let mut b = start(cfg2).await;
    a.transport.add_peer(2, b.addr.to_string()).unwrap();
    b.transport.add_peer(1, a.addr.to_string()).unwrap();

    a.transport.send(heartbeat(1, 2, 5)).unwrap();
    a.transport
        .send(append(1, 2, 1, json_like(50_000)))
        .unwrap();
    let got = [recv(&mut b, 10).await, recv(&mut b, 10).await];
    assert!(got.iter().all(|m| m.from == 1));
    b.transport.send(heartbeat(2, 1, 6)).unwrap();
    assert_eq!(recv(&mut a, 10).await, heartbeat(2, 1, 6));

    // A peer whose certificate comes from another CA (though it trusts ours).
    let mut cfg3 = config(3);
    cfg3.tls = Some(tls(&other_ca, &cluster_ca, "intruder"));
    let mut c = start(cfg3).await;
    c.transport.add_peer(2, b.addr.to_string()).unwrap();
    c.transport.send(heartbeat(3, 2, 1)).unwrap();
    c.transport.send(append(3, 2, 1, json_like(100))).unwrap();
    unreachable(&mut c, 2, 10).await;
    // A plaintext client is refused too.
    let mut plain = start(config(4)).await;
    plain.transport.add_peer(2, b.addr.to_string()).unwrap();
    plain.transport.send(heartbeat(4, 2, 1)).unwrap();
    unreachable(&mut plain, 2, 10).await;
    recv_nothing(&mut b, 300).await;

    // The cluster peers still talk.
    a.transport.send(heartbeat(1, 2, 9)).unwrap();
    assert_eq!(recv(&mut b, 10).await, heartbeat(1, 2, 9));
}
