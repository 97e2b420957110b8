//! HTTP Digest access authentication (RFC 7616) as the BM-SC Key Request
//! function uses it (TS 33.246 §6.2.1.3): MD5 or SHA-256, `qop=auth` only,
//! nonce / nonce count / client nonce, and `rspauth` in Authentication-Info so
//! the UE authenticates the BM-SC's answer too.
//!
//! Sans-IO: the server's nonces come from [`NonceBook`], which takes `now` and
//! random bytes from the caller.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Why a Digest header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DigestError {
    #[error("Digest header: scheme is not Digest")]
    NotDigest,
    #[error("Digest header: malformed auth-param list at byte {at}: {reason}")]
    Syntax { at: usize, reason: &'static str },
    #[error("Digest header: parameter {0} appears twice")]
    DuplicateParam(String),
    #[error("Digest header: required parameter {0} is missing")]
    MissingParam(&'static str),
    #[error("Digest header: algorithm {0:?} is not supported (MD5, SHA-256)")]
    UnsupportedAlgorithm(String),
    #[error("Digest header: qop {0:?} is not supported (auth)")]
    UnsupportedQop(String),
    #[error("Digest header: nc {0:?} is not 8 hex digits")]
    BadNonceCount(String),
    #[error("Digest header: parameter {0} contains a character that cannot be quoted")]
    Unquotable(&'static str),
}

/// The hash of the Digest computation (RFC 7616 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The `algorithm` token.
    pub fn token(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Token names are case-insensitive (RFC 7616 §3.3).
    pub fn from_token(token: &str) -> Result<Self, DigestError> {
        if token.eq_ignore_ascii_case("MD5") {
            Ok(Self::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Ok(Self::Sha256)
        } else {
            Err(DigestError::UnsupportedAlgorithm(token.to_owned()))
        }
    }

    /// `H(p1 ‖ ":" ‖ p2 ‖ ":" …)` as lower-case hex (RFC 7616 §3.4.1).
    fn hash_joined(self, parts: &[&[u8]]) -> String {
        fn run<D: sha2::Digest>(mut d: D, parts: &[&[u8]]) -> String {
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(part);
            }
            hex::encode(d.finalize())
        }
        match self {
            Self::Md5 => run(Md5::new(), parts),
            Self::Sha256 => run(Sha256::new(), parts),
        }
    }
}

/// The `qop` value every exchange here uses.
const QOP_AUTH: &str = "auth";

/// `WWW-Authenticate: Digest …` (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The nonce was valid once but has expired: retry with the new one
    /// without asking the user again (RFC 7616 §3.3 `stale`).
    pub stale: bool,
}

impl Challenge {
    pub fn to_header(&self) -> Result<String, DigestError> {
        let mut out = String::from("Digest ");
        push_quoted(&mut out, "realm", &self.realm)?;
        out.push_str(", ");
        push_quoted(&mut out, "qop", QOP_AUTH)?;
        let _ = write!(out, ", algorithm={}, ", self.algorithm.token());
        push_quoted(&mut out, "nonce", &self.nonce)?;
        if let Some(opaque) = &self.opaque {
            out.push_str(", ");
            push_quoted(&mut out, "opaque", opaque)?;
        }
        if self.stale {
            out.push_str(", stale=true");
        }
        Ok(out)
    }

    /// Parses a challenge; one that does not offer `qop=auth` is refused
    /// (RFC 2069 compatibility mode has no client nonce and no `rspauth`).
    pub fn parse(header: &str) -> Result<Self, DigestError> {
        let mut params = parse_digest_params(header)?;
        let qop = params.take("qop").ok_or(DigestError::MissingParam("qop"))?;
        if !qop
            .split(',')
            .any(|q| q.trim().eq_ignore_ascii_case(QOP_AUTH))
        {
            return Err(DigestError::UnsupportedQop(qop));
        }
        let algorithm = match params.take("algorithm") {
            Some(a) => Algorithm::from_token(&a)?,
            None => Algorithm::Md5,
        };
        Ok(Self {
            realm: params.require("realm")?,
            nonce: params.require("nonce")?,
            opaque: params.take("opaque"),
            algorithm,
            stale: params
                .take("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// `Authorization: Digest …` (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub algorithm: Algorithm,
    pub cnonce: String,
    pub nc: u32,
    /// Hex of the request digest.
    pub response: String,
    pub opaque: Option<String>,
}

/// The inputs of `H(A1)`: only the holder of the password computes it.
fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

impl Credentials {
    /// The UE side: answers `challenge` for `method uri` (RFC 7616 §3.4.1).
    pub fn answer(
        challenge: &Challenge,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Self {
        let mut out = Self {
            username: username.to_owned(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_owned(),
            algorithm: challenge.algorithm,
            cnonce: cnonce.to_owned(),
            nc,
            response: String::new(),
            opaque: challenge.opaque.clone(),
        };
        out.response = out.digest(password, method);
        out
    }

    /// `KD(H(A1), nonce:nc:cnonce:qop:H(A2))`; `a2_method` is the request
    /// method, or empty for `rspauth` (RFC 7616 §3.5).
    fn digest_with(&self, password: &str, a2_method: &str) -> String {
        let alg = self.algorithm;
        let ha1 = ha1(alg, &self.username, &self.realm, password);
        let ha2 = alg.hash_joined(&[a2_method.as_bytes(), self.uri.as_bytes()]);
        let nc = format!("{:08x}", self.nc);
        alg.hash_joined(&[
            ha1.as_bytes(),
            self.nonce.as_bytes(),
            nc.as_bytes(),
            self.cnonce.as_bytes(),
            QOP_AUTH.as_bytes(),
            ha2.as_bytes(),
        ])
    }

    fn digest(&self, password: &str, method: &str) -> String {
        self.digest_with(password, method)
    }

    /// The server side: whether `response` is right for `password` and
    /// `method` (constant-time comparison).
    pub fn verify(&self, password: &str, method: &str) -> bool {
        let expected = self.digest(password, method);
        let presented = self.response.to_ascii_lowercase();
        expected.len() == presented.len()
            && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The `rspauth` the server returns: the same digest with an empty method
    /// in A2, proving the server knows the password too (RFC 7616 §3.5).
    pub fn rspauth(&self, password: &str) -> String {
        self.digest_with(password, "")
    }

    pub fn to_header(&self) -> Result<String, DigestError> {
        let mut out = String::from("Digest ");
        push_quoted(&mut out, "username", &self.username)?;
        out.push_str(", ");
        push_quoted(&mut out, "realm", &self.realm)?;
        out.push_str(", ");
        push_quoted(&mut out, "uri", &self.uri)?;
        let _ = write!(out, ", algorithm={}, ", self.algorithm.token());
        push_quoted(&mut out, "nonce", &self.nonce)?;
        let _ = write!(out, ", nc={:08x}, ", self.nc);
        push_quoted(&mut out, "cnonce", &self.cnonce)?;
        let _ = write!(out, ", qop={QOP_AUTH}, ");
        push_quoted(&mut out, "response", &self.response)?;
        if let Some(opaque) = &self.opaque {
            out.push_str(", ");
            push_quoted(&mut out, "opaque", opaque)?;
        }
        Ok(out)
    }

    pub fn parse(header: &str) -> Result<Self, DigestError> {
        let mut params = parse_digest_params(header)?;
        let qop = params.require("qop")?;
        if !qop.eq_ignore_ascii_case(QOP_AUTH) {
            return Err(DigestError::UnsupportedQop(qop));
        }
        let algorithm = match params.take("algorithm") {
            Some(a) => Algorithm::from_token(&a)?,
            None => Algorithm::Md5,
        };
        let nc_text = params.require("nc")?;
        Ok(Self {
            username: params.require("username")?,
            realm: params.require("realm")?,
            nonce: params.require("nonce")?,
            uri: params.require("uri")?,
            algorithm,
            cnonce: params.require("cnonce")?,
            nc: parse_nc(&nc_text)?,
            response: params.require("response")?,
            opaque: params.take("opaque"),
        })
    }
}

fn parse_nc(text: &str) -> Result<u32, DigestError> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::BadNonceCount(text.to_owned()));
    }
    u32::from_str_radix(text, 16).map_err(|_| DigestError::BadNonceCount(text.to_owned()))
}

/// `Authentication-Info` (RFC 7616 §3.5; RFC 7615): the server's proof and
/// the echoed client nonce and count, so the UE can bind it to its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationInfo {
    pub rspauth: String,
    pub cnonce: String,
    pub nc: u32,
    pub nextnonce: Option<String>,
}

impl AuthenticationInfo {
    /// What the server sends after accepting `credentials`.
    pub fn for_credentials(credentials: &Credentials, password: &str) -> Self {
        Self {
            rspauth: credentials.rspauth(password),
            cnonce: credentials.cnonce.clone(),
            nc: credentials.nc,
            nextnonce: None,
        }
    }

    /// The UE side: whether this answers `sent` and proves the password.
    pub fn verify(&self, sent: &Credentials, password: &str) -> bool {
        let expected = sent.rspauth(password);
        self.cnonce == sent.cnonce
            && self.nc == sent.nc
            && expected.len() == self.rspauth.len()
            && bool::from(
                expected
                    .as_bytes()
                    .ct_eq(self.rspauth.to_ascii_lowercase().as_bytes()),
            )
    }

    pub fn to_header(&self) -> Result<String, DigestError> {
        let mut out = String::new();
        let _ = write!(out, "qop={QOP_AUTH}, ");
        push_quoted(&mut out, "rspauth", &self.rspauth)?;
        out.push_str(", ");
        push_quoted(&mut out, "cnonce", &self.cnonce)?;
        let _ = write!(out, ", nc={:08x}", self.nc);
        if let Some(next) = &self.nextnonce {
            out.push_str(", ");
            push_quoted(&mut out, "nextnonce", next)?;
        }
        Ok(out)
    }

    pub fn parse(header: &str) -> Result<Self, DigestError> {
        let mut params = Params::parse(header, 0)?;
        if let Some(qop) = params.take("qop")
            && !qop.eq_ignore_ascii_case(QOP_AUTH)
        {
            return Err(DigestError::UnsupportedQop(qop));
        }
        let nc_text = params.require("nc")?;
        Ok(Self {
            rspauth: params.require("rspauth")?,
            cnonce: params.require("cnonce")?,
            nc: parse_nc(&nc_text)?,
            nextnonce: params.take("nextnonce"),
        })
    }
}

/// Appends `name="value"`, escaping `"` and `\` (RFC 7230 §3.2.6).
fn push_quoted(out: &mut String, name: &'static str, value: &str) -> Result<(), DigestError> {
    if value.chars().any(|c| c.is_control()) {
        return Err(DigestError::Unquotable(name));
    }
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(())
}

/// The auth-params of one header value, names lower-cased.
struct Params(HashMap<String, String>);

impl Params {
    fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    fn require(&mut self, name: &'static str) -> Result<String, DigestError> {
        self.take(name).ok_or(DigestError::MissingParam(name))
    }

    /// `#auth-param` (RFC 7235 §2.1): `token = (token / quoted-string)`
    /// separated by commas and optional whitespace. Unknown names are kept
    /// and ignored by the callers (RFC 7616 §3.3); a repeated name is an error.
    fn parse(text: &str, offset: usize) -> Result<Self, DigestError> {
        let bytes = text.as_bytes();
        let err = |at: usize, reason| DigestError::Syntax {
            at: offset + at,
            reason,
        };
        let mut map = HashMap::new();
        let mut i = 0;
        let skip_ws = |i: &mut usize| {
            while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
                *i += 1;
            }
        };
        loop {
            skip_ws(&mut i);
            while i < bytes.len() && bytes[i] == b',' {
                i += 1;
                skip_ws(&mut i);
            }
            if i >= bytes.len() {
                break;
            }
            let start = i;
            while i < bytes.len() && is_tchar(bytes[i]) {
                i += 1;
            }
            if i == start {
                return Err(err(i, "expected a parameter name"));
            }
            let name = text[start..i].to_ascii_lowercase();
            skip_ws(&mut i);
            if bytes.get(i) != Some(&b'=') {
                return Err(err(i, "expected '=' after a parameter name"));
            }
            i += 1;
            skip_ws(&mut i);
            let value = if bytes.get(i) == Some(&b'"') {
                i += 1;
                let mut value = String::new();
                let mut closed = false;
                let mut chars = text[i..].char_indices();
                while let Some((at, c)) = chars.next() {
                    match c {
                        '"' => {
                            i += at + 1;
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, escaped)) => value.push(escaped),
                            None => return Err(err(bytes.len(), "escape at end of input")),
                        },
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(err(bytes.len(), "unterminated quoted string"));
                }
                value
            } else {
                let start = i;
                while i < bytes.len() && is_tchar(bytes[i]) {
                    i += 1;
                }
                if i == start {
                    return Err(err(i, "expected a token or a quoted string"));
                }
                text[start..i].to_owned()
            };
            if map.insert(name.clone(), value).is_some() {
                return Err(DigestError::DuplicateParam(name));
            }
            skip_ws(&mut i);
            match bytes.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(err(i, "expected ',' between parameters")),
            }
        }
        Ok(Self(map))
    }
}

/// `tchar` of RFC 7230 §3.2.6.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Strips the `Digest` scheme (case-insensitive) and parses the rest.
fn parse_digest_params(header: &str) -> Result<Params, DigestError> {
    let trimmed = header.trim_start();
    let lead = header.len() - trimmed.len();
    let (scheme, rest) = trimmed.split_at(trimmed.find([' ', '\t']).unwrap_or(trimmed.len()));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    Params::parse(rest, lead + scheme.len())
}

/// Why the server did not accept a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NonceError {
    #[error("nonce was not issued by this server (or was forgotten)")]
    Unknown,
    #[error("nonce has expired")]
    Stale,
    #[error("nonce count {nc} is not above the last one used, {last}: replayed request")]
    ReusedCount { nc: u32, last: u32 },
}

/// Server nonces (RFC 7616 §3.3, §5.4 / §5.5): each is random, valid for
/// `lifetime`, and accepts every nonce count at most once and in increasing
/// order, so a captured Authorization header cannot be replayed.
#[derive(Debug)]
pub struct NonceBook {
    lifetime: Duration,
    capacity: usize,
    nonces: HashMap<String, NonceState>,
}

#[derive(Debug, Clone, Copy)]
struct NonceState {
    issued: Duration,
    last_nc: u32,
}

impl NonceBook {
    /// Holds at most `capacity` live nonces; the oldest go first.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        Self {
            lifetime,
            capacity: capacity.max(1),
            nonces: HashMap::new(),
        }
    }

    /// A new nonce from 16 caller-supplied random bytes, issued at `now`.
    pub fn issue(&mut self, random: [u8; 16], now: Duration) -> String {
        self.forget_expired(now);
        while self.nonces.len() >= self.capacity {
            let oldest = self
                .nonces
                .iter()
                .min_by_key(|(_, s)| s.issued)
                .map(|(n, _)| n.clone());
            match oldest {
                Some(n) => self.nonces.remove(&n),
                None => break,
            };
        }
        let nonce = hex::encode(random);
        self.nonces.insert(
            nonce.clone(),
            NonceState {
                issued: now,
                last_nc: 0,
            },
        );
        nonce
    }

    /// Accepts `nc` for `nonce` at `now` (call only after the digest verified).
    pub fn accept(&mut self, nonce: &str, nc: u32, now: Duration) -> Result<(), NonceError> {
        let state = self.nonces.get_mut(nonce).ok_or(NonceError::Unknown)?;
        if now.saturating_sub(state.issued) >= self.lifetime {
            self.nonces.remove(nonce);
            return Err(NonceError::Stale);
        }
        if nc <= state.last_nc {
            return Err(NonceError::ReusedCount {
                nc,
                last: state.last_nc,
            });
        }
        state.last_nc = nc;
        Ok(())
    }

    fn forget_expired(&mut self, now: Duration) {
        let lifetime = self.lifetime;
        self.nonces
            .retain(|_, s| now.saturating_sub(s.issued) < lifetime);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 7616 §3.9.1 (password per erratum 4495: "Circle of Life").
    const RFC_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
    const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn rfc_challenge(algorithm: &str) -> Challenge {
        Challenge::parse(&format!(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm={algorithm}, nonce=\"{RFC_NONCE}\", opaque=\"{RFC_OPAQUE}\""
        ))
        .unwrap()
    }

    fn rfc_answer(algorithm: &str) -> Credentials {
        Credentials::answer(
            &rfc_challenge(algorithm),
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            RFC_CNONCE,
            1,
        )
    }

    #[test]
    fn rfc7616_md5_example() {
        let c = rfc_answer("MD5");
        assert_eq!(c.response, "8ca523f5e9506fed4657c9700eebdbec");
        assert!(c.verify("Circle of Life", "GET"));
        assert!(!c.verify("Circle Of Life", "GET"));
    }

    #[test]
    fn rfc7616_sha256_example() {
        let c = rfc_answer("SHA-256");
        assert_eq!(
            c.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // The Authorization header of §3.9.1, as the RFC prints it.
        let rfc_header = format!(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", algorithm=SHA-256, nonce=\"{RFC_NONCE}\", nc=00000001, cnonce=\"{RFC_CNONCE}\", qop=auth, response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", opaque=\"{RFC_OPAQUE}\""
        );
        assert_eq!(c.to_header().unwrap(), rfc_header);
        let parsed = Credentials::parse(&rfc_header).unwrap();
        assert_eq!(parsed, c);
        assert!(parsed.verify("Circle of Life", "GET"));
        assert!(!parsed.verify("Circle of Life", "POST"));
    }

    #[test]
    fn challenge_round_trip_and_requirements() {
        let ch = Challenge {
            realm: "bmsc.example".into(),
            nonce: "ab\"c\\d".into(),
            opaque: None,
            algorithm: Algorithm::Sha256,
            stale: true,
        };
        assert_eq!(Challenge::parse(&ch.to_header().unwrap()).unwrap(), ch);
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\""),
            Err(DigestError::MissingParam("qop"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
            Err(DigestError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            Challenge::parse("Basic realm=\"r\""),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\", realm=\"s\", qop=auth, nonce=n"),
            Err(DigestError::DuplicateParam("realm".into()))
        );
        assert!(matches!(
            Challenge::parse("Digest realm=\"r, qop=auth"),
            Err(DigestError::Syntax { .. })
        ));
        assert_eq!(
            Challenge::parse("Digest realm=r, qop=auth, nonce=n, algorithm=SHA-512-256"),
            Err(DigestError::UnsupportedAlgorithm("SHA-512-256".into()))
        );
    }

    #[test]
    fn authentication_info_proves_the_server() {
        let c = rfc_answer("SHA-256");
        let info = AuthenticationInfo::for_credentials(&c, "Circle of Life");
        let parsed = AuthenticationInfo::parse(&info.to_header().unwrap()).unwrap();
        assert_eq!(parsed, info);
        assert!(parsed.verify(&c, "Circle of Life"));
        let forged = AuthenticationInfo::for_credentials(&c, "guess");
        assert!(!forged.verify(&c, "Circle of Life"));
        let mut other = c.clone();
        other.nc = 2;
        assert!(!info.verify(&other, "Circle of Life"));
        assert_ne!(info.rspauth, c.response, "A2 differs: no method");
    }

    #[test]
    fn bad_nonce_counts_are_refused() {
        let header = rfc_answer("MD5").to_header().unwrap();
        let bad = header.replace("nc=00000001", "nc=1");
        assert_eq!(
            Credentials::parse(&bad),
            Err(DigestError::BadNonceCount("1".into()))
        );
    }

    #[test]
    fn nonce_book_rules() {
        let mut book = NonceBook::new(Duration::from_secs(10), 2);
        let t0 = Duration::from_secs(100);
        let n = book.issue([1; 16], t0);
        assert_eq!(book.accept("nope", 1, t0), Err(NonceError::Unknown));
        assert_eq!(book.accept(&n, 1, t0), Ok(()));
        assert_eq!(
            book.accept(&n, 1, t0),
            Err(NonceError::ReusedCount { nc: 1, last: 1 })
        );
        assert_eq!(book.accept(&n, 3, t0), Ok(()));
        assert_eq!(
            book.accept(&n, 4, t0 + Duration::from_secs(10)),
            Err(NonceError::Stale)
        );
        // Capacity: the oldest nonce is forgotten.
        let a = book.issue([2; 16], t0);
        let b = book.issue([3; 16], t0 + Duration::from_secs(1));
        let c = book.issue([4; 16], t0 + Duration::from_secs(2));
        assert_eq!(book.accept(&a, 1, t0), Err(NonceError::Unknown));
        assert!(book.accept(&b, 1, t0).is_ok() && book.accept(&c, 1, t0).is_ok());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,200}") {
            let _ = Challenge::parse(&text);
            let _ = Credentials::parse(&text);
            let _ = AuthenticationInfo::parse(&text);
            let digest = format!("Digest {text}");
            let _ = Challenge::parse(&digest);
            let _ = Credentials::parse(&digest);
        }

        #[test]
        fn credentials_round_trip(user in "[ -~]{1,20}", uri in "/[ -~]{0,20}", nc: u32, cnonce in "[A-Za-z0-9+/]{1,30}") {
            let ch = Challenge { realm: "r".into(), nonce: "n".into(), opaque: Some("o".into()), algorithm: Algorithm::Sha256, stale: false };
            let c = Credentials::answer(&ch, &user, "pw", "POST", &uri, &cnonce, nc);
            let parsed = Credentials::parse(&c.to_header().unwrap()).unwrap();
            prop_assert!(parsed.verify("pw", "POST"));
            prop_assert_eq!(parsed, c);
        }
    }
}
