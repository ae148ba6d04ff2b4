//! What a certificate says that the node acts on: the member ids it may speak for (URI
//! subject alternative names `raftd://<cluster>/member/<id>`), its common name and when it
//! expires. Parsing only: chains and signatures are rustls's business.

use crate::error::{Error, Result};
use raft_core::NodeId;

/// The URI scheme of member identities in certificates.
pub const MEMBER_URI_SCHEME: &str = "raftd";

/// The URI subject alternative name that lets a certificate's holder speak for member `id`
/// of the cluster named `cluster`: `raftd://<cluster>/member/<id>`.
///
/// `cluster` is a name the operator chooses (`tls.peer_cert_cluster` in raftd), not the
/// random cluster id: certificates are issued before a cluster is bootstrapped.
pub fn member_uri(cluster: &str, id: NodeId) -> String {
    format!("{MEMBER_URI_SCHEME}://{cluster}/member/{id}")
}

/// Parses a [`member_uri`]: `Some((cluster, id))`, or `None` for any other URI.
pub fn parse_member_uri(uri: &str) -> Option<(String, NodeId)> {
    let rest = uri.strip_prefix(MEMBER_URI_SCHEME)?.strip_prefix("://")?;
    let (cluster, id) = rest.split_once("/member/")?;
    if cluster.is_empty() || cluster.contains('/') {
        return None;
    }
    let id: NodeId = id.parse().ok().filter(|&n| n != 0)?;
    Some((cluster.to_string(), id))
}

/// The parts of an X.509 certificate the node uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common name, if any (etcd takes the user name of a client certificate
    /// from it).
    pub common_name: Option<String>,
    /// The end of the validity period (`notAfter`), unix seconds.
    pub not_after: i64,
    /// Every `(cluster, member id)` the certificate names in a [`member_uri`].
    pub members: Vec<(String, NodeId)>,
}

impl CertInfo {
    /// True when the certificate names member `id` of `cluster`.
    pub fn names_member(&self, cluster: &str, id: NodeId) -> bool {
        self.members.iter().any(|(c, m)| c == cluster && *m == id)
    }

    /// The members of `cluster` the certificate names.
    pub fn members_of<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = NodeId> + 'a {
        self.members
            .iter()
            .filter(move |(c, _)| c == cluster)
            .map(|(_, id)| *id)
    }
}

/// Reads the fields of [`CertInfo`] from a DER certificate; malformed input is an error,
/// never a panic.
pub fn inspect_certificate(der: &[u8]) -> Result<CertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Config(format!("cannot parse the certificate: {e}")))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let mut members = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Config(format!("bad subject alternative names: {e}")))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && let Some(member) = parse_member_uri(uri)
            {
                members.push(member);
            }
        }
    }
    Ok(CertInfo {
        common_name,
        not_after: cert.validity().not_after.timestamp(),
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_uris_round_trip_and_reject_lookalikes() {
        let uri = member_uri("prod", 7);
        assert_eq!(uri, "raftd://prod/member/7");
        assert_eq!(parse_member_uri(&uri), Some(("prod".into(), 7)));
        for bad in [
            "raftd://prod/member/0",
            "raftd://prod/member/x",
            "raftd:///member/7",
            "raftd://a/b/member/7",
            "https://prod/member/7",
            "raftd://prod/members/7",
            "raftd://prod/member/7/",
        ] {
            assert_eq!(parse_member_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(inspect_certificate(b"not a certificate").is_err());
        assert!(inspect_certificate(&[]).is_err());
    }
}
