//! Client certificates as the protocol sees them (RFC 8705).
//!
//! The server hands the protocol layer a [`PeerCertificate`]: the leaf the
//! client presented on the mutual-TLS connection (or that a trusted
//! TLS-terminating proxy forwarded), already parsed, with the facts client
//! authentication and certificate-bound tokens need: the subject DN and SANs
//! for `tls_client_auth` (RFC 8705 §2.1.2), the public key for
//! `self_signed_tls_client_auth` (RFC 8705 §2.2), and the `x5t#S256`
//! thumbprint for the `cnf` claim (RFC 8705 §3.1). Whether the chain verified
//! to a configured CA bundle is decided by the server and recorded in
//! [`PeerCertificate::ca_verified`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use x509_parser::asn1_rs::{Any, Class, Oid};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::X509Name;

/// Why a certificate or a distinguished name could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The DER is not an X.509 certificate we can read (RFC 5280 §4.1).
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// The string is not a distinguished name in RFC 4514 syntax.
    #[error("invalid distinguished name at byte {position}: {reason}")]
    InvalidDn {
        /// Byte offset in the input where parsing stopped.
        position: usize,
        /// What was wrong there.
        reason: &'static str,
    },
}

/// OIDs of the attribute types we know by name, with the name RFC 4514 §3
/// prints (`None`: printed as a dotted OID, because RFC 4514 only lets
/// registered short names from its table stand in for the OID).
const ATTRIBUTE_TYPES: &[(&str, Option<&str>, &[&str])] = &[
    ("2.5.4.3", Some("CN"), &["cn", "commonname"]),
    ("2.5.4.6", Some("C"), &["c", "countryname"]),
    ("2.5.4.10", Some("O"), &["o", "organizationname"]),
    ("2.5.4.11", Some("OU"), &["ou", "organizationalunitname"]),
    ("2.5.4.7", Some("L"), &["l", "localityname"]),
    ("2.5.4.8", Some("ST"), &["st", "stateorprovincename"]),
    ("2.5.4.9", Some("STREET"), &["street", "streetaddress"]),
    (
        "0.9.2342.19200300.100.1.25",
        Some("DC"),
        &["dc", "domaincomponent"],
    ),
    ("0.9.2342.19200300.100.1.1", Some("UID"), &["uid", "userid"]),
    ("2.5.4.5", None, &["serialnumber"]),
    (
        "1.2.840.113549.1.9.1",
        None,
        &["emailaddress", "e", "email"],
    ),
    ("2.5.4.97", None, &["organizationidentifier"]),
    ("2.5.4.15", None, &["businesscategory"]),
    (
        "1.3.6.1.4.1.311.60.2.1.3",
        None,
        &["jurisdictioncountryname", "jurisdictionc"],
    ),
    ("2.5.4.4", None, &["sn", "surname"]),
    ("2.5.4.42", None, &["gn", "givenname"]),
    ("2.5.4.12", None, &["title"]),
];

/// The value of one attribute of a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// A character string (any of the X.520 directory string types).
    Text(String),
    /// A value that is not a character string, kept as its BER encoding
    /// (RFC 4514 §2.4 prints it as `#` followed by hex).
    Ber(Vec<u8>),
}

/// One `type=value` pair of a relative distinguished name (RFC 5280 §4.1.2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    oid: String,
    value: AttributeValue,
}

impl Attribute {
    /// The attribute type as a dotted OID, e.g. `2.5.4.3` for CN.
    pub fn oid(&self) -> &str {
        &self.oid
    }

    /// The attribute value.
    pub fn value(&self) -> &AttributeValue {
        &self.value
    }

    fn normalized(&self) -> (String, NormValue) {
        let value = match &self.value {
            AttributeValue::Text(s) => NormValue::Text(
                s.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase(),
            ),
            AttributeValue::Ber(b) => NormValue::Ber(b.clone()),
        };
        (self.oid.clone(), value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum NormValue {
    Text(String),
    Ber(Vec<u8>),
}

/// A distinguished name as a sequence of RDNs, each a set of attributes
/// (RFC 5280 §4.1.2.4).
///
/// Stored in certificate (ASN.1) order, most significant RDN first; RFC 4514
/// strings list the RDNs the other way round, and [`Self::parse_rfc4514`] and
/// [`Self::to_rfc4514`] do the reversal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DistinguishedName {
    rdns: Vec<Vec<Attribute>>,
}

impl DistinguishedName {
    /// The RDNs in certificate order (most significant first); each inner
    /// slice holds the attributes of one (possibly multi-valued) RDN.
    pub fn rdns(&self) -> impl Iterator<Item = &[Attribute]> {
        self.rdns.iter().map(Vec::as_slice)
    }

    /// The text values of all attributes with this OID, in certificate order.
    pub fn values_of<'a>(&'a self, oid: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rdns
            .iter()
            .flatten()
            .filter(move |a| a.oid == oid)
            .filter_map(|a| match &a.value {
                AttributeValue::Text(s) => Some(s.as_str()),
                AttributeValue::Ber(_) => None,
            })
    }

    /// Parses an RFC 4514 string, e.g. a registered `tls_client_auth_subject_dn`
    /// (RFC 8705 §2.1.2).
    ///
    /// Accepts the escapes of RFC 4514 §2.4 (`\,` `\+` `\"` `\\` `\;` `\<`
    /// `\>` `\=` `\#` `\ ` and `\XX` hex pairs forming UTF-8), `#hex` BER
    /// values, multi-valued RDNs joined by `+`, spaces around separators,
    /// RFC 2253 quoted values, the short names of RFC 4514 §3 plus a few
    /// X.520 names used by eIDAS and Open Banking certificates
    /// (serialNumber, emailAddress/E, organizationIdentifier, …), and dotted
    /// OIDs (optionally prefixed `OID.`). Unescaped `;`, `"`, `<` and `>`
    /// inside a value are refused rather than guessed at.
    pub fn parse_rfc4514(input: &str) -> Result<Self, CertError> {
        let mut parser = DnParser {
            bytes: input.as_bytes(),
            pos: 0,
        };
        let mut rdns = Vec::new();
        parser.skip_spaces();
        if parser.at_end() {
            return Ok(Self::default());
        }
        let mut rdn = Vec::new();
        loop {
            let oid = parser.attribute_type()?;
            parser.skip_spaces();
            parser.expect(b'=', "expected '=' after the attribute type")?;
            parser.skip_spaces();
            let value = parser.attribute_value()?;
            rdn.push(Attribute { oid, value });
            parser.skip_spaces();
            match parser.next() {
                None => {
                    rdns.push(rdn);
                    break;
                }
                Some(b',') => {
                    rdns.push(std::mem::take(&mut rdn));
                    parser.skip_spaces();
                }
                Some(b'+') => parser.skip_spaces(),
                Some(_) => return Err(parser.error_before("expected ',' or '+'")),
            }
        }
        rdns.reverse();
        Ok(Self { rdns })
    }

    /// The RFC 4514 string form: RDNs from least to most significant (the
    /// reverse of certificate order), short names from RFC 4514 §3, dotted
    /// OIDs for every other type, RFC 4514 §2.4 escaping.
    pub fn to_rfc4514(&self) -> String {
        let mut out = String::new();
        for (i, rdn) in self.rdns.iter().rev().enumerate() {
            if i > 0 {
                out.push(',');
            }
            for (j, attr) in rdn.iter().enumerate() {
                if j > 0 {
                    out.push('+');
                }
                out.push_str(short_name(&attr.oid).unwrap_or(&attr.oid));
                out.push('=');
                match &attr.value {
                    AttributeValue::Text(s) => escape_value(s, &mut out),
                    AttributeValue::Ber(b) => {
                        out.push('#');
                        for byte in b {
                            out.push_str(&format!("{byte:02x}"));
                        }
                    }
                }
            }
        }
        out
    }

    /// Semantic equality as used to match `tls_client_auth_subject_dn`
    /// (RFC 8705 §2.1.2): the same RDNs in the same order, each RDN the same
    /// set of attributes; types compared by OID, text values compared
    /// case-insensitively after trimming and collapsing internal whitespace.
    pub fn matches(&self, other: &DistinguishedName) -> bool {
        self.rdns.len() == other.rdns.len()
            && self
                .rdns
                .iter()
                .zip(&other.rdns)
                .all(|(a, b)| normalized_rdn(a) == normalized_rdn(b))
    }

    fn from_x509(name: &X509Name<'_>) -> Self {
        let rdns = name
            .iter_rdn()
            .map(|rdn| {
                rdn.iter()
                    .map(|atv| Attribute {
                        oid: atv.attr_type().to_id_string(),
                        value: value_from_any(atv.attr_value()),
                    })
                    .collect()
            })
            .collect();
        Self { rdns }
    }
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc4514())
    }
}

fn normalized_rdn(rdn: &[Attribute]) -> Vec<(String, NormValue)> {
    // An RDN is a SET, so attribute order inside it carries no meaning.
    let mut v: Vec<_> = rdn.iter().map(Attribute::normalized).collect();
    v.sort();
    v
}

fn short_name(oid: &str) -> Option<&'static str> {
    ATTRIBUTE_TYPES
        .iter()
        .find(|(o, _, _)| *o == oid)
        .and_then(|(_, short, _)| *short)
}

fn escape_value(s: &str, out: &mut String) {
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            // Control characters (NUL included) are hex-escaped so the DN
            // stays one printable line in logs and metadata.
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
}

/// Universal tags of the X.520 string types we turn into text.
fn decode_string(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString
        12 | 18 | 19 | 22 | 26 => String::from_utf8(data.to_vec()).ok(),
        // TeletexString: in practice Latin-1
        20 => Some(data.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UCS-2 big-endian
        30 => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UCS-4 big-endian
        28 => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

fn value_from_any(any: &Any<'_>) -> AttributeValue {
    let header = &any.header;
    if header.class() == Class::Universal
        && !header.is_constructed()
        && let Some(s) = decode_string(header.tag().0, any.data)
    {
        return AttributeValue::Text(s);
    }
    AttributeValue::Ber(encode_tlv(
        header.class() as u8,
        header.is_constructed(),
        header.tag().0,
        any.data,
    ))
}

fn encode_tlv(class: u8, constructed: bool, tag: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 6);
    let first = (class << 6) | if constructed { 0x20 } else { 0 };
    if tag < 31 {
        out.push(first | tag as u8);
    } else {
        out.push(first | 0x1f);
        let mut groups = Vec::new();
        let mut t = tag;
        loop {
            groups.push((t & 0x7f) as u8);
            t >>= 7;
            if t == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            out.push(if i + 1 < groups.len() { g | 0x80 } else { *g });
        }
    }
    let len = data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(data);
    out
}

/// A `#hex` value (RFC 4514 §2.4) holds a BER TLV; a string type inside it
/// becomes text so it compares equal to the same value written as a string.
fn value_from_ber(ber: Vec<u8>) -> Option<AttributeValue> {
    let (&first, rest) = ber.split_first()?;
    if first & 0x1f == 0x1f {
        return Some(AttributeValue::Ber(ber));
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() != len {
        return None;
    }
    if first & 0xe0 == 0
        && let Some(s) = decode_string(u32::from(first & 0x1f), rest)
    {
        return Some(AttributeValue::Text(s));
    }
    Some(AttributeValue::Ber(ber))
}

struct DnParser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl DnParser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn error(&self, reason: &'static str) -> CertError {
        CertError::InvalidDn {
            position: self.pos,
            reason,
        }
    }

    fn error_before(&self, reason: &'static str) -> CertError {
        CertError::InvalidDn {
            position: self.pos.saturating_sub(1),
            reason,
        }
    }

    fn expect(&mut self, b: u8, reason: &'static str) -> Result<(), CertError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    fn attribute_type(&mut self) -> Result<String, CertError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let raw = std::str::from_utf8(&self.bytes[start..self.pos])
            .map_err(|_| self.error("invalid attribute type"))?;
        if raw.is_empty() {
            return Err(self.error("expected an attribute type"));
        }
        let dotted = raw
            .strip_prefix("OID.")
            .or_else(|| raw.strip_prefix("oid."))
            .unwrap_or(raw);
        if dotted.is_empty() {
            // "OID." with nothing after it (found by the `dn` fuzz target).
            return Err(CertError::InvalidDn {
                position: start,
                reason: "invalid numeric OID",
            });
        }
        if dotted.as_bytes()[0].is_ascii_digit() {
            let valid = dotted.split('.').count() >= 2
                && dotted.split('.').all(|arc| {
                    !arc.is_empty()
                        && arc.bytes().all(|b| b.is_ascii_digit())
                        && (arc == "0" || !arc.starts_with('0'))
                });
            return if valid {
                Ok(dotted.to_owned())
            } else {
                Err(CertError::InvalidDn {
                    position: start,
                    reason: "invalid numeric OID",
                })
            };
        }
        let lower = raw.to_ascii_lowercase();
        ATTRIBUTE_TYPES
            .iter()
            .find(|(_, _, names)| names.contains(&lower.as_str()))
            .map(|(oid, _, _)| (*oid).to_owned())
            .ok_or(CertError::InvalidDn {
                position: start,
                reason: "unknown attribute type name (use a dotted OID)",
            })
    }

    fn attribute_value(&mut self) -> Result<AttributeValue, CertError> {
        match self.peek() {
            Some(b'#') => self.hex_value(),
            Some(b'"') => self.quoted_value(),
            _ => self.string_value(),
        }
    }

    fn hex_value(&mut self) -> Result<AttributeValue, CertError> {
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let hex = &self.bytes[start..self.pos];
        if hex.is_empty() || !hex.len().is_multiple_of(2) {
            return Err(self.error("'#' value needs an even number of hex digits"));
        }
        let ber = hex
            .chunks_exact(2)
            .map(|p| (hex_digit(p[0]) << 4) | hex_digit(p[1]))
            .collect();
        value_from_ber(ber).ok_or(CertError::InvalidDn {
            position: start,
            reason: "'#' value is not a single BER element",
        })
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), CertError> {
        match self.next() {
            Some(h1) if h1.is_ascii_hexdigit() => match self.next() {
                Some(h2) if h2.is_ascii_hexdigit() => {
                    out.push((hex_digit(h1) << 4) | hex_digit(h2));
                    Ok(())
                }
                _ => Err(self.error_before("'\\' followed by a single hex digit")),
            },
            Some(c @ (b' ' | b'"' | b'#' | b'+' | b',' | b';' | b'<' | b'=' | b'>' | b'\\')) => {
                out.push(c);
                Ok(())
            }
            _ => Err(self.error_before("invalid escape sequence")),
        }
    }

    fn string_value(&mut self) -> Result<AttributeValue, CertError> {
        let mut out = Vec::new();
        // Unescaped trailing spaces are not part of the value, escaped ones are.
        let mut keep = 0;
        while let Some(b) = self.peek() {
            match b {
                b',' | b'+' => break,
                b'\\' => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                    keep = out.len();
                }
                b';' | b'"' | b'<' | b'>' => {
                    return Err(self.error("special character must be escaped with '\\'"));
                }
                _ => {
                    self.pos += 1;
                    out.push(b);
                    if b != b' ' {
                        keep = out.len();
                    }
                }
            }
        }
        out.truncate(keep);
        String::from_utf8(out)
            .map(AttributeValue::Text)
            .map_err(|_| self.error("value is not valid UTF-8"))
    }

    fn quoted_value(&mut self) -> Result<AttributeValue, CertError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.next() {
                None => return Err(self.error("unterminated quoted value")),
                Some(b'"') => break,
                Some(b'\\') => self.escape(&mut out)?,
                Some(b) => out.push(b),
            }
        }
        String::from_utf8(out)
            .map(AttributeValue::Text)
            .map_err(|_| self.error("value is not valid UTF-8"))
    }
}

fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// The client certificate of a request, as client authentication and
/// certificate-bound tokens see it (RFC 8705).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
    /// How many certificates the client presented (leaf included).
    pub chain_len: usize,
    /// The subject, parsed; match `tls_client_auth_subject_dn` against this
    /// with [`DistinguishedName::matches`] (RFC 8705 §2.1.2).
    pub subject: DistinguishedName,
    /// The subject as an RFC 4514 string (most significant RDN last).
    pub subject_dn: String,
    /// The issuer as an RFC 4514 string.
    pub issuer_dn: String,
    /// dNSName SANs (`tls_client_auth_san_dns`, RFC 8705 §2.1.2).
    pub san_dns: Vec<String>,
    /// uniformResourceIdentifier SANs (`tls_client_auth_san_uri`).
    pub san_uri: Vec<String>,
    /// iPAddress SANs in textual form (`tls_client_auth_san_ip`).
    pub san_ip: Vec<String>,
    /// rfc822Name SANs (`tls_client_auth_san_email`).
    pub san_email: Vec<String>,
    /// base64url SHA-256 of the leaf DER: the `x5t#S256` confirmation
    /// (RFC 8705 §3.1).
    pub x5t_s256: String,
    /// notBefore, seconds since the Unix epoch.
    pub not_before: i64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
    /// True only when the chain verified to the configured CA bundle at the
    /// time of the handshake; required for `tls_client_auth` (RFC 8705 §2.1).
    pub ca_verified: bool,
}

impl PeerCertificate {
    /// Parses the leaf certificate of a presented chain.
    pub fn from_der(leaf: &[u8], chain_len: usize, ca_verified: bool) -> Result<Self, CertError> {
        let cert = parse(leaf)?;
        let subject = DistinguishedName::from_x509(cert.subject());
        let issuer = DistinguishedName::from_x509(cert.issuer());
        let mut out = Self {
            der: leaf.to_vec(),
            chain_len,
            subject_dn: subject.to_rfc4514(),
            subject,
            issuer_dn: issuer.to_rfc4514(),
            san_dns: Vec::new(),
            san_uri: Vec::new(),
            san_ip: Vec::new(),
            san_email: Vec::new(),
            x5t_s256: URL_SAFE_NO_PAD
                .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf)),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            ca_verified,
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| CertError::InvalidCertificate(format!("subjectAltName: {e}")))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(s) => out.san_dns.push((*s).to_owned()),
                GeneralName::URI(s) => out.san_uri.push((*s).to_owned()),
                GeneralName::RFC822Name(s) => out.san_email.push((*s).to_owned()),
                GeneralName::IPAddress(b) => {
                    if let Some(ip) = ip_from_bytes(b) {
                        out.san_ip.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Whether `now` (seconds since the Unix epoch) lies within the
    /// certificate's validity period (RFC 5280 §4.1.2.5).
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// For `self_signed_tls_client_auth` (RFC 8705 §2.2): whether the JWK
    /// holds this certificate's subject public key (RSA `n`/`e`, EC `x`/`y`
    /// on P-256/P-384/P-521, OKP Ed25519 `x`), or its `x5c[0]` is this very
    /// certificate (RFC 7517 §4.7).
    pub fn public_key_matches_jwk(&self, jwk: &serde_json::Value) -> bool {
        let x5c_matches = jwk
            .get("x5c")
            .and_then(|v| v.get(0))
            .and_then(serde_json::Value::as_str)
            .and_then(|s| STANDARD.decode(s).ok())
            .is_some_and(|der| der == self.der);
        x5c_matches || self.key_matches_jwk(jwk).unwrap_or(false)
    }

    fn key_matches_jwk(&self, jwk: &serde_json::Value) -> Option<bool> {
        let cert = parse(&self.der).ok()?;
        let spki = cert.public_key();
        let member = |name: &str| {
            jwk.get(name)
                .and_then(serde_json::Value::as_str)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        };
        let kty = jwk.get("kty")?.as_str()?;
        match (kty, spki.parsed().ok()?) {
            ("RSA", PublicKey::RSA(rsa)) => Some(
                strip_zeros(&member("n")?) == strip_zeros(rsa.modulus)
                    && strip_zeros(&member("e")?) == strip_zeros(rsa.exponent),
            ),
            ("EC", PublicKey::EC(point)) => {
                let (curve_oid, size) = match jwk.get("crv")?.as_str()? {
                    "P-256" => ("1.2.840.10045.3.1.7", 32),
                    "P-384" => ("1.3.132.0.34", 48),
                    "P-521" => ("1.3.132.0.35", 66),
                    _ => return Some(false),
                };
                let params = spki.algorithm.parameters.clone()?;
                let cert_curve = Oid::try_from(params).ok()?.to_id_string();
                let data = point.data();
                if cert_curve != curve_oid || data.len() != 1 + 2 * size || data[0] != 0x04 {
                    return Some(false);
                }
                Some(member("x")? == data[1..=size] && member("y")? == data[1 + size..])
            }
            ("OKP", _) if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => Some(
                jwk.get("crv")?.as_str()? == "Ed25519"
                    && member("x")? == spki.subject_public_key.data.as_ref(),
            ),
            _ => Some(false),
        }
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertError::InvalidCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::InvalidCertificate(
            "trailing data after the certificate".into(),
        ));
    }
    Ok(cert)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};
    use serde_json::json;

    fn dn(s: &str) -> DistinguishedName {
        DistinguishedName::parse_rfc4514(s).unwrap()
    }

    fn cert_with(
        subject: &[(DnType, &str)],
        sans: Vec<SanType>,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in subject {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.subject_alt_names = sans;
        let cert = params.self_signed(&key).unwrap();
        (cert.der().to_vec(), key)
    }

    fn p256_cert(subject: &[(DnType, &str)]) -> (Vec<u8>, KeyPair) {
        cert_with(subject, Vec::new(), &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// Inputs the `dn` fuzz target found (fuzz/regressions/dn/): each is
    /// refused, none panics.
    #[test]
    fn malformed_attribute_types_are_refused_not_panicked_on() {
        for bad in [
            "OID.",
            "OID.=x",
            "oid.=a,CN=b",
            "CN=a,OID.=b",
            "OID..1=x",
            "OID.1=x",
        ] {
            assert!(DistinguishedName::parse_rfc4514(bad).is_err(), "{bad}");
        }
        assert!(DistinguishedName::parse_rfc4514("OID.2.5.4.3=x").is_ok());
    }

    #[test]
    fn subject_dn_is_printed_in_rfc4514_order() {
        let (der, _) = p256_cert(&[
            (DnType::CommonName, "tpp-client-1"),
            (DnType::CountryName, "BR"),
            (DnType::OrganizationName, "Example TPP Ltd"),
        ]);
        let pc = PeerCertificate::from_der(&der, 1, false).unwrap();
        assert_eq!(pc.subject_dn, "O=Example TPP Ltd,C=BR,CN=tpp-client-1");
        assert_eq!(pc.issuer_dn, pc.subject_dn);
        let order: Vec<_> = pc.subject.rdns().map(|r| r[0].oid().to_owned()).collect();
        assert_eq!(order, ["2.5.4.3", "2.5.4.6", "2.5.4.10"]);
        assert!(
            pc.subject
                .matches(&dn("O=Example TPP Ltd,C=BR,CN=tpp-client-1"))
        );
        // The certificate-order string is a different DN.
        assert!(
            !pc.subject
                .matches(&dn("CN=tpp-client-1,C=BR,O=Example TPP Ltd"))
        );
    }

    #[test]
    fn semantic_match_ignores_case_whitespace_and_escaping() {
        let registered = dn(r"CN=Client\, One,OU=Payments  Team,O=ACME Bank,C=GB");
        for equivalent in [
            r"cn=client\, one, ou=payments team ,o=acme   bank,c=gb",
            r"  CN = Client\2c One , OU=Payments Team,O=ACME Bank,C=GB  ",
            r#"CN="Client, One",OU=Payments Team,O=ACME Bank,C=GB"#,
            r"commonName=CLIENT\2C ONE,organizationalUnitName=Payments Team,2.5.4.10=ACME Bank,OID.2.5.4.6=GB",
            r"CN=#0c0b436c69656e742c204f6e65,OU=Payments Team,O=ACME Bank,C=GB",
        ] {
            assert!(
                registered.matches(&dn(equivalent)),
                "{equivalent} should match {registered}"
            );
        }
    }

    #[test]
    fn mismatch_on_value_order_or_count() {
        let registered = dn("CN=client,O=ACME Bank,C=GB");
        assert!(!registered.matches(&dn("CN=client2,O=ACME Bank,C=GB")));
        assert!(!registered.matches(&dn("O=ACME Bank,CN=client,C=GB")));
        assert!(!registered.matches(&dn("CN=client,O=ACME Bank")));
        assert!(!registered.matches(&dn("CN=client,OU=ACME Bank,C=GB")));
        assert!(!registered.matches(&dn("CN=client+UID=1,O=ACME Bank,C=GB")));
    }

    #[test]
    fn multi_valued_rdns_compare_as_sets() {
        let a = dn("CN=alice+UID=42,O=Example");
        assert!(a.matches(&dn("UID=42 + CN=Alice, O=example")));
        assert_eq!(a.rdns().count(), 2);
        assert_eq!(a.to_rfc4514(), "CN=alice+UID=42,O=Example");
        assert!(!a.matches(&dn("CN=alice,UID=42,O=Example")));
    }

    #[test]
    fn escapes_round_trip() {
        let s = r#"CN=\ lead\, \+plus \"q\" back\\slash trail\ ,O=\#hash\;semi\;,C=DE"#;
        let parsed = dn(s);
        let values: Vec<_> = parsed.rdns().map(|r| r[0].value().clone()).collect();
        assert_eq!(
            values,
            [
                AttributeValue::Text("DE".into()),
                AttributeValue::Text("#hash;semi;".into()),
                AttributeValue::Text(r#" lead, +plus "q" back\slash trail "#.into()),
            ]
        );
        assert_eq!(dn(&parsed.to_rfc4514()), parsed);
        assert_eq!(
            dn(r"CN=\4f\c3\a9").values_of("2.5.4.3").collect::<Vec<_>>(),
            ["Oé"]
        );
    }

    #[test]
    fn malformed_dns_are_refused() {
        for bad in [
            "CN",
            "CN=a;O=b",
            "=x",
            "XX=1",
            "CN=a\\",
            "CN=a\\4",
            "CN=#0c",
            "CN=#abc",
            "1..2=x",
            r#"CN="open"#,
            "CN=a,",
        ] {
            assert!(
                DistinguishedName::parse_rfc4514(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(dn("  ").rdns().count(), 0);
    }

    #[test]
    fn organization_identifier_oid() {
        let (der, _) = p256_cert(&[
            (DnType::CountryName, "GB"),
            (DnType::OrganizationName, "OpenBanking"),
            (
                DnType::CustomDnType(vec![2, 5, 4, 97]),
                "PSDGB-OB-Unknown0015800001HQQrZAAX",
            ),
            (DnType::CommonName, "0015800001HQQrZAAX"),
        ]);
        let pc = PeerCertificate::from_der(&der, 1, false).unwrap();
        assert_eq!(
            pc.subject_dn,
            "CN=0015800001HQQrZAAX,2.5.4.97=PSDGB-OB-Unknown0015800001HQQrZAAX,O=OpenBanking,C=GB"
        );
        assert!(pc.subject.matches(&dn(
            "CN=0015800001HQQrZAAX, organizationIdentifier=PSDGB-OB-Unknown0015800001HQQrZAAX, O=OpenBanking, C=GB"
        )));
        assert_eq!(
            pc.subject.values_of("2.5.4.97").collect::<Vec<_>>(),
            ["PSDGB-OB-Unknown0015800001HQQrZAAX"]
        );
    }

    #[test]
    fn san_extraction_and_thumbprint() {
        let (der, _) = cert_with(
            &[(DnType::CommonName, "client")],
            vec![
                SanType::DnsName("client.example.com".try_into().unwrap()),
                SanType::URI("https://client.example.com/id".try_into().unwrap()),
                SanType::IpAddress("192.0.2.7".parse().unwrap()),
                SanType::IpAddress("2001:db8::1".parse().unwrap()),
                SanType::Rfc822Name("ops@client.example.com".try_into().unwrap()),
            ],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        );
        let pc = PeerCertificate::from_der(&der, 2, true).unwrap();
        assert_eq!(pc.san_dns, ["client.example.com"]);
        assert_eq!(pc.san_uri, ["https://client.example.com/id"]);
        assert_eq!(pc.san_ip, ["192.0.2.7", "2001:db8::1"]);
        assert_eq!(pc.san_email, ["ops@client.example.com"]);
        assert_eq!((pc.chain_len, pc.ca_verified), (2, true));

        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        assert_eq!(pc.x5t_s256, URL_SAFE_NO_PAD.encode(digest.as_ref()));
        assert_eq!(pc.x5t_s256.len(), 43);
        assert!(!pc.x5t_s256.contains(['+', '/', '=']));
    }

    #[test]
    fn validity_window() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let pc = PeerCertificate::from_der(&der, 1, false).unwrap();
        assert_eq!(pc.not_before, 1_577_836_800);
        assert_eq!(pc.not_after, 1_609_459_200);
        assert!(pc.is_valid_at(1_600_000_000));
        assert!(!pc.is_valid_at(1_609_459_201));
        assert!(!pc.is_valid_at(1_500_000_000));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            PeerCertificate::from_der(b"not a cert", 1, false),
            Err(CertError::InvalidCertificate(_))
        ));
        let (mut der, _) = p256_cert(&[(DnType::CommonName, "x")]);
        der.push(0);
        assert!(PeerCertificate::from_der(&der, 1, false).is_err());
    }

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn ec_key_matches_jwk() {
        let (der, key) = p256_cert(&[(DnType::CommonName, "ec")]);
        let pc = PeerCertificate::from_der(&der, 1, false).unwrap();
        let raw = key.public_key_raw();
        assert_eq!(raw.len(), 65);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..])});
        assert!(pc.public_key_matches_jwk(&jwk));

        let (_, other) = p256_cert(&[(DnType::CommonName, "other")]);
        let o = other.public_key_raw();
        let wrong = json!({"kty": "EC", "crv": "P-256", "x": b64(&o[1..33]), "y": b64(&o[33..])});
        assert!(!pc.public_key_matches_jwk(&wrong));
        let wrong_crv =
            json!({"kty": "EC", "crv": "P-384", "x": b64(&raw[1..33]), "y": b64(&raw[33..])});
        assert!(!pc.public_key_matches_jwk(&wrong_crv));
        assert!(!pc.public_key_matches_jwk(&json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})));
        assert!(!pc.public_key_matches_jwk(&json!({})));
    }

    #[test]
    fn rsa_key_matches_jwk() {
        let (der, key) = cert_with(
            &[(DnType::CommonName, "rsa")],
            Vec::new(),
            &rcgen::PKCS_RSA_SHA256,
        );
        let pc = PeerCertificate::from_der(&der, 1, false).unwrap();
        let rsa = aws_lc_rs::rsa::KeyPair::from_pkcs8(key.serialized_der()).unwrap();
        use aws_lc_rs::signature::KeyPair as _;
        let public = rsa.public_key();
        let n = public.modulus().big_endian_without_leading_zero();
        let e = public.exponent().big_endian_without_leading_zero();
        let jwk = json!({"kty": "RSA", "n": b64(n), "e": b64(e)});
        assert!(pc.public_key_matches_jwk(&jwk));
        // A leading zero octet in n does not change the key.
        let mut padded = vec![0u8];
        padded.extend_from_slice(n);
        assert!(pc.public_key_matches_jwk(&json!({"kty": "RSA", "n": b64(&padded), "e": b64(e)})));
        let mut other_n = n.to_vec();
        other_n[10] ^= 1;
        assert!(
            !pc.public_key_matches_jwk(&json!({"kty": "RSA", "n": b64(&other_n), "e": b64(e)}))
        );
    }

    #[test]
    fn ed25519_key_and_x5c_match() {
        let (der, key) = cert_with(
            &[(DnType::CommonName, "ed")],
            Vec::new(),
            &rcgen::PKCS_ED25519,
        );
        let pc = PeerCertificate::from_der(&der, 1, false).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key_raw())});
        assert!(pc.public_key_matches_jwk(&jwk));

        let (other_der, _) = p256_cert(&[(DnType::CommonName, "other")]);
        assert!(pc.public_key_matches_jwk(&json!({"kty": "EC", "x5c": [STANDARD.encode(&der)]})));
        assert!(
            !pc.public_key_matches_jwk(&json!({"kty": "EC", "x5c": [STANDARD.encode(&other_der)]}))
        );
    }
}
