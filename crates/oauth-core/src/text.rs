//! Text from outside, checked where it enters the protocol.
//!
//! Every value a client sends reaches us as a form or query parameter
//! (RFC 6749 Appendix B), a path segment, or a string inside a JSON document
//! (a JWT's header and claims, a registration request). Identifiers taken
//! from them become database keys, log fields and page text, so the rule is
//! applied here, once, before anything else sees them: the text is UTF-8
//! and holds no control character (Unicode category Cc: U+0000–U+001F,
//! U+007F–U+009F). No OAuth, OpenID or FAPI value may hold one (RFC 6749
//! Appendix A restricts every parameter to printable characters), and NUL
//! is refused by PostgreSQL's `text` type, so a NUL let through would be a
//! storage error caused by input.
//!
//! The exceptions are JSON-valued parameters (`claims`, OpenID Connect
//! Core §5.5; `authorization_details`, RFC 9396 §2), whose JSON may be
//! laid out with tabs and line breaks; the strings inside them are checked
//! once they are parsed ([`json_is_clean`]).

use serde_json::Value;

use crate::error::OAuthError;

/// Parameters whose value is a JSON text: tab, CR and LF are its
/// whitespace (RFC 8259 §2) and are allowed between its tokens.
const JSON_PARAMETERS: [&str; 2] = ["claims", "authorization_details"];

/// Whether `s` holds no control character.
#[must_use]
pub fn is_clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Whether every string of a JSON document, member names included, holds
/// no control character.
#[must_use]
pub fn json_is_clean(v: &Value) -> bool {
    match v {
        Value::String(s) => is_clean(s),
        Value::Array(items) => items.iter().all(json_is_clean),
        Value::Object(members) => members.iter().all(|(k, v)| is_clean(k) && json_is_clean(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Whether a parameter's value is acceptable: no control character, but
/// for JSON whitespace in the JSON-valued parameters.
fn parameter_is_clean(name: &str, value: &str) -> bool {
    if JSON_PARAMETERS.contains(&name) {
        !value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    } else {
        is_clean(value)
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value
/// (`+` is a space, `%XX` a byte); `None` for a bad escape or a result that
/// is not UTF-8 (an encoded lone surrogate is not UTF-8).
#[must_use]
pub fn form_urldecode(s: &str) -> Option<String> {
    percent_decode(s, true)
}

/// Percent-decoding (RFC 3986 §2.1), with `+` as a space in forms.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b'%' || (plus_is_space && c == b'+')) {
        return Some(s.to_owned());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hi = (hex[0] as char).to_digit(16)?;
                let lo = (hex[1] as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The most parameters a form or query string may hold. A request of any
/// of the protocols has a few dozen at most; unknown ones are ignored (RFC
/// 6749 §3.1), but not by the thousand.
pub const MAX_FORM_PARAMETERS: usize = 1000;

/// Parses a form body or a query string (`a=1&b=2`) into its parameters in
/// order, duplicates kept (they are the caller's to refuse, RFC 6749 §3.1).
///
/// # Errors
/// `invalid_request` when a name or value is badly escaped, is not UTF-8,
/// or holds a control character, or when there are more than
/// [`MAX_FORM_PARAMETERS`].
pub fn parse_form(input: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let input = std::str::from_utf8(input)
        .map_err(|_| OAuthError::invalid_request("the parameters are not UTF-8"))?;
    let mut out = Vec::new();
    for pair in input.split('&').filter(|p| !p.is_empty()) {
        if out.len() == MAX_FORM_PARAMETERS {
            return Err(OAuthError::invalid_request(format!(
                "more than {MAX_FORM_PARAMETERS} parameters"
            )));
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_urldecode(name)
            .filter(|n| is_clean(n))
            .ok_or_else(|| {
                OAuthError::invalid_request(
                    "a parameter name is badly encoded or holds a control character",
                )
            })?;
        let value = form_urldecode(value)
            .filter(|v| parameter_is_clean(&name, v))
            .ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "parameter {} is badly encoded or holds a control character",
                    printable(&name)
                ))
            })?;
        out.push((name, value));
    }
    Ok(out)
}

/// A parameter name fit for an error description: at most 40 characters
/// of the unreserved set, or `(unnamed)`.
fn printable(name: &str) -> &str {
    if !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        name
    } else {
        "(unnamed)"
    }
}

/// Whether a URL path as sent (percent-encoded) decodes to UTF-8 without
/// control characters, as the router's path segments will see it.
#[must_use]
pub fn path_is_clean(raw: &str) -> bool {
    percent_decode(raw, false).is_some_and(|s| is_clean(&s))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn control_characters_are_refused_everywhere_but_json_whitespace() {
        for bad in [
            "%00", "a%00", "%01", "%1F", "%7F", "%C2%80", "%C2%9F", "%0A",
        ] {
            let body = format!("client_id={bad}");
            let e = parse_form(body.as_bytes()).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_request", "{bad}");
            assert!(
                e.description.as_deref().unwrap().contains("client_id"),
                "{bad}"
            );
            let name = format!("x{bad}=1");
            assert!(parse_form(name.as_bytes()).is_err(), "name {bad}");
        }
        let pretty = "claims=%7B%0A%09%22id_token%22%3A%7B%7D%0D%0A%7D";
        assert_eq!(
            parse_form(pretty.as_bytes()).unwrap()[0].1,
            "{\n\t\"id_token\":{}\r\n}"
        );
        assert!(parse_form(b"claims=%00").is_err());
        assert!(parse_form(b"authorization_details=%5B%5D%0A").is_ok());
    }

    #[test]
    fn bad_escapes_and_non_utf8_are_refused() {
        // An encoded lone surrogate (CESU-style), a truncated escape, a
        // non-hex escape, an overlong NUL and raw invalid UTF-8.
        for bad in [
            &b"client_id=%ED%A0%80"[..],
            b"client_id=%E",
            b"client_id=%zz",
            b"client_id=%C0%80",
            b"client_id=\xff",
        ] {
            assert!(parse_form(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forms_keep_order_duplicates_and_empty_values() {
        let p = parse_form(b"a=1&b=&a=x+y%2B&c&&d=%C3%A9").unwrap();
        let got: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [("a", "1"), ("b", ""), ("a", "x y+"), ("c", ""), ("d", "é")]
        );
    }

    #[test]
    fn at_most_a_thousand_parameters() {
        let form = |n: usize| {
            (0..n)
                .map(|i| format!("f{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(
            parse_form(form(MAX_FORM_PARAMETERS).as_bytes())
                .unwrap()
                .len(),
            MAX_FORM_PARAMETERS
        );
        // Empty pairs (`&&`) are not parameters.
        let sparse = format!("{}&&&", form(MAX_FORM_PARAMETERS));
        assert!(parse_form(sparse.as_bytes()).is_ok());
        for n in [MAX_FORM_PARAMETERS + 1, 10_000] {
            let e = parse_form(form(n).as_bytes()).unwrap_err();
            assert_eq!(e.code.as_str(), "invalid_request");
            assert_eq!(e.description.as_deref(), Some("more than 1000 parameters"));
        }
        let e = parse_form("a=1&".repeat(10_000).as_bytes()).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
    }

    #[test]
    fn the_description_names_only_printable_parameters() {
        let e = parse_form(b"%3Cscript%3E=%00").unwrap_err();
        assert!(e.description.as_deref().unwrap().contains("(unnamed)"));
    }

    #[test]
    fn json_strings_and_member_names_are_checked() {
        assert!(json_is_clean(&json!({"a": ["b", {"c": "d é"}], "n": 1})));
        assert!(!json_is_clean(&json!({"jti": "a\u{0}"})));
        assert!(!json_is_clean(&json!({"x": [{"y": "\u{1b}[31m"}]})));
        assert!(!json_is_clean(&json!({"k\u{7f}": 1})));
        assert!(!json_is_clean(&json!(["\u{85}"])));
    }

    #[test]
    fn paths() {
        assert!(path_is_clean("/register/abc-123_%C3%A9+x"));
        assert!(!path_is_clean("/register/a%00"));
        assert!(!path_is_clean("/interaction/%ED%A0%80/login"));
        assert!(!path_is_clean("/x/%FF"));
        assert!(!path_is_clean("/x/%1b"));
    }
}
