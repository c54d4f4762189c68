//! Software statements (RFC 7591 §2.3): verified against the keys of the
//! directory that issued them, and the TPP's registration request JWT
//! against the software's own keys named in the statement.
//!
//! Both key sets go through the server's [`JwksResolver`] (cached, one
//! refetch on an unknown `kid`, a stale set kept during an outage), by
//! presenting each key source as a key-only client.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth_core::cert::PeerCertificate;
use oauth_core::client::Client;
use oauth_core::error::OAuthError;
use oauth_core::jwks_resolver::{JwksFetcher, JwksResolver, KeyLookupError};
use oauth_core::keys::{JwsAlg, KeyError, VerifyOptions, peek_header, verify_jws};
use serde_json::{Map, Value, json};

use crate::config::DirectoryConfig;
use crate::rules::Rules;
use crate::{metadata_error, ssa_error, unapproved};

/// A configured directory, ready for use.
pub(crate) struct Directory {
    pub cfg: DirectoryConfig,
    pub rules: Rules,
    pub algs: Vec<JwsAlg>,
    keys: Client,
}

/// A key-only client whose keys the resolver finds (`jwks_uri` or `jwks`).
fn key_holder(id: &str, jwks_uri: Option<&str>, jwks: Option<&Value>) -> Result<Client, String> {
    let mut m = json!({
        "client_id": id,
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
    });
    if let Some(u) = jwks_uri {
        m["jwks_uri"] = json!(u);
    } else if let Some(j) = jwks {
        m["jwks"] = j.clone();
    }
    let metadata = serde_json::from_value(m).map_err(|e| e.to_string())?;
    Client::new(metadata, None).map_err(|e| e.to_string())
}

impl Directory {
    pub(crate) fn new(cfg: &DirectoryConfig) -> Result<Directory, String> {
        let keys = key_holder(
            &format!("directory:{}", cfg.name),
            cfg.jwks_uri.as_deref(),
            cfg.jwks.as_ref(),
        )
        .map_err(|e| format!("directories ({}): {e}", cfg.name))?;
        let algs = cfg
            .algs
            .iter()
            .map(|a| JwsAlg::parse(a).map_err(|e| format!("directories ({}): {e}", cfg.name)))
            .collect::<Result<_, _>>()?;
        Ok(Directory {
            rules: cfg.rules.rules(),
            cfg: cfg.clone(),
            algs,
            keys,
        })
    }
}

/// A verified software statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SoftwareStatement {
    pub jwt: String,
    pub claims: Map<String, Value>,
    pub software_id: String,
    pub directory: String,
    /// The directory's role → scopes map, for precise error messages.
    pub role_scopes: std::collections::BTreeMap<String, Vec<String>>,
}

impl SoftwareStatement {
    pub(crate) fn str_claim(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.claims
            .get(name)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `software_redirect_uris` (UK, Brazil) or `redirect_uris` (CDR).
    pub(crate) fn redirect_uris(&self) -> Vec<String> {
        let v = self.list("software_redirect_uris");
        if v.is_empty() {
            self.list("redirect_uris")
        } else {
            v
        }
    }

    /// `software_jwks_endpoint` (UK), `software_jwks_uri` (Brazil Open
    /// Finance directory SSAs) or `jwks_uri` (CDR).
    pub(crate) fn jwks_uri(&self) -> Option<String> {
        self.str_claim("software_jwks_endpoint")
            .or_else(|| self.str_claim("software_jwks_uri"))
            .or_else(|| self.str_claim("jwks_uri"))
    }

    /// The role that would allow `scope`, if any.
    pub(crate) fn role_for(&self, scope: &str) -> Option<String> {
        self.role_scopes
            .iter()
            .find(|(_, scopes)| scopes.iter().any(|s| s == scope))
            .map(|(role, _)| role.clone())
    }

    fn roles(&self) -> Vec<String> {
        self.list("software_roles")
    }

    /// The directory's base scopes, those of the software's roles, and
    /// (CDR) the statement's own `scope`.
    pub(crate) fn allowed_scopes(&self, dir: &DirectoryConfig) -> Vec<String> {
        let mut out = dir.base_scopes.clone();
        for role in self.roles() {
            if let Some(scopes) = dir.role_scopes.get(&role) {
                out.extend(scopes.iter().cloned());
            }
        }
        if let Some(s) = self.str_claim("scope") {
            out.extend(s.split_whitespace().map(str::to_owned));
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|s| seen.insert(s.clone()));
        out
    }
}

/// The payload of a compact JWS, without checking anything (to find the
/// directory by `iss`, or `software_statement` in the request).
pub(crate) fn unverified_claims(jws: &str) -> Option<Map<String, Value>> {
    let mut parts = jws.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn describe(e: &KeyError) -> String {
    if e.is_internal() {
        "could not be verified".into()
    } else {
        e.to_string()
    }
}

/// Verifies a software statement: a directory with its `iss`, its `alg`
/// among the directory's, its signature with the directory's key `kid`,
/// `iat` present (and not older than the maximum age), `exp` if present,
/// `software_id` present, and (where the pack says) `org_status` Active.
pub(crate) async fn verify<'d, F: JwksFetcher>(
    directories: &'d [Directory],
    resolver: &JwksResolver<F>,
    jwt: &str,
    now: i64,
) -> Result<(&'d Directory, SoftwareStatement), OAuthError> {
    let header = peek_header(jwt)
        .map_err(|e| ssa_error(format!("software_statement is not a JWS: {}", describe(&e))))?;
    let claims = unverified_claims(jwt)
        .ok_or_else(|| ssa_error("software_statement has no JSON object payload"))?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| ssa_error("software_statement has no iss"))?;
    let dir = directories
        .iter()
        .find(|d| d.cfg.issuer == iss)
        .ok_or_else(|| {
            unapproved(format!(
                "software statements issued by {iss} are not accepted here"
            ))
        })?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg = JwsAlg::parse(alg_name)
        .ok()
        .filter(|a| dir.algs.contains(a))
        .ok_or_else(|| {
            ssa_error(format!(
                "software_statement is signed with {alg_name:?}; directory {} signs with {}",
                dir.cfg.name,
                dir.cfg.algs.join(" or ")
            ))
        })?;
    let kid = header.get("kid").and_then(Value::as_str);
    let key = resolver
        .key_for(&dir.keys, kid, alg, now)
        .await
        .map_err(|e| match e {
            KeyLookupError::Unavailable => OAuthError::new(
                oauth_core::error::ErrorCode::TemporarilyUnavailable,
                format!(
                    "the signing keys of directory {} cannot be retrieved right now; try again later",
                    dir.cfg.name
                ),
            ),
            _ => ssa_error(format!(
                "software_statement is signed with key {} which is not a current key of directory {}",
                kid.unwrap_or("(no kid)"),
                dir.cfg.name
            )),
        })?;
    let max_age = if dir.cfg.max_ssa_age_secs > 0 {
        dir.cfg.max_ssa_age_secs
    } else {
        dir.rules.default_max_ssa_age_secs
    };
    let mut opts = VerifyOptions::new(now)
        .without_exp()
        .issuer(&dir.cfg.issuer)
        .require("iat")
        .require("software_id");
    if max_age > 0 {
        opts = opts.max_iat_age(max_age);
    }
    let verified = verify_jws(jwt, &key, &dir.algs, &opts).map_err(|e| {
        ssa_error(match &e {
            KeyError::InvalidClaim(c) if c.starts_with("iat") => format!(
                "software_statement is too old (older than {max_age} s) or issued in the future: fetch a fresh one from the directory"
            ),
            _ => format!("software_statement: {}", describe(&e)),
        })
    })?;
    let Value::Object(claims) = verified.claims else {
        return Err(ssa_error("software_statement payload is not a JSON object"));
    };
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64)
        && now > exp + 30
    {
        return Err(ssa_error(
            "software_statement has expired: fetch a fresh one from the directory",
        ));
    }
    if dir.rules.require_active_org
        && let Some(status) = claims.get("org_status").and_then(Value::as_str)
        && !status.eq_ignore_ascii_case("active")
    {
        return Err(unapproved(format!(
            "the organisation's status in the directory is {status}, not Active"
        )));
    }
    let software_id = match claims.get("software_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ssa_error("software_statement has no software_id")),
    };
    Ok((
        dir,
        SoftwareStatement {
            jwt: jwt.to_owned(),
            claims,
            software_id,
            directory: dir.cfg.name.clone(),
            role_scopes: dir.cfg.role_scopes.clone(),
        },
    ))
}

/// Verifies the TPP's registration request JWT (UK OB DCR v3.3 "Request"):
/// signed with a key of the software's JWKS (`software_jwks_endpoint` or
/// inline `software_jwks`, never `x5c`/`jku` of the header), `alg` among the
/// directory's, `aud` this server, `iat`, `exp` and `jti` present, and
/// (where the pack says) `iss` = the SSA's `software_id`.
pub(crate) async fn verify_request<F: JwksFetcher>(
    dir: &Directory,
    ssa: &SoftwareStatement,
    resolver: &JwksResolver<F>,
    jwt: &str,
    audiences: &[&str],
    now: i64,
) -> Result<Map<String, Value>, OAuthError> {
    let header = peek_header(jwt).map_err(|e| {
        metadata_error(format!(
            "the registration request is not a JWS: {}",
            describe(&e)
        ))
    })?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg = JwsAlg::parse(alg_name)
        .ok()
        .filter(|a| dir.algs.contains(a))
        .ok_or_else(|| {
            metadata_error(format!(
                "the registration request is signed with {alg_name:?}; sign it with {}",
                dir.cfg.algs.join(" or ")
            ))
        })?;
    let holder = key_holder(
        &format!("software:{}", ssa.software_id),
        ssa.jwks_uri().as_deref(),
        ssa.claims.get("software_jwks"),
    )
    .map_err(|_| {
        ssa_error("software_statement names no usable software_jwks_endpoint or software_jwks")
    })?;
    let kid = header.get("kid").and_then(Value::as_str);
    let key = resolver
        .key_for(&holder, kid, alg, now)
        .await
        .map_err(|e| match e {
            KeyLookupError::Unavailable => OAuthError::new(
                oauth_core::error::ErrorCode::TemporarilyUnavailable,
                "the software's JWKS (software_jwks_endpoint) cannot be retrieved right now; try again later",
            ),
            _ => metadata_error(format!(
                "the registration request is signed with key {} which is not in the software's JWKS (software_jwks_endpoint of the software statement)",
                kid.unwrap_or("(no kid)")
            )),
        })?;
    let mut opts = VerifyOptions::new(now)
        .audience(audiences.iter().copied())
        .require("iat")
        .require("jti");
    if dir.rules.request_iss_is_software_id {
        opts = opts.issuer(&ssa.software_id);
    }
    let verified = verify_jws(jwt, &key, &dir.algs, &opts).map_err(|e| {
        metadata_error(match &e {
            KeyError::Expired => {
                "the registration request has expired (exp): sign a fresh one".to_string()
            }
            KeyError::InvalidClaim(c) if c.starts_with("iss") => format!(
                "the registration request's iss must be the software_id of the software statement ({})",
                ssa.software_id
            ),
            KeyError::MissingClaim(c) if c == "iss" => format!(
                "the registration request's iss must be the software_id of the software statement ({})",
                ssa.software_id
            ),
            KeyError::InvalidClaim(c) if c.starts_with("aud") => format!(
                "the registration request's aud must be {}",
                audiences.first().copied().unwrap_or("")
            ),
            _ => format!("the registration request: {}", describe(&e)),
        })
    })?;
    match verified.claims {
        Value::Object(m) => Ok(m),
        _ => Err(metadata_error(
            "the registration request payload is not a JSON object",
        )),
    }
}

/// The certificate's subject must carry the SSA's identifiers in one of
/// the forms the ecosystem uses (UK: OU = org_id and CN = software_id, or
/// the OBWAC's CN = org_id with `organizationIdentifier` ending in it).
pub(crate) fn check_certificate(
    rules: &Rules,
    ssa: &SoftwareStatement,
    cert: &PeerCertificate,
) -> Result<(), OAuthError> {
    use crate::rules::CertTest;
    if rules.cert_bindings.is_empty() {
        return Ok(());
    }
    let fits = |b: &crate::rules::CertBinding| {
        let Some(want) = ssa.str_claim(b.claim) else {
            return true;
        };
        let mut values = cert.subject.values_of(b.oid).peekable();
        match b.test {
            CertTest::Equals => values.any(|v| v == want),
            CertTest::EndsWithIfPresent => {
                values.peek().is_none() || values.any(|v| v.ends_with(&want))
            }
            CertTest::Absent => values.peek().is_none(),
        }
    };
    if rules.cert_bindings.iter().any(|form| form.iter().all(fits)) {
        return Ok(());
    }
    let describe = |form: &[crate::rules::CertBinding]| {
        form.iter()
            .filter(|b| b.test != CertTest::Absent)
            .map(|b| format!("{} = {}", b.attr, b.claim))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let forms: Vec<String> = rules.cert_bindings.iter().map(|f| describe(f)).collect();
    Err(metadata_error(format!(
        "the client certificate's subject does not match the software statement (expected {}; org_id {}, software_id {}); present the transport certificate issued for this software",
        forms.join(", or "),
        ssa.str_claim("org_id").unwrap_or_default(),
        ssa.software_id
    )))
}
