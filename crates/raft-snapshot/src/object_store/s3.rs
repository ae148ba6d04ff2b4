//! An S3-compatible object store over plain HTTP with hand-rolled AWS Signature V4 (feature
//! `s3`).
//!
//! Scope and limits, deliberately small: path-style requests (`http://host:port/bucket/key`)
//! over plain HTTP/1.1 on `std::net::TcpStream`, one connection per request; suited to MinIO,
//! Ceph RGW, SeaweedFS or a TLS-terminating proxy on a trusted network. No HTTPS (use a
//! proxy), no multipart upload (one PUT per blob, buffered in memory, so at most 5 GiB),
//! no retries inside a call (the [`Uploader`](crate::Uploader) retries).

use crate::error::{Error, Result};
use crate::object_store::ObjectStore;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where and how to reach the bucket.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// `host:port` of the endpoint (plain HTTP).
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Signing region (e.g. `us-east-1`; MinIO accepts that by default).
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Prefix put before every blob name (e.g. `cluster-a/`).
    pub prefix: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

/// An [`ObjectStore`] on an S3-compatible service (see the module documentation for limits).
#[derive(Clone, Debug)]
pub struct S3Store {
    cfg: S3Config,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// URI-encodes per SigV4: unreserved characters kept, `/` kept when `path`.
fn uri_encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (path && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` of a unix time in seconds.
fn amz_dates(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    (date, stamp)
}

/// A request to sign: method, canonical (encoded) path, query pairs (unencoded), extra
/// headers (lower-case names) and the payload's SHA-256 in hex.
struct Signed {
    authorization: String,
    amz_date: String,
}

#[allow(clippy::too_many_arguments)]
fn sign(
    access_key: &str,
    secret_key: &str,
    region: &str,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    payload_hash: &str,
    unix_secs: u64,
) -> Signed {
    let (date, amz_date) = amz_dates(unix_secs);
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    hs.push(("x-amz-date".into(), amz_date.clone()));
    hs.sort();
    let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = hs
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
        ),
        amz_date,
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl S3Store {
    /// A store for `cfg` (no request is made until used).
    pub fn new(cfg: S3Config) -> Self {
        S3Store { cfg }
    }

    fn err(&self, name: &str, reason: impl Into<String>) -> Error {
        Error::ObjectStore {
            name: name.into(),
            reason: reason.into(),
        }
    }

    fn request(
        &self,
        method: &str,
        key: Option<&str>,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<Response> {
        let name = key.unwrap_or("<bucket>");
        let path = match key {
            Some(k) => format!(
                "/{}/{}",
                uri_encode(&self.cfg.bucket, false),
                uri_encode(&format!("{}{k}", self.cfg.prefix), true)
            ),
            None => format!("/{}", uri_encode(&self.cfg.bucket, false)),
        };
        let payload_hash = sha256_hex(body);
        let headers = vec![
            ("host".to_string(), self.cfg.endpoint.clone()),
            ("x-amz-content-sha256".to_string(), payload_hash.clone()),
        ];
        // The edge of the crate: request signing needs the wall clock.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let s = sign(
            &self.cfg.access_key,
            &self.cfg.secret_key,
            &self.cfg.region,
            method,
            &path,
            query,
            &headers,
            &payload_hash,
            now,
        );
        let qs = query
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        let target = if qs.is_empty() {
            path
        } else {
            format!("{path}?{qs}")
        };
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nx-amz-content-sha256: {payload_hash}\r\nx-amz-date: {}\r\nAuthorization: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.cfg.endpoint,
            s.amz_date,
            s.authorization,
            body.len()
        );
        let io = |e: std::io::Error| self.err(name, format!("{} {method}: {e}", self.cfg.endpoint));
        let mut stream = TcpStream::connect(&self.cfg.endpoint).map_err(io)?;
        stream
            .set_read_timeout(Some(self.cfg.timeout))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(self.cfg.timeout))
            .map_err(io)?;
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body).map_err(io)?;
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line).map_err(io)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.err(name, format!("bad status line {line:?}")))?;
        let (mut len, mut chunked) = (None, false);
        loop {
            line.clear();
            r.read_line(&mut line).map_err(io)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    len = v.parse::<usize>().ok();
                } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line).map_err(io)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| self.err(name, "bad chunk size"))?;
                if n == 0 {
                    break;
                }
                let start = body.len();
                body.resize(start + n, 0);
                r.read_exact(&mut body[start..]).map_err(io)?;
                line.clear();
                r.read_line(&mut line).map_err(io)?;
            }
        } else if let Some(n) = len {
            body.resize(n, 0);
            r.read_exact(&mut body).map_err(io)?;
        } else {
            r.read_to_end(&mut body).map_err(io)?;
        }
        Ok(Response { status, body })
    }

    fn check(&self, name: &str, method: &str, resp: &Response) -> Result<()> {
        if (200..300).contains(&resp.status) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&resp.body);
        Err(self.err(
            name,
            format!(
                "{method} returned {}: {}",
                resp.status,
                text.chars().take(300).collect::<String>()
            ),
        ))
    }
}

fn xml_values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(&rest[..j]);
        rest = &rest[j + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl ObjectStore for S3Store {
    fn put(&self, name: &str, data: &mut dyn Read) -> Result<u64> {
        let mut body = Vec::new();
        data.read_to_end(&mut body)
            .map_err(|e| self.err(name, format!("reading the blob: {e}")))?;
        let resp = self.request("PUT", Some(name), &[], &body)?;
        self.check(name, "PUT", &resp)?;
        Ok(body.len() as u64)
    }

    fn get(&self, name: &str, out: &mut dyn Write) -> Result<u64> {
        let resp = self.request("GET", Some(name), &[], &[])?;
        self.check(name, "GET", &resp)?;
        out.write_all(&resp.body)
            .map_err(|e| self.err(name, format!("writing the blob: {e}")))?;
        Ok(resp.body.len() as u64)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), format!("{}{prefix}", self.cfg.prefix)),
            ];
            if let Some(t) = &token {
                q.push(("continuation-token".to_string(), t.clone()));
            }
            let resp = self.request("GET", None, &q, &[])?;
            self.check(prefix, "LIST", &resp)?;
            let xml = String::from_utf8_lossy(&resp.body).into_owned();
            for k in xml_values(&xml, "Key") {
                let k = xml_unescape(k);
                if let Some(stripped) = k.strip_prefix(&self.cfg.prefix) {
                    out.push(stripped.to_string());
                }
            }
            let truncated = xml_values(&xml, "IsTruncated").first() == Some(&"true");
            token = xml_values(&xml, "NextContinuationToken")
                .first()
                .map(|t| xml_unescape(t));
            if !truncated || token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let resp = self.request("DELETE", Some(name), &[], &[])?;
        if resp.status == 404 {
            return Ok(());
        }
        self.check(name, "DELETE", &resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        assert_eq!(
            amz_dates(1_369_353_600),
            ("20130524".into(), "20130524T000000Z".into())
        );
        assert_eq!(amz_dates(951_782_400 + 3_661).1, "20000229T010101Z");
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The GET Object example of the AWS Signature V4 documentation for S3.
    #[test]
    fn signature_matches_aws_example() {
        let empty = sha256_hex(b"");
        let s = sign(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "GET",
            "/test.txt",
            &[],
            &[
                ("host".into(), "examplebucket.s3.amazonaws.com".into()),
                ("range".into(), "bytes=0-9".into()),
                ("x-amz-content-sha256".into(), empty.clone()),
            ],
            &empty,
            1_369_353_600,
        );
        assert!(
            s.authorization.ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{}",
            s.authorization
        );
    }

    /// A tiny in-process S3 stand-in: stores blobs by path, lists with `prefix`, and checks
    /// that each request is signed and its payload hash is right.
    fn fake_server() -> String {
        use std::collections::BTreeMap;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("").to_string();
                let mut headers = BTreeMap::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                let len: usize = headers["content-length"].parse().unwrap();
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).unwrap();
                let signed = headers["authorization"]
                    .starts_with("AWS4-HMAC-SHA256 Credential=ak/")
                    && headers["x-amz-content-sha256"] == sha256_hex(&body);
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let (status, reply): (u16, Vec<u8>) = if !signed {
                    (403, b"bad signature".to_vec())
                } else if method == "GET" && path == "/bkt" {
                    let prefix = query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("prefix="))
                        .unwrap_or("")
                        .replace("%2F", "/");
                    let keys: String = blobs
                        .keys()
                        .filter_map(|k| k.strip_prefix("/bkt/"))
                        .filter(|k| k.starts_with(&prefix))
                        .map(|k| format!("<Contents><Key>{k}</Key></Contents>"))
                        .collect();
                    (200, format!("<ListBucketResult><IsTruncated>false</IsTruncated>{keys}</ListBucketResult>").into_bytes())
                } else if method == "PUT" {
                    blobs.insert(path.to_string(), body);
                    (200, Vec::new())
                } else if method == "GET" {
                    match blobs.get(path) {
                        Some(b) => (200, b.clone()),
                        None => (404, b"NoSuchKey".to_vec()),
                    }
                } else if method == "DELETE" {
                    blobs.remove(path);
                    (204, Vec::new())
                } else {
                    (400, Vec::new())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                    reply.len()
                );
                let _ = conn.write_all(&reply);
            }
        });
        addr
    }

    #[test]
    fn round_trip_against_a_fake_server() {
        let store = S3Store::new(S3Config {
            endpoint: fake_server(),
            bucket: "bkt".into(),
            region: "us-east-1".into(),
            access_key: "ak".into(),
            secret_key: "sk".into(),
            prefix: "c1/".into(),
            timeout: Duration::from_secs(5),
        });
        store.put("snapshots/a.snap", &mut &b"hello"[..]).unwrap();
        store.put("snapshots/b.json", &mut &b"{}"[..]).unwrap();
        store.put("other/x", &mut &b"-"[..]).unwrap();
        let mut out = Vec::new();
        assert_eq!(store.get("snapshots/a.snap", &mut out).unwrap(), 5);
        assert_eq!(out, b"hello");
        assert_eq!(
            store.list("snapshots/").unwrap(),
            vec![
                "snapshots/a.snap".to_string(),
                "snapshots/b.json".to_string()
            ]
        );
        store.delete("snapshots/a.snap").unwrap();
        assert!(store.get("snapshots/a.snap", &mut Vec::new()).is_err());
        assert_eq!(store.list("snapshots/").unwrap().len(), 1);
    }
}
