//! The customer pages' look and words: templates, static assets and message
//! catalogs, built in and overridable file by file by a bank's theme
//! directory (`[ui] theme_dir`, docs/theming.md).
//!
//! Templates are rendered by minijinja (Jinja syntax, HTML autoescape for
//! `.html`) rather than compiled in like askama's, so that a bank changes its
//! pages without forking. Everything is loaded and checked once at start
//! ([`load_theme`]): each template is rendered in every shipped language
//! with sample data, so a broken theme template or a missing message stops
//! the server with one line instead of failing a customer later.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, State, UndefinedBehavior};
use serde::Serialize;

use crate::config::{ConfigError, ScopeConfig, UiConfig};

/// The languages whose catalogs ship complete; the first is the fallback.
/// Discovery's `ui_locales_supported` is exactly this list.
pub const LANGUAGES: [&str; 3] = ["en", "fr", "de"];

/// Built-in templates, embedded so the binary needs no files at run time.
const TEMPLATES: [(&str, &str); 7] = [
    ("base.html", include_str!("../../../templates/base.html")),
    (
        "client.html",
        include_str!("../../../templates/client.html"),
    ),
    ("login.html", include_str!("../../../templates/login.html")),
    (
        "consent.html",
        include_str!("../../../templates/consent.html"),
    ),
    ("error.html", include_str!("../../../templates/error.html")),
    (
        "form_post.html",
        include_str!("../../../templates/form_post.html"),
    ),
    (
        "unavailable.html",
        include_str!("../../../templates/unavailable.html"),
    ),
];

const CATALOGS: [(&str, &str); 3] = [
    ("en", include_str!("../../../templates/messages/en.toml")),
    ("fr", include_str!("../../../templates/messages/fr.toml")),
    ("de", include_str!("../../../templates/messages/de.toml")),
];

const ASSETS: [(&str, &[u8]); 3] = [
    (
        "style.css",
        include_bytes!("../../../templates/assets/style.css"),
    ),
    (
        "logo.svg",
        include_bytes!("../../../templates/assets/logo.svg"),
    ),
    (
        "favicon.svg",
        include_bytes!("../../../templates/assets/favicon.svg"),
    ),
];

/// Generated from `ui.primary_color`; a theme cannot replace it.
const THEME_CSS: &str = "theme.css";

/// Largest theme asset accepted (a logo, a font, a stylesheet).
const MAX_ASSET_BYTES: u64 = 1024 * 1024;

/// A static file served at `/assets/<name>`.
#[derive(Debug, Clone)]
pub struct Asset {
    pub body: actix_web::web::Bytes,
    pub content_type: &'static str,
    /// Strong validator: a digest of the content (RFC 9110 §8.8.3).
    pub etag: String,
}

/// The loaded theme: shared by every worker, read-only.
pub struct Theme {
    env: Environment<'static>,
    assets: HashMap<String, Asset>,
    catalogs: Arc<Catalogs>,
    /// `[scopes]`: swapped when the admin API changes the words.
    scopes: arc_swap::ArcSwap<BTreeMap<String, ScopeConfig>>,
    pub bank_name: String,
}

impl std::fmt::Debug for Theme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Theme")
            .field("bank_name", &self.bank_name)
            .finish_non_exhaustive()
    }
}

/// Language → key → message.
type Catalogs = HashMap<&'static str, HashMap<String, String>>;

/// A template failed to render at run time (already checked at start, so
/// this is a bug or a theme that depends on data the samples lacked).
#[derive(Debug)]
pub struct RenderError(pub String);

/// The rules of `[scopes]` (the file's and the admin API's): a description
/// for each, translations only into shipped languages.
pub fn validate_scopes(scopes: &BTreeMap<String, ScopeConfig>) -> Result<(), ConfigError> {
    for (name, s) in scopes {
        if s.description.trim().is_empty() {
            return Err(ConfigError::new(
                format!("scopes.{name}.description"),
                "must not be empty",
            ));
        }
        if let Some(l) = s
            .translations
            .keys()
            .find(|l| !LANGUAGES.contains(&l.as_str()))
        {
            return Err(ConfigError::new(
                format!("scopes.{name}.translations.{l}"),
                format!("no such language; shipped: {}", LANGUAGES.join(", ")),
            ));
        }
    }

    Ok(())
}

/// Loads and checks the built-in theme with `ui`'s overrides and the
/// configured scope descriptions. Called once at start by `serve` and by
/// `check-config`; the error is one line naming the key.
pub fn load_theme(
    ui: &UiConfig,
    scopes: &BTreeMap<String, ScopeConfig>,
) -> Result<Theme, ConfigError> {
    let primary = parse_color(&ui.primary_color)
        .ok_or_else(|| ConfigError::new("ui.primary_color", "must be a colour as #rrggbb"))?;
    let ratio = contrast(primary, [255, 255, 255]);
    if ratio < 4.5 {
        return Err(ConfigError::new(
            "ui.primary_color",
            format!(
                "{} gives white text a contrast of {ratio:.1}:1, below the 4.5:1 of WCAG 2.1 AA; choose a darker colour",
                ui.primary_color
            ),
        ));
    }
    if ui.bank_name.trim().is_empty() {
        return Err(ConfigError::new("ui.bank_name", "must not be empty"));
    }
    validate_scopes(scopes)?;

    let mut templates: BTreeMap<String, String> = TEMPLATES
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    let mut catalogs: Catalogs = HashMap::new();
    for (lang, src) in CATALOGS {
        let cat = parse_catalog(src)
            .map_err(|e| ConfigError::new("ui", format!("built-in catalog {lang}: {e}")))?;
        catalogs.insert(lang, cat);
    }
    let mut assets: HashMap<String, Asset> = ASSETS
        .iter()
        .map(|(n, b)| (n.to_string(), asset(n, b.to_vec())))
        .collect();

    if let Some(dir) = &ui.theme_dir {
        let key = "ui.theme_dir";
        if !dir.is_dir() {
            return Err(ConfigError::new(
                key,
                format!("{} is not a directory", dir.display()),
            ));
        }
        for (name, src) in read_dir_files(&dir.join("templates"), key, "html")? {
            templates.insert(
                name,
                String::from_utf8(src)
                    .map_err(|_| ConfigError::new(key, "a template is not UTF-8"))?,
            );
        }
        for (name, src) in read_dir_files(&dir.join("messages"), key, "toml")? {
            let lang = name.trim_end_matches(".toml");
            let Some(builtin) = catalogs.get_mut(lang) else {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "messages/{name}: no such language; shipped: {}",
                        LANGUAGES.join(", ")
                    ),
                ));
            };
            let text = String::from_utf8(src)
                .map_err(|_| ConfigError::new(key, format!("messages/{name} is not UTF-8")))?;
            let over = parse_catalog(&text)
                .map_err(|e| ConfigError::new(key, format!("messages/{name}: {e}")))?;
            for (k, v) in over {
                if !builtin.contains_key(&k) {
                    return Err(ConfigError::new(
                        key,
                        format!("messages/{name}: unknown message key {k}"),
                    ));
                }
                builtin.insert(k, v);
            }
        }
        for (name, body) in read_dir_files(&dir.join("assets"), key, "")? {
            if name == THEME_CSS {
                return Err(ConfigError::new(
                    key,
                    "assets/theme.css is generated from ui.primary_color and cannot be replaced",
                ));
            }
            if content_type(&name).is_none() {
                return Err(ConfigError::new(
                    key,
                    format!("assets/{name}: unsupported file type"),
                ));
            }
            assets.insert(name.clone(), asset(&name, body));
        }
    }
    if !assets.contains_key(&ui.logo) {
        return Err(ConfigError::new(
            "ui.logo",
            format!("{} is not an asset of the theme", ui.logo),
        ));
    }
    assets.insert(
        THEME_CSS.into(),
        asset(THEME_CSS, theme_css(primary).into_bytes()),
    );

    let reference = &catalogs["en"];
    for (lang, cat) in &catalogs {
        if let Some(k) = reference.keys().find(|k| !cat.contains_key(*k)) {
            return Err(ConfigError::new(
                "ui",
                format!("catalog {lang} lacks the message {k}"),
            ));
        }
    }

    let catalogs = Arc::new(catalogs);
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // HTML-escapes `& < > " '` (minijinja's default also turns `/` into
    // `&#x2f;`, harmless to a browser but unreadable in the page source and
    // to anything that reads it as text).
    env.set_formatter(|out, state, value| {
        if matches!(state.auto_escape(), minijinja::AutoEscape::Html)
            && !value.is_safe()
            && !value.is_none()
            && !value.is_undefined()
        {
            out.write_str(&escape_html(&value.to_string()))
                .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    let cats = catalogs.clone();
    env.add_function(
        "t",
        move |state: &State, key: &str, args: Kwargs| -> Result<String, minijinja::Error> {
            let lang = state
                .lookup("lang")
                .and_then(|l| l.as_str().map(str::to_string))
                .unwrap_or_else(|| LANGUAGES[0].into());
            let mut fill: Vec<(String, String)> = Vec::new();
            for name in args.args() {
                let v: Value = args.get(name)?;
                fill.push((name.to_string(), v.to_string()));
            }
            message(&cats, &lang, key, &fill).ok_or_else(|| {
                minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    format!("no message {key}"),
                )
            })
        },
    );
    let urls: HashMap<String, String> = assets
        .iter()
        .map(|(n, a)| {
            (
                n.clone(),
                format!("/assets/{n}?v={}", a.etag.trim_matches('"')),
            )
        })
        .collect();
    env.add_global("logo_url", Value::from(urls[&ui.logo].clone()));
    env.add_global("bank_name", Value::from(ui.bank_name.clone()));
    env.add_function(
        "asset",
        move |name: &str| -> Result<String, minijinja::Error> {
            urls.get(name).cloned().ok_or_else(|| {
                minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    format!("no asset {name}"),
                )
            })
        },
    );
    for (name, src) in templates {
        env.add_template_owned(name.clone(), src)
            .map_err(|e| ConfigError::new("ui.theme_dir", format!("template {name}: {e}")))?;
    }
    let theme = Theme {
        env,
        assets,
        catalogs,
        scopes: arc_swap::ArcSwap::from_pointee(scopes.clone()),
        bank_name: ui.bank_name.clone(),
    };
    theme.check()?;
    Ok(theme)
}

impl Theme {
    /// The built-in theme with the default settings.
    pub fn builtin() -> Theme {
        load_theme(&UiConfig::default(), &BTreeMap::new()).expect("the built-in theme loads")
    }

    /// Renders each page in each language with sample data, with and
    /// without the optional parts.
    fn check(&self) -> Result<(), ConfigError> {
        for lang in LANGUAGES {
            for full in [false, true] {
                for (name, ctx) in samples(full) {
                    self.render(name, lang, &ctx).map_err(|e| {
                        ConfigError::new(
                            "ui.theme_dir",
                            format!("template {name} ({lang}): {}", e.0),
                        )
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Renders `name` in `lang` with `ctx` (plus `lang`, `bank_name`,
    /// `logo_url` and the `t` and `asset` functions).
    pub fn render(
        &self,
        name: &str,
        lang: &str,
        ctx: &impl Serialize,
    ) -> Result<String, RenderError> {
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| RenderError(e.to_string()))?;
        tmpl.render(
            minijinja::context! { lang => lang, ..Value::from(minijinja::value::Serde(ctx)) },
        )
        .map_err(|e| RenderError(format!("{e:#}")))
    }

    /// The message `key` in `lang` with its `{placeholders}` filled; the key
    /// itself when unknown (never at run time: catalogs are checked at
    /// start).
    pub fn msg(&self, lang: &str, key: &str, fill: &[(&str, &str)]) -> String {
        let fill: Vec<(String, String)> = fill
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        message(&self.catalogs, lang, key, &fill).unwrap_or_else(|| key.to_string())
    }

    /// What the customer reads for `scope`: the configured description
    /// (in `lang` when translated), the built-in one, or the scope's name.
    pub fn scope_description(&self, lang: &str, scope: &str) -> String {
        if let Some(s) = self.scopes.load().get(scope) {
            return s.translations.get(lang).unwrap_or(&s.description).clone();
        }
        message(&self.catalogs, lang, &format!("scope-{scope}"), &[])
            .unwrap_or_else(|| scope.to_string())
    }

    /// Puts `scopes` (validated with [`validate_scopes`]) in force for the
    /// next page.
    pub fn set_scopes(&self, scopes: BTreeMap<String, ScopeConfig>) {
        self.scopes.store(Arc::new(scopes));
    }

    /// A duration in words, rounded down to its largest unit.
    pub fn duration(&self, lang: &str, secs: i64) -> String {
        let (n, unit) = match secs {
            s if s >= 86_400 => (s / 86_400, "day"),
            s if s >= 3600 => (s / 3600, "hour"),
            s => ((s / 60).max(1), "minute"),
        };
        if n == 1 {
            self.msg(lang, &format!("duration-{unit}"), &[])
        } else {
            self.msg(lang, &format!("duration-{unit}s"), &[("n", &n.to_string())])
        }
    }

    /// The asset called `name`, if the theme has it.
    pub fn asset(&self, name: &str) -> Option<&Asset> {
        self.assets.get(name)
    }

    /// The page language: the first of the request's `ui_locales` (OIDC
    /// Core §3.1.2.1, space-separated BCP 47 tags in order of preference)
    /// that is shipped, else the best of `Accept-Language` (RFC 9110
    /// §12.5.4, by q-value; q=0 is "not acceptable"), else English. A tag
    /// matches a shipped language by its language subtag (`fr-CA` → `fr`).
    pub fn negotiate(
        &self,
        ui_locales: Option<&str>,
        accept_language: Option<&str>,
    ) -> &'static str {
        use fluent_langneg::{LanguageIdentifier, NegotiationStrategy, negotiate_languages};
        let available: Vec<LanguageIdentifier> =
            LANGUAGES.iter().filter_map(|l| l.parse().ok()).collect();
        let pick = |requested: Vec<LanguageIdentifier>| -> Option<&'static str> {
            let found =
                negotiate_languages(&requested, &available, None, NegotiationStrategy::Lookup);
            let best = found.first()?.to_string();
            LANGUAGES.iter().copied().find(|l| *l == best)
        };
        let from_ui = ui_locales.map(|v| {
            v.split_ascii_whitespace()
                .take(16)
                .filter_map(|t| t.parse().ok())
                .collect::<Vec<_>>()
        });
        if let Some(l) = from_ui.and_then(pick) {
            return l;
        }
        let from_header = accept_language.filter(|h| h.len() <= 1024).map(|h| {
            accept_language::parse_with_quality(h)
                .into_iter()
                .filter(|(_, q)| *q > 0.0)
                .take(16)
                .filter_map(|(t, _)| t.parse().ok())
                .collect::<Vec<_>>()
        });
        from_header.and_then(pick).unwrap_or(LANGUAGES[0])
    }
}

fn message(cats: &Catalogs, lang: &str, key: &str, fill: &[(String, String)]) -> Option<String> {
    let text = cats.get(lang).and_then(|c| c.get(key))?;
    // One pass, so that a filled-in value containing `{x}` is not expanded.
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match fill.iter().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

/// Text as HTML content or a quoted attribute value.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn parse_catalog(src: &str) -> Result<HashMap<String, String>, String> {
    let table: toml::Table = toml::from_str(src).map_err(|e| e.message().to_string())?;
    table
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            _ => Err(format!("{k} is not a string")),
        })
        .collect()
}

/// The plain files of `dir` (absent: none), by name. Only plain names
/// (letters, digits, `.`, `-`, `_`, not starting with `.`) are taken; with
/// `ext`, only files ending in `.{ext}`.
fn read_dir_files(dir: &Path, key: &str, ext: &str) -> Result<Vec<(String, Vec<u8>)>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::new(
                key,
                format!("cannot read {}: {e}", dir.display()),
            ));
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::new(key, format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Err(ConfigError::new(
                key,
                format!("{}: a file name is not UTF-8", dir.display()),
            ));
        };
        if !is_plain_name(&name) {
            return Err(ConfigError::new(
                key,
                format!("{}: {name} is not a plain file name", dir.display()),
            ));
        }
        if !ext.is_empty() && !name.ends_with(&format!(".{ext}")) {
            continue;
        }
        let meta = std::fs::metadata(&path)
            .map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            continue;
        }
        if meta.len() > MAX_ASSET_BYTES {
            return Err(ConfigError::new(
                key,
                format!("{} is larger than 1 MiB", path.display()),
            ));
        }
        let body = std::fs::read(&path)
            .map_err(|e| ConfigError::new(key, format!("{}: {e}", path.display())))?;
        out.push((name, body));
    }
    Ok(out)
}

/// A file name that cannot leave its directory: letters, digits, `.`, `-`,
/// `_`, not starting with `.`, at most 100 bytes.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The content type of an asset, by extension; `None`: not served.
pub fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        _ => return None,
    })
}

fn asset(name: &str, body: Vec<u8>) -> Asset {
    let d = digest::digest(&digest::SHA256, &body);
    Asset {
        content_type: content_type(name).unwrap_or("application/octet-stream"),
        etag: format!("\"{}\"", URL_SAFE_NO_PAD.encode(&d.as_ref()[..12])),
        body: body.into(),
    }
}

/// `#rrggbb` only: the value goes into CSS.
pub fn parse_color(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// WCAG 2.1 contrast ratio of two sRGB colours (§1.4.3, "relative
/// luminance").
pub fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let lum = |c: [u8; 3]| {
        let ch = |v: u8| {
            let s = f64::from(v) / 255.0;
            if s <= 0.04045 {
                s / 12.92
            } else {
                ((s + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * ch(c[0]) + 0.7152 * ch(c[1]) + 0.0722 * ch(c[2])
    };
    let (x, y) = (lum(a), lum(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// The bank's colour as CSS custom properties: the primary action, a darker
/// hover, focus outlines and links.
fn theme_css(primary: [u8; 3]) -> String {
    let darker = primary.map(|v| (f64::from(v) * 0.8) as u8);
    format!(
        ":root{{--sr-primary:{p};--sr-primary-hover:{d};--sr-focus:{p};--sr-link:{p}}}\n",
        p = hex(primary),
        d = hex(darker)
    )
}

/// What the pages show about the client (RFC 7591 §2 metadata).
#[derive(Debug, Clone, Serialize, Default)]
pub struct ClientView {
    pub name: String,
    /// `https` only, else left out.
    pub logo_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
}

/// One scope as the consent page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ScopeView {
    pub name: String,
    pub description: String,
}

/// One line of an authorization detail (RFC 9396 §2).
#[derive(Debug, Clone, Serialize)]
pub struct DetailRow {
    pub label: String,
    pub value: String,
    pub items: Vec<String>,
}

/// Sample contexts of every page, for the check at start.
fn samples(full: bool) -> Vec<(&'static str, serde_json::Value)> {
    let client = if full {
        serde_json::json!({"name": "Sample TPP", "logo_uri": "https://tpp.example/logo.png",
            "policy_uri": "https://tpp.example/privacy", "tos_uri": "https://tpp.example/terms"})
    } else {
        serde_json::json!({"name": "Sample TPP", "logo_uri": null, "policy_uri": null, "tos_uri": null})
    };
    let details = if full {
        serde_json::json!([[{"label": "Type", "value": "account_information", "items": []},
            {"label": "Permissions", "value": "", "items": ["Read balances"]}]])
    } else {
        serde_json::json!([])
    };
    vec![
        (
            "login.html",
            serde_json::json!({"client": client, "interaction_id": "sample", "error": full,
                "username": if full { "alice" } else { "" }}),
        ),
        (
            "consent.html",
            serde_json::json!({"client": client, "interaction_id": "sample", "username": "alice",
                "scopes": [{"name": "openid", "description": "Confirm who you are"}],
                "details": details, "intent_id": if full { Some("intent-1") } else { None },
                "expiry": "30 days"}),
        ),
        (
            "error.html",
            serde_json::json!({"error": "invalid_request",
                "description": if full { Some("sample") } else { None }}),
        ),
        (
            "form_post.html",
            serde_json::json!({"action": "https://tpp.example/cb",
                "params": [{"name": "code", "value": "sample"}],
                "script": crate::interaction::FORM_POST_SCRIPT}),
        ),
        (
            "unavailable.html",
            serde_json::json!({"client": client, "return_to": "https://tpp.example/cb"}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_hex_only_and_dark_enough_for_white_text() {
        assert_eq!(parse_color("#0f4c81"), Some([0x0f, 0x4c, 0x81]));
        for bad in [
            "0f4c81",
            "#0f4c8",
            "#0f4c81;",
            "red",
            "#0f4c81}body{",
            "#gggggg",
        ] {
            assert_eq!(parse_color(bad), None, "{bad}");
        }
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 0.01);
        let ui = |c: &str| UiConfig {
            primary_color: c.into(),
            ..UiConfig::default()
        };
        let e = load_theme(&ui("#ffcc00"), &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "ui.primary_color");
        assert!(e.problem.contains("4.5:1"), "{e}");
        assert_eq!(
            load_theme(&ui("blue"), &BTreeMap::new()).unwrap_err().key,
            "ui.primary_color"
        );
        let t = load_theme(&ui("#7a1a12"), &BTreeMap::new()).unwrap();
        let css = std::str::from_utf8(&t.asset("theme.css").unwrap().body)
            .unwrap()
            .to_string();
        assert!(css.contains("--sr-primary:#7a1a12"), "{css}");
    }

    #[test]
    fn every_shipped_catalog_has_every_key() {
        let t = Theme::builtin();
        let en = &t.catalogs["en"];
        for lang in LANGUAGES {
            let cat = &t.catalogs[lang];
            assert_eq!(cat.len(), en.len(), "{lang}");
            assert!(en.keys().all(|k| cat.contains_key(k)), "{lang}");
        }
    }

    #[test]
    fn ui_locales_then_accept_language_then_english() {
        let t = Theme::builtin();
        assert_eq!(t.negotiate(Some("de fr"), Some("fr")), "de");
        assert_eq!(t.negotiate(Some("xx fr-CA"), Some("de")), "fr");
        assert_eq!(t.negotiate(Some("ja"), Some("de-AT, fr;q=0.5")), "de");
        assert_eq!(
            t.negotiate(None, Some("en;q=0.3, fr;q=0.9, de;q=0.5")),
            "fr"
        );
        assert_eq!(t.negotiate(None, Some("fr;q=0, de;q=0.1")), "de");
        assert_eq!(t.negotiate(None, Some("ja, zh")), "en");
        assert_eq!(t.negotiate(None, Some(";;;,,q=x")), "en");
        assert_eq!(t.negotiate(None, None), "en");
    }

    #[test]
    fn messages_fill_placeholders_once() {
        let t = Theme::builtin();
        assert_eq!(
            t.msg("en", "login-cancel", &[("client", "{bank}")]),
            "Cancel and return to {bank}"
        );
        assert_eq!(t.duration("en", 30 * 86_400), "30 days");
        assert_eq!(t.duration("fr", 3600), "1 heure");
        assert_eq!(t.duration("de", 90), "1 Minute");
        assert_eq!(
            t.scope_description("fr", "accounts"),
            "Voir vos comptes, soldes et opérations"
        );
        assert_eq!(t.scope_description("en", "com.bank.x"), "com.bank.x");
    }

    #[test]
    fn only_plain_names() {
        for ok in ["style.css", "logo-2.png", "a_b.svg"] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in [
            "", "..", ".env", "../x.css", "a/b.css", "a\\b.css", "x%2e.css", "a b.css",
        ] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_theme_overrides_file_by_file_and_bad_ones_fail_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ui = UiConfig {
            theme_dir: Some(dir.path().to_path_buf()),
            bank_name: "Bank of Tests".into(),
            logo: "bank.png".into(),
            ..UiConfig::default()
        };
        std::fs::create_dir_all(dir.path().join("assets")).unwrap();
        std::fs::create_dir_all(dir.path().join("messages")).unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("assets/bank.png"), b"\x89PNG").unwrap();
        std::fs::write(
            dir.path().join("messages/fr.toml"),
            "login-submit = \"Entrer\"\n",
        )
        .unwrap();
        let t = load_theme(&ui, &BTreeMap::new()).unwrap();
        assert_eq!(t.msg("fr", "login-submit", &[]), "Entrer");
        assert_eq!(t.msg("fr", "login-password", &[]), "Mot de passe");
        assert_eq!(t.asset("bank.png").unwrap().content_type, "image/png");
        assert!(t.asset("style.css").is_some());

        std::fs::write(dir.path().join("templates/error.html"), "{% if %}").unwrap();
        let e = load_theme(&ui, &BTreeMap::new()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ui.theme_dir: template error.html"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("templates/error.html"),
            "{{ nothing_here }}",
        )
        .unwrap();
        assert!(load_theme(&ui, &BTreeMap::new()).is_err());
        std::fs::remove_file(dir.path().join("templates/error.html")).unwrap();

        std::fs::write(dir.path().join("messages/fr.toml"), "no-such-key = \"x\"\n").unwrap();
        assert!(
            load_theme(&ui, &BTreeMap::new())
                .unwrap_err()
                .problem
                .contains("unknown message key")
        );
        std::fs::remove_file(dir.path().join("messages/fr.toml")).unwrap();

        let no_logo = UiConfig {
            logo: "missing.png".into(),
            ..ui.clone()
        };
        assert_eq!(
            load_theme(&no_logo, &BTreeMap::new()).unwrap_err().key,
            "ui.logo"
        );
    }
}
