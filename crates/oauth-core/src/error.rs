//! The one OAuth error type: every protocol surface reports failures as an
//! [`OAuthError`], rendered to HTTP in one place by the server.
//!
//! RFC 6749 §5.2 (token endpoint), §4.1.2.1 (authorization endpoint),
//! RFC 9126 §2.3 (PAR), RFC 9449 §7.1 (DPoP), RFC 7591 §3.2.2 (registration),
//! OpenID Connect CIBA §11 and §13, RFC 6750 §3.1 (resource errors).

use std::borrow::Cow;

/// Error codes defined by the specifications Strongroom implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    AccessDenied,
    UnsupportedResponseType,
    ServerError,
    TemporarilyUnavailable,
    InvalidRequestUri,
    InvalidRequestObject,
    RequestNotSupported,
    RequestUriNotSupported,
    InvalidDpopProof,
    UseDpopNonce,
    InvalidToken,
    InsufficientScope,
    InvalidAuthorizationDetails,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    // RFC 7591 §3.2.2
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidSoftwareStatement,
    UnapprovedSoftwareStatement,
    // CIBA §11, §13
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    ExpiredLoginHintToken,
    UnknownUserId,
    MissingUserCode,
    InvalidUserCode,
    InvalidBindingMessage,
    // RFC 7009 §2.2.1
    UnsupportedTokenType,
}

impl ErrorCode {
    /// The code string as the specifications spell it.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidClient => "invalid_client",
            InvalidGrant => "invalid_grant",
            UnauthorizedClient => "unauthorized_client",
            UnsupportedGrantType => "unsupported_grant_type",
            InvalidScope => "invalid_scope",
            AccessDenied => "access_denied",
            UnsupportedResponseType => "unsupported_response_type",
            ServerError => "server_error",
            TemporarilyUnavailable => "temporarily_unavailable",
            InvalidRequestUri => "invalid_request_uri",
            InvalidRequestObject => "invalid_request_object",
            RequestNotSupported => "request_not_supported",
            RequestUriNotSupported => "request_uri_not_supported",
            InvalidDpopProof => "invalid_dpop_proof",
            UseDpopNonce => "use_dpop_nonce",
            InvalidToken => "invalid_token",
            InsufficientScope => "insufficient_scope",
            InvalidAuthorizationDetails => "invalid_authorization_details",
            LoginRequired => "login_required",
            ConsentRequired => "consent_required",
            InteractionRequired => "interaction_required",
            InvalidRedirectUri => "invalid_redirect_uri",
            InvalidClientMetadata => "invalid_client_metadata",
            InvalidSoftwareStatement => "invalid_software_statement",
            UnapprovedSoftwareStatement => "unapproved_software_statement",
            AuthorizationPending => "authorization_pending",
            SlowDown => "slow_down",
            ExpiredToken => "expired_token",
            ExpiredLoginHintToken => "expired_login_hint_token",
            UnknownUserId => "unknown_user_id",
            MissingUserCode => "missing_user_code",
            InvalidUserCode => "invalid_user_code",
            InvalidBindingMessage => "invalid_binding_message",
            UnsupportedTokenType => "unsupported_token_type",
        }
    }

    /// The HTTP status for a JSON error response. RFC 6749 §5.2: 400, except
    /// `invalid_client` (401). Resource-server errors (RFC 6750 §3.1):
    /// `invalid_token` 401, `insufficient_scope` 403. CIBA §11: `access_denied`
    /// at the token endpoint is 400 like the rest; at the backchannel
    /// endpoint 403 is allowed but 400 is what the suite expects.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidClient | InvalidToken => 401,
            InsufficientScope => 403,
            ServerError => 500,
            TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// An OAuth error with an optional human-readable description for the
/// client. The description is part of the protocol response: it must never
/// carry internals (database messages, stack traces, secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Option<Cow<'static, str>>,
    /// RFC 9449 §8: a fresh nonce to send in `DPoP-Nonce`.
    pub dpop_nonce: Option<String>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: Some(description.into()),
            dpop_nonce: None,
        }
    }

    pub fn bare(code: ErrorCode) -> Self {
        Self {
            code,
            description: None,
            dpop_nonce: None,
        }
    }

    pub fn with_dpop_nonce(mut self, nonce: String) -> Self {
        self.dpop_nonce = Some(nonce);
        self
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    /// A failure that is ours, not the client's: the detail is logged by the
    /// caller and never sent.
    pub fn server_error() -> Self {
        Self::new(ErrorCode::ServerError, "internal error")
    }
    pub fn temporarily_unavailable() -> Self {
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the service is temporarily unavailable, try again later",
        )
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The description, reduced to the characters RFC 6749 §5.2 allows in
    /// `error_description` (%x20-21 / %x23-5B / %x5D-7E): anything else
    /// (quotes, backslashes, control and non-ASCII characters) becomes a space.
    pub fn safe_description(&self) -> Option<String> {
        self.description.as_deref().map(sanitize_description)
    }

    /// The JSON body of the error response.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.code.as_str().into());
        if let Some(d) = self.safe_description() {
            body.insert("error_description".into(), d.into());
        }
        serde_json::Value::Object(body)
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.description {
            Some(d) => write!(f, "{}: {}", self.code.as_str(), d),
            None => f.write_str(self.code.as_str()),
        }
    }
}

impl std::error::Error for OAuthError {}

impl From<crate::storage::StoreError> for OAuthError {
    fn from(e: crate::storage::StoreError) -> Self {
        use crate::storage::StoreError;
        if let StoreError::Replayed(entry) = &e {
            return crate::replay::replay_error(entry);
        }
        tracing::error!(error = %e, "storage failure");
        match e {
            StoreError::Unavailable(_) => Self::temporarily_unavailable(),
            _ => Self::server_error(),
        }
    }
}

/// RFC 6749 §5.2 `error_description` character set.
pub fn sanitize_description(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E' => c,
            _ => ' ',
        })
        .collect()
}

pub type OAuthResult<T> = Result<T, OAuthError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_follow_rfc6749() {
        assert_eq!(ErrorCode::InvalidClient.as_str(), "invalid_client");
        assert_eq!(ErrorCode::InvalidClient.status(), 401);
        assert_eq!(ErrorCode::InvalidGrant.status(), 400);
        assert_eq!(ErrorCode::InvalidDpopProof.as_str(), "invalid_dpop_proof");
        assert_eq!(ErrorCode::InvalidRequestObject.status(), 400);
        assert_eq!(ErrorCode::InvalidToken.status(), 401);
    }

    #[test]
    fn descriptions_are_restricted_to_the_allowed_charset() {
        let e = OAuthError::invalid_request("bad \"value\" \\ é\n\tend");
        assert_eq!(
            e.safe_description().unwrap(),
            format!("bad  value{}end", " ".repeat(7))
        );
        let json = e.to_json();
        assert_eq!(json["error"], "invalid_request");
    }

    #[test]
    fn store_errors_do_not_leak() {
        let e: OAuthError =
            crate::storage::StoreError::Backend("relation \"tokens\" does not exist".into()).into();
        assert_eq!(e.code, ErrorCode::ServerError);
        assert!(!e.to_json().to_string().contains("relation"));
    }
}
