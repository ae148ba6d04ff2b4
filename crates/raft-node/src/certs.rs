//! A small certificate authority for raftd clusters (rcgen): a CA, peer certificates that
//! bind member ids (`raftd://<cluster>/member/<id>`), server certificates for the client
//! port and client certificates, as PEM files. `raftctl certs` and `cargo xtask cluster
//! --tls` use it; so do the TLS tests. For production, any CA that can put a URI subject
//! alternative name into a certificate will do.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters (a bad host name, ...).
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem").finish_non_exhaustive()
    }
}

impl Pem {
    /// Writes `<dir>/<name>.pem` and `<dir>/<name>.key` (the key readable by its owner
    /// only); returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        write_file(&cert, &self.cert, 0o644)?;
        write_file(&key, &self.key, 0o600)?;
        Ok((cert, key))
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

/// How long certificates are valid, and from when.
#[derive(Clone, Copy, Debug)]
pub enum Validity {
    /// From an hour ago for this long.
    For(Duration),
    /// Already expired (for tests of expiry).
    Expired,
}

impl Validity {
    fn apply(self, params: &mut CertificateParams) {
        let now = time::OffsetDateTime::now_utc();
        match self {
            Validity::For(d) => {
                params.not_before = now - time::Duration::hours(1);
                params.not_after = now + d;
            }
            Validity::Expired => {
                params.not_before = now - time::Duration::days(30);
                params.not_after = now - time::Duration::days(1);
            }
        }
    }
}

/// A certificate authority.
pub struct Authority {
    /// The CA certificate and key.
    pub pem: Pem,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str, validity: Validity) -> Result<Self, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        validity.apply(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: Pem {
                cert: cert.pem(),
                key: key.serialize_pem(),
            },
            issuer: Issuer::new(params, key),
        })
    }

    fn issue(
        &self,
        cn: &str,
        hosts: &[String],
        uris: &[String],
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<Pem, CertError> {
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.clone().try_into()?));
        }
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity.apply(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A peer certificate for member `id` of the cluster named `cluster`, valid for `hosts`
    /// (DNS names or IP addresses) as a server and as a client.
    pub fn member(
        &self,
        id: u64,
        cluster: &str,
        hosts: &[String],
        validity: Validity,
    ) -> Result<Pem, CertError> {
        self.issue(
            &format!("member-{id}"),
            hosts,
            &[raft_net::tls::member_uri(cluster, id)],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            validity,
        )
    }

    /// A server certificate for the client port, valid for `hosts`.
    pub fn server(&self, hosts: &[String], validity: Validity) -> Result<Pem, CertError> {
        self.issue(
            "raftd",
            hosts,
            &[],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
            validity,
        )
    }

    /// A client certificate with common name `cn` (etcd takes the user name from it).
    pub fn client(&self, cn: &str, validity: Validity) -> Result<Pem, CertError> {
        self.issue(
            cn,
            &[],
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            validity,
        )
    }
}

/// The files [`write_cluster_certs`] writes.
#[derive(Clone, Debug)]
pub struct ClusterCerts {
    /// `ca.pem`: the CA of every certificate below (trust it on both ports).
    pub ca: PathBuf,
    /// `server.pem`/`server.key`: the client ports' certificate.
    pub server: (PathBuf, PathBuf),
    /// `client.pem`/`client.key`: a client certificate (common name `root`).
    pub client: (PathBuf, PathBuf),
    /// `member-<id>.pem`/`.key` by member id.
    pub members: Vec<(u64, PathBuf, PathBuf)>,
}

/// Writes into `dir` a CA (`ca.pem`, `ca.key`), a client-port certificate for `hosts`,
/// a client certificate, and a peer certificate per member of `members` (cluster name
/// `cluster`), all valid for `validity`.
pub fn write_cluster_certs(
    dir: &Path,
    cluster: &str,
    members: &[u64],
    hosts: &[String],
    validity: Duration,
) -> Result<ClusterCerts, CertError> {
    let v = Validity::For(validity);
    let ca = Authority::new(&format!("raftd CA ({cluster})"), v)?;
    ca.write_cluster(dir, cluster, members, hosts, v)
}

impl Authority {
    /// [`write_cluster_certs`] with this CA.
    pub fn write_cluster(
        &self,
        dir: &Path,
        cluster: &str,
        members: &[u64],
        hosts: &[String],
        v: Validity,
    ) -> Result<ClusterCerts, CertError> {
        std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let ca = self;
        let (ca_path, _) = ca.pem.write(dir, "ca")?;
        let server = ca.server(hosts, v)?.write(dir, "server")?;
        let client = ca.client("root", v)?.write(dir, "client")?;
        let mut out = Vec::new();
        for &id in members {
            let (cert, key) = ca
                .member(id, cluster, hosts, v)?
                .write(dir, &format!("member-{id}"))?;
            out.push((id, cert, key));
        }
        Ok(ClusterCerts {
            ca: ca_path,
            server,
            client,
            members: out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_certificates_name_their_member_and_expire_when_told() {
        let ca = Authority::new("ca", Validity::For(Duration::from_secs(3600))).unwrap();
        let hosts = vec!["127.0.0.1".to_string()];
        let pem = ca
            .member(3, "blue", &hosts, Validity::For(Duration::from_secs(3600)))
            .unwrap();
        let der = raft_net::tls::certs_from_pem("member", &pem.cert).unwrap();
        let info = raft_net::tls::inspect_certificate(&der[0]).unwrap();
        assert!(info.names_member("blue", 3) && !info.names_member("blue", 1));
        assert_eq!(info.common_name.as_deref(), Some("member-3"));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(info.not_after > now + 3000 && info.not_after <= now + 3601);
        let old = ca.client("root", Validity::Expired).unwrap();
        let der = raft_net::tls::certs_from_pem("client", &old.cert).unwrap();
        assert!(
            raft_net::tls::inspect_certificate(&der[0])
                .unwrap()
                .not_after
                < now
        );
    }
}
