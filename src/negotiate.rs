//! Reading what kind of client is asking. Scripts send `Accept: */*`; only an explicit
//! preference for HTML means a browser, and only an explicit JSON preference without HTML
//! means "answer 401, do not redirect me".

use actix_web::http::header;
use actix_web::HttpRequest;

/// The highest q-value given to any of `types` in an Accept header (0 when absent).
fn quality(accept: &str, types: &[&str]) -> f32 {
    accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            if !types.contains(&media.as_str()) {
                return None;
            }
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(q)
        })
        .fold(0.0, f32::max)
}

fn accept(req: &HttpRequest) -> &str {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

const HTML: &[&str] = &["text/html", "application/xhtml+xml"];
const JSON: &[&str] = &["application/json"];

pub fn prefers_html_header(accept: &str) -> bool {
    let html = quality(accept, HTML);
    html > 0.0 && html >= quality(accept, JSON)
}

/// The client explicitly wants HTML (a browser navigating).
pub fn prefers_html(req: &HttpRequest) -> bool {
    prefers_html_header(accept(req))
}

/// The client explicitly asked for JSON and not HTML (API clients, SDK credential providers).
pub fn wants_json_only(req: &HttpRequest) -> bool {
    wants_json_only_header(accept(req))
}

pub fn wants_json_only_header(accept: &str) -> bool {
    quality(accept, JSON) > 0.0 && quality(accept, HTML) == 0.0
}

/// Earthdata's convention: a User-Agent without `Mozilla` is a script, which gets the
/// `app_type=401` hint so the IdP answers with a Basic challenge instead of a form.
pub fn is_browser(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.contains("Mozilla"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_scripts_and_api_clients_are_told_apart() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(prefers_html_header(browser));
        assert!(!prefers_html_header("*/*"));
        assert!(!prefers_html_header("application/json"));
        assert!(!prefers_html_header("application/json, text/html;q=0.5"));
        assert!(!prefers_html_header("text/html;q=0"));
        assert!(quality("application/json", JSON) > 0.0);
        assert_eq!(quality("*/*", JSON), 0.0);
    }
}
