//! The demo bank's HTML: deliberately plain, but readable and accessible
//! (one `<h1>`, a `<main>` landmark, labelled inputs, contrast above 4.5:1,
//! usable at 320 px), with a strict Content-Security-Policy.

use crate::hook::Handoff;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use actix_web::http::{StatusCode, header};
use base64::Engine as _;

/// The whole stylesheet, inline and allowed by its hash.
const CSS: &str = "\
*,*::before,*::after{box-sizing:border-box}\
body{margin:0;font:1rem/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#f4f5f7}\
header,main,footer{max-width:40rem;margin:0 auto;padding:1rem}\
header{border-bottom:1px solid #c9ccd1}\
.brand{margin:0;font-weight:700;font-size:1.125rem;color:#0b3d6e}\
main{background:#fff;margin-top:1rem;border-radius:.5rem}\
h1{font-size:1.5rem;line-height:1.25;margin:.25rem 0 1rem}\
h2{font-size:1.125rem;margin:1.25rem 0 .5rem}\
ul{padding-left:1.25rem}\
li{margin:.25rem 0}\
.plain{list-style:none;padding:0}\
code,.code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.875rem;color:#3d4047;overflow-wrap:anywhere}\
label{display:block;font-weight:600;margin-top:.75rem}\
input[type=text],input[type=password]{display:block;width:100%;max-width:24rem;font:inherit;padding:.5rem;margin-top:.25rem;border:1px solid #6b6f76;border-radius:.25rem;color:#1a1a1a;background:#fff}\
.choice{display:flex;gap:.5rem;align-items:flex-start;font-weight:400}\
.choice input{margin-top:.35rem;width:1.1rem;height:1.1rem}\
fieldset{border:1px solid #c9ccd1;border-radius:.25rem;margin:1rem 0;padding:.5rem 1rem}\
legend{font-weight:600;padding:0 .25rem}\
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.25rem}\
button{font:inherit;font-weight:600;padding:.6rem 1.25rem;border-radius:.25rem;cursor:pointer;min-height:2.75rem}\
.primary{background:#0b57d0;color:#fff;border:2px solid #0b57d0}\
.secondary{background:#fff;color:#0b3d6e;border:2px solid #6b6f76}\
button:focus-visible,input:focus-visible,a:focus-visible{outline:3px solid #a35200;outline-offset:2px}\
a{color:#0b57d0}\
.alert{border-left:4px solid #a4262c;background:#fdf0f0;color:#7a1a1f;padding:.5rem .75rem}\
.card{border:1px solid #c9ccd1;border-radius:.25rem;padding:.75rem 1rem;margin:.75rem 0}\
.card h2{margin-top:0}\
dl{margin:0}\
dt{font-weight:600;margin-top:.5rem}\
dd{margin:0}\
.vh{position:absolute!important;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}\
footer{font-size:.875rem;color:#3d4047}\
.tpp{display:flex;gap:.75rem;align-items:center}\
.tpp img{width:3rem;height:3rem;object-fit:contain;border-radius:.25rem;flex:none}\
.binding{font-size:1.125rem;border:2px solid #0b57d0;border-radius:.25rem;padding:.5rem .75rem;background:#eef4fd}\
.binding small{display:block;font-size:.875rem;color:#3d4047}\
.binding strong{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:1.375rem;letter-spacing:.05em;overflow-wrap:anywhere}\
nav ul{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1rem}";

static CSS_HASH: LazyLock<String> = LazyLock::new(|| {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CSS.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
});

/// A tiny SVG favicon (so browsers do not log a 404 for /favicon.ico).
pub const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#0b3d6e\"/><path d=\"M4 3h4a5 5 0 0 1 0 10H4z\" fill=\"#fff\"/></svg>";

/// HTML-escapes text and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Where a page's forms may lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormAction {
    /// The bank's own pages: `form-action 'self'`.
    SelfOnly,
    /// The hook pages, whose POST answers 303 to Strongroom's return URL,
    /// from where Strongroom sends the browser on: to the bank's consent
    /// page ('self' here), its own error page (the return URL's origin), or
    /// the TPP's `redirect_uri` (after a consent, a denial or a cancelled
    /// login). Chromium checks `form-action` against every redirect that
    /// follows a form post, so these are listed exactly (docs/hooks.md §4).
    /// `None`: a hand-off without `redirect_uri` (an older Strongroom): the
    /// directive is left out rather than break the flow.
    ThroughStrongroom(Option<Vec<String>>),
}

impl FormAction {
    /// The targets of a hook page's forms, from its hand-off.
    pub fn for_handoff(h: &Handoff) -> FormAction {
        let Some(redirect) = h.redirect_uri.as_deref().and_then(csp_source) else {
            return FormAction::ThroughStrongroom(None);
        };
        let Some(back) = url::Url::parse(&h.return_uri)
            .ok()
            .filter(|u| u.scheme() == "https")
            .map(|u| u.origin().ascii_serialization())
        else {
            return FormAction::ThroughStrongroom(None);
        };
        FormAction::ThroughStrongroom(Some(vec![back, redirect]))
    }
}

/// `uri` as a CSP source expression: an https URL without the characters
/// CSP gives meaning to, or nothing.
pub fn csp_source(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    let s = u.as_str();
    (u.scheme() == "https"
        && u.host_str().is_some()
        && !s.contains([' ', ';', ',', '\'', '"'])
        && s.is_ascii())
    .then(|| {
        // The query and fragment are not part of a source expression.
        let mut u = u.clone();
        u.set_query(None);
        u.set_fragment(None);
        u.to_string()
    })
}

/// The Content-Security-Policy of a page: no script at all, the one inline
/// stylesheet by hash, no framing, no `<base>`.
pub fn csp(form_action: &FormAction) -> String {
    csp_with(form_action, &[], false)
}

/// [`csp`], plus images from exactly `images` (source expressions from
/// [`csp_source`]) and, with `script`, the bank's own script files (and
/// `fetch` to the bank itself): never inline script.
pub fn csp_with(form_action: &FormAction, images: &[String], script: bool) -> String {
    let form = match form_action {
        FormAction::SelfOnly => " form-action 'self';".to_string(),
        FormAction::ThroughStrongroom(Some(targets)) => {
            format!(" form-action 'self' {};", targets.join(" "))
        }
        FormAction::ThroughStrongroom(None) => String::new(),
    };
    let img: String = images.iter().map(|i| format!(" {i}")).collect();
    let script = if script {
        " script-src 'self'; connect-src 'self';"
    } else {
        ""
    };
    format!(
        "default-src 'none'; style-src 'sha256-{}'; img-src 'self'{img};{script}{form} \
         frame-ancestors 'none'; base-uri 'none'",
        *CSS_HASH
    )
}

/// One page: the bank's banner, `<main>` with the page's only `<h1>`.
pub struct Page<'a> {
    pub title: &'a str,
    pub body: String,
    pub status: StatusCode,
    pub form_action: FormAction,
    /// Image sources beyond 'self' (the phone page's TPP logos).
    pub images: Vec<String>,
    /// `<script src>` of the bank's own, allowed by `script-src 'self'`.
    pub script: Option<&'static str>,
}

impl<'a> Page<'a> {
    pub fn new(title: &'a str, body: String) -> Page<'a> {
        Page {
            title,
            body,
            status: StatusCode::OK,
            form_action: FormAction::SelfOnly,
            images: Vec::new(),
            script: None,
        }
    }

    /// A page with the bank's own script `src` and images from `images`.
    pub fn scripted(mut self, src: &'static str, images: Vec<String>) -> Self {
        self.script = Some(src);
        self.images = images;
        self
    }

    /// A page that only says what went wrong.
    pub fn problem(title: &'a str, status: StatusCode, message: &str) -> Page<'a> {
        Page {
            status,
            ..Page::new(title, alert(message))
        }
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A hook page (see [`FormAction::ThroughStrongroom`]).
    pub fn through_strongroom(mut self, h: &Handoff) -> Self {
        self.form_action = FormAction::for_handoff(h);
        self
    }

    pub fn html(&self) -> String {
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{t} — Demo Bank</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
             <style>{CSS}</style>{script}</head>\
             <body><header><p class=\"brand\">Demo Bank</p></header>\
             <main><h1>{t}</h1>{body}</main>\
             <footer><p>A demonstration bank for Strongroom: no real customers, accounts or money.</p></footer>\
             </body></html>",
            t = esc(self.title),
            body = self.body,
            script = self
                .script
                .map(|s| format!("<script src=\"{}\" defer></script>", esc(s)))
                .unwrap_or_default(),
        )
    }

    pub fn respond(self) -> HttpResponse {
        HttpResponse::build(self.status)
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                csp_with(&self.form_action, &self.images, self.script.is_some()),
            ))
            .insert_header(("X-Frame-Options", "DENY"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .insert_header(("Referrer-Policy", "no-referrer"))
            .body(self.html())
    }
}

/// An error or warning paragraph announced to screen readers.
pub fn alert(message: &str) -> String {
    format!("<p class=\"alert\" role=\"alert\">{}</p>", esc(message))
}

/// UK Open Banking account-access permission codes in words
/// (Account and Transaction API v3.1).
pub fn permission_words(code: &str) -> Option<&'static str> {
    Some(match code {
        "ReadAccountsBasic" => "See your list of accounts",
        "ReadAccountsDetail" => "See your account names, numbers and sort codes",
        "ReadBalances" => "See your balances",
        "ReadBeneficiariesBasic" => "See the people and businesses you pay",
        "ReadBeneficiariesDetail" => {
            "See the people and businesses you pay, with their account details"
        }
        "ReadDirectDebits" => "See your Direct Debits",
        "ReadStandingOrdersBasic" => "See your standing orders",
        "ReadStandingOrdersDetail" => "See your standing orders, with the payees' account details",
        "ReadScheduledPaymentsBasic" => "See your future dated payments",
        "ReadScheduledPaymentsDetail" => {
            "See your future dated payments, with the payees' account details"
        }
        "ReadTransactionsBasic" => "See your transactions",
        "ReadTransactionsDetail" => "See the details of your transactions",
        "ReadTransactionsCredits" => "See the money coming into your accounts",
        "ReadTransactionsDebits" => "See the money going out of your accounts",
        "ReadStatementsBasic" => "See your statements",
        "ReadStatementsDetail" => "See the details of your statements",
        "ReadProducts" => "See the products your accounts are",
        "ReadOffers" => "See the offers on your accounts",
        "ReadParty" => "See the account holders' names and contact details",
        "ReadPartyPSU" => "See your name and contact details",
        "ReadPAN" => "See your full card numbers",
        _ => return None,
    })
}

/// A permission as the customer reads it, with the code kept small:
/// "See your balances (ReadBalances)".
pub fn permission_item(code: &str) -> String {
    match permission_words(code) {
        Some(w) => format!(
            "<li>{} <span class=\"code\">({})</span></li>",
            esc(w),
            esc(code)
        ),
        None => format!(
            "<li>Permission <span class=\"code\">{}</span></li>",
            esc(code)
        ),
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// "12 March 2027" from an ISO 8601 date-time ("2027-03-12T…"); `None`
/// when it does not start with a valid date.
pub fn human_date(iso: &str) -> Option<String> {
    let d = iso.get(..10)?;
    let mut parts = d.split('-');
    let (y, m, day) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || day.len() != 2 {
        return None;
    }
    let (y, m, day): (u32, usize, u32) = (y.parse().ok()?, m.parse().ok()?, day.parse().ok()?);
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(format!("{day} {} {y}", MONTHS.get(m.checked_sub(1)?)?))
}

/// The consent's expiry in words.
pub fn expiry_words(expiration: Option<&str>) -> String {
    match expiration.and_then(human_date) {
        Some(d) => format!("Until {d}, unless you revoke it sooner"),
        None => "Until you revoke it".into(),
    }
}

/// `YYYY-MM-DD` of a Unix time (UTC), for the consents the demo TPP asks for.
pub fn iso_date(unix: i64) -> String {
    // Howard Hinnant's days-from-civil, inverted.
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_the_accessible_skeleton() {
        let html = Page::new("Sign in", "<p>x</p>".into()).html();
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.contains("<title>Sign in — Demo Bank</title>"));
        assert_eq!(html.matches("<h1>").count(), 1);
        assert_eq!(html.matches("<main>").count(), 1);
        assert!(!html.contains("width:40em"), "no fixed widths");
    }

    #[test]
    fn titles_and_text_are_escaped() {
        let html = Page::new("<script>", String::new()).html();
        assert!(!html.contains("<script>"));
        assert!(alert("a<b").contains("a&lt;b"));
    }

    #[test]
    fn csp_allows_no_script_and_the_inline_style_by_hash() {
        let c = csp(&FormAction::SelfOnly);
        let hash = base64::engine::general_purpose::STANDARD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CSS.as_bytes()).as_ref());
        assert!(c.contains(&format!("style-src 'sha256-{hash}'")), "{c}");
        assert!(c.contains("form-action 'self';"), "{c}");
        assert!(c.contains("default-src 'none'") && c.contains("frame-ancestors 'none'"));
        assert!(
            !c.contains("script-src"),
            "scripts fall under default-src 'none'"
        );
        let phone = csp_with(
            &FormAction::SelfOnly,
            &["https://tpp.example/logo.png".into()],
            true,
        );
        assert!(
            phone.contains("img-src 'self' https://tpp.example/logo.png;")
                && phone.contains("script-src 'self'; connect-src 'self';")
                && !phone.contains("unsafe"),
            "{phone}"
        );
        let old = csp(&FormAction::ThroughStrongroom(None));
        assert!(!old.contains("form-action"), "{old}");
        assert!(old.contains("default-src 'none'") && old.contains("base-uri 'none'"));
    }

    fn handoff(return_uri: &str, redirect_uri: Option<&str>) -> Handoff {
        serde_json::from_value(serde_json::json!({
            "iss": "https://op.example", "aud": "demo-bank", "iat": 0, "exp": 1,
            "jti": "j", "sid": "s", "purpose": "login", "return_uri": return_uri,
            "redirect_uri": redirect_uri, "client_id": "tpp",
        }))
        .unwrap()
    }

    #[test]
    fn hook_pages_allow_exactly_strongroom_and_the_tpps_redirect() {
        let h = handoff(
            "https://op.example:8443/interaction/abc/hook/login",
            Some("https://tpp.example/cb?x=1"),
        );
        assert_eq!(
            FormAction::for_handoff(&h),
            FormAction::ThroughStrongroom(Some(vec![
                "https://op.example:8443".into(),
                "https://tpp.example/cb".into()
            ]))
        );
        let c = csp(&FormAction::for_handoff(&h));
        assert!(
            c.contains("form-action 'self' https://op.example:8443 https://tpp.example/cb;"),
            "{c}"
        );
        // Anything CSP would read as more than one source, or not https,
        // is not listed: the directive is left out instead.
        for bad in [
            "https://tpp.example/cb 'unsafe-inline'",
            "https://tpp.example/cb;script-src *",
            "http://tpp.example/cb",
            "not a url",
        ] {
            let h = handoff("https://op.example/interaction/a/hook/login", Some(bad));
            assert_eq!(
                FormAction::for_handoff(&h),
                FormAction::ThroughStrongroom(None),
                "{bad}"
            );
        }
        let h = handoff("https://op.example/interaction/a/hook/login", None);
        assert_eq!(
            FormAction::for_handoff(&h),
            FormAction::ThroughStrongroom(None)
        );
    }

    #[test]
    fn permissions_in_words_keep_the_code() {
        assert_eq!(
            permission_item("ReadBalances"),
            "<li>See your balances <span class=\"code\">(ReadBalances)</span></li>"
        );
        for code in [
            "ReadAccountsBasic",
            "ReadAccountsDetail",
            "ReadTransactionsCredits",
            "ReadTransactionsDebits",
            "ReadTransactionsDetail",
        ] {
            assert!(permission_words(code).is_some(), "{code}");
        }
        assert!(permission_item("Read<X>").contains("Read&lt;X&gt;"));
    }

    #[test]
    fn dates_in_words() {
        assert_eq!(
            human_date("2027-03-12T00:00:00+00:00").as_deref(),
            Some("12 March 2027")
        );
        assert_eq!(human_date("2027-13-01"), None);
        assert_eq!(human_date("soon"), None);
        assert_eq!(expiry_words(None), "Until you revoke it");
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(1_763_700_000), "2025-11-21");
        assert_eq!(iso_date(951_782_400), "2000-02-29");
    }
}
