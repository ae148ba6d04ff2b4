//! The cluster a node starts or joins: `initial_cluster`, the address checks, and the
//! cluster id derived from a token.

use super::{ConfigError, err};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The initial cluster, as a string list or a table from id to peer address.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum InitialCluster {
    /// `"1=127.0.0.1:2380,2=127.0.0.1:2381"` (an `http://` prefix is accepted).
    List(String),
    /// `{ "1" = "127.0.0.1:2380" }`.
    Table(BTreeMap<String, String>),
}

impl Default for InitialCluster {
    fn default() -> Self {
        InitialCluster::List(String::new())
    }
}

impl InitialCluster {
    /// The members, by id, with their peer addresses (`host:port`).
    pub fn members(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let pairs: Vec<(String, String)> = match self {
            InitialCluster::List(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((id, url)) => Ok((id.trim().to_string(), url.trim().to_string())),
                    None => err(format!(
                        "initial_cluster: `{p}` is not `id=host:port` (e.g. 1=127.0.0.1:2380)"
                    )),
                })
                .collect::<Result<_, _>>()?,
            InitialCluster::Table(t) => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let mut out = BTreeMap::new();
        for (id, url) in pairs {
            let n: u64 = match id.parse() {
                Ok(n) if n != 0 => n,
                _ => {
                    return err(format!(
                        "initial_cluster: member id `{id}` must be a positive integer"
                    ));
                }
            };
            let addr = strip_scheme(&url);
            check_host_port(&format!("initial_cluster ({id})"), addr)?;
            if out.insert(n, addr.to_string()).is_some() {
                return err(format!("initial_cluster: member {n} appears twice"));
            }
        }
        Ok(out)
    }
}

pub use raft_kv::address_book::strip_scheme;

pub(super) fn check_host_port(key: &str, addr: &str) -> Result<(), ConfigError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => err(format!("{key}: `{addr}` is not a host:port address")),
    }
}

pub(super) fn check_socket_addr(key: &str, addr: &str) -> Result<SocketAddr, ConfigError> {
    strip_scheme(addr).parse().or_else(|_| {
        err(format!(
            "{key}: `{addr}` is not an IP:port address (e.g. 127.0.0.1:2379)"
        ))
    })
}

/// The cluster token that data dirs written before cluster ids were random and persisted
/// derived their id from when no token was given.
pub const DEFAULT_CLUSTER_TOKEN: &str = "raft-cluster";

/// A stable 64-bit hash (FNV-1a) of a cluster token; never 0.
pub fn cluster_id_from_token(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}
