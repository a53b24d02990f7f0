//! `stsvend ticket create|list|delete`: the helper's side of `/s3credentials/tickets`. What
//! the service answers is untrusted: a ticket must look like one before it is written to a
//! file, ids and times are checked, and text shown on the terminal is made printable.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::checked::shown;
use super::ClientError;
use crate::common::TICKET_PREFIX;

/// The longest ticket the helper takes (the service makes them at most 12 KiB).
const MAX_TICKET: usize = 12 * 1024;

/// `/s3credentials/tickets` beside the service's `/s3credentials` endpoint.
pub fn tickets_url(endpoint: &url::Url) -> url::Url {
    let mut url = endpoint.clone();
    url.set_query(None);
    url.set_fragment(None);
    let path = format!("{}/tickets", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

/// A ticket id: what the service makes (hex), nothing a path or a terminal could misread.
pub fn ticket_id(s: &str) -> Result<&str, String> {
    if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(s)
    } else {
        Err(format!("{} is not a ticket id", shown(s)))
    }
}

/// A ticket: `stsvend_tk1_` and base64url, as the service seals them. Checked before it is
/// written to a file or sent as a bearer token.
pub fn ticket_secret(s: &str) -> Result<&str, String> {
    let body = s.strip_prefix(TICKET_PREFIX).unwrap_or("");
    if !body.is_empty()
        && s.len() <= MAX_TICKET
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s)
    } else {
        Err(format!(
            "this is not an stsvend ticket (one starts with {TICKET_PREFIX})"
        ))
    }
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// A ticket the service made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

/// One ticket of a list, as it may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub id: String,
    pub label: String,
    pub targets: Vec<String>,
    pub expires: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
}

fn not_expected(status: u16, what: &str) -> ClientError {
    ClientError::Service {
        status,
        detail: format!(": the answer is not {what}"),
    }
}

/// The answer to a ticket request: the new ticket, or the one-line error the user sees.
pub fn parse_created(
    status: u16,
    request_id: Option<&str>,
    text: &str,
) -> Result<Created, ClientError> {
    if status != 201 {
        return Err(super::refusal(status, request_id, text));
    }
    #[derive(Deserialize)]
    struct Answer {
        id: String,
        ticket: String,
        expires_at: String,
    }
    let answer: Answer =
        serde_json::from_str(text).map_err(|_| not_expected(status, "a ticket"))?;
    let id = ticket_id(&answer.id).map_err(|_| not_expected(status, "a ticket"))?;
    let ticket = ticket_secret(&answer.ticket).map_err(|_| not_expected(status, "a ticket"))?;
    let expires_at = time(&answer.expires_at).ok_or_else(|| not_expected(status, "a ticket"))?;
    Ok(Created {
        id: id.to_owned(),
        ticket: ticket.to_owned(),
        expires_at,
    })
}

/// The answer to a list request.
pub fn parse_list(
    status: u16,
    request_id: Option<&str>,
    text: &str,
) -> Result<Vec<Shown>, ClientError> {
    if status != 200 {
        return Err(super::refusal(status, request_id, text));
    }
    #[derive(Deserialize)]
    struct Item {
        id: String,
        #[serde(default)]
        label: String,
        #[serde(default)]
        targets: Vec<String>,
        expires: String,
        last_used: Option<String>,
    }
    #[derive(Deserialize)]
    struct Answer {
        tickets: Vec<Item>,
    }
    let answer: Answer =
        serde_json::from_str(text).map_err(|_| not_expected(status, "a list of tickets"))?;
    answer
        .tickets
        .into_iter()
        .take(1000)
        .map(|t| {
            Some(Shown {
                id: ticket_id(&t.id).ok()?.to_owned(),
                label: crate::common::printable(&t.label, 100),
                targets: t
                    .targets
                    .iter()
                    .take(20)
                    .map(|t| crate::common::printable(t, 300))
                    .collect(),
                expires: time(&t.expires)?,
                last_used: match t.last_used {
                    Some(u) => Some(time(&u)?),
                    None => None,
                },
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| not_expected(status, "a list of tickets"))
}

/// One exchange with the service: (status, request id, body).
async fn exchange(
    req: reqwest::RequestBuilder,
    url: &url::Url,
) -> Result<(u16, Option<String>, String), ClientError> {
    let res = req
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            ClientError::Unreachable(format!("{}: {e}", url.origin().ascii_serialization()))
        })?;
    let status = res.status().as_u16();
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A ticket answer is small: a hostile service cannot make the helper read gigabytes.
    let mut body = Vec::new();
    let mut res = res;
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| ClientError::Unreachable(e.to_string()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > 1024 * 1024 {
            return Err(not_expected(status, "a ticket answer (over 1 MiB)"));
        }
    }
    Ok((
        status,
        request_id,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Ask the service for a ticket (`request`: targets, lifetimes, label).
pub async fn create(
    endpoint: &url::Url,
    token: &str,
    request: &serde_json::Value,
) -> Result<Created, ClientError> {
    let url = tickets_url(endpoint);
    let http = super::http_client()?;
    let (status, id, text) = exchange(
        http.post(url.clone()).bearer_auth(token).json(request),
        &url,
    )
    .await?;
    parse_created(status, id.as_deref(), &text)
}

/// The caller's live tickets.
pub async fn list(endpoint: &url::Url, token: &str) -> Result<Vec<Shown>, ClientError> {
    let url = tickets_url(endpoint);
    let http = super::http_client()?;
    let (status, id, text) = exchange(http.get(url.clone()).bearer_auth(token), &url).await?;
    parse_list(status, id.as_deref(), &text)
}

/// End one of the caller's tickets.
pub async fn delete(endpoint: &url::Url, token: &str, id: &str) -> Result<(), ClientError> {
    let id = ticket_id(id).map_err(ClientError::Usage)?;
    let mut url = tickets_url(endpoint);
    let path = format!("{}/{id}", url.path());
    url.set_path(&path);
    let http = super::http_client()?;
    let (status, request_id, text) =
        exchange(http.delete(url.clone()).bearer_auth(token), &url).await?;
    if status == 204 {
        Ok(())
    } else {
        Err(super::refusal(status, request_id.as_deref(), &text))
    }
}

/// The list as lines for a terminal.
pub fn render_list(tickets: &[Shown]) -> String {
    if tickets.is_empty() {
        return "no live tickets\n".to_owned();
    }
    let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let mut out = String::new();
    for t in tickets {
        out.push_str(&format!(
            "{}  expires {}  {}  {}  {}\n",
            t.id,
            when(t.expires),
            t.last_used.map_or_else(
                || "never used".to_owned(),
                |u| format!("last used {}", when(u))
            ),
            if t.label.is_empty() { "-" } else { &t.label },
            if t.targets.is_empty() {
                "everything you may read".to_owned()
            } else {
                t.targets.join(" ")
            }
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tickets_url_is_beside_the_endpoint() {
        let u = url::Url::parse("https://d.example.org/data/s3credentials?target=x").unwrap();
        assert_eq!(
            tickets_url(&u).as_str(),
            "https://d.example.org/data/s3credentials/tickets"
        );
    }

    #[test]
    fn only_tickets_are_tickets() {
        assert!(ticket_secret("stsvend_tk1_abc-_09").is_ok());
        for bad in [
            "",
            "stsvend_tk1_",
            "eyJhbGciOi.x.y",
            "stsvend_tk1_a b",
            "stsvend_tk1_a\nexport X=1",
            &format!("stsvend_tk1_{}", "a".repeat(MAX_TICKET)),
        ] {
            assert!(ticket_secret(bad).is_err(), "{bad:?}");
        }
        assert!(ticket_id("0f3a").is_ok());
        assert!(ticket_id("../x").is_err());
    }

    #[test]
    fn a_hostile_answer_is_refused_or_made_harmless() {
        let ok = r#"{"id":"ab12","ticket":"stsvend_tk1_QUJD","expires_at":"2027-01-01T00:00:00Z","targets":[],"label":""}"#;
        assert_eq!(parse_created(201, None, ok).unwrap().id, "ab12");
        for bad in [
            r#"{"id":"ab12","ticket":"stsvend_tk1_QUJD\n","expires_at":"2027-01-01T00:00:00Z"}"#,
            r#"{"id":"a/b","ticket":"stsvend_tk1_QUJD","expires_at":"2027-01-01T00:00:00Z"}"#,
            r#"{"id":"ab12","ticket":"stsvend_tk1_QUJD","expires_at":"soon"}"#,
            "not json",
        ] {
            assert!(parse_created(201, None, bad).is_err(), "{bad}");
        }
        let list = r#"{"tickets":[{"id":"ab12","label":"\u001b[31mred","targets":["s3://b/\u0007"],"expires":"2027-01-01T00:00:00Z","last_used":null}]}"#;
        let shown = parse_list(200, None, list).unwrap();
        let text = render_list(&shown);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        let e = parse_created(
            409,
            Some("r1"),
            r#"{"error":"too_many_tickets","error_description":"delete one"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("delete one"), "{e}");
    }
}
