//! Encrypted, authenticated cookies (AES-256-GCM through the `cookie` crate's private jar):
//! the session itself, and the short-lived login state of a login round trip. The cookie
//! name is bound into the encryption, so one cookie cannot be replayed as the other.

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::SessionSettings;

/// What the session cookie holds: only what is needed to serve requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionData {
    pub sub: String,
    pub groups: Vec<String>,
    /// Unix seconds after which the session is void.
    pub exp: i64,
}

/// What a login round trip needs to remember between the redirect and the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub exp: i64,
}

/// How long a user has to finish logging in at the IdP.
pub const LOGIN_STATE_TTL_SECONDS: i64 = 600;

/// Encrypts and decrypts stsvend's cookies with the configured key.
#[derive(Clone)]
pub struct CookieCodec {
    key: Key,
    session_name: String,
    login_name: String,
    secure: bool,
    login_path: String,
}

impl CookieCodec {
    /// `key` must be at least 64 bytes (the configuration guarantees it).
    pub fn new(settings: &SessionSettings, callback_path: &str) -> Result<Self, String> {
        let key = Key::try_from(settings.key.bytes()).map_err(|e| e.to_string())?;
        Ok(Self {
            key,
            session_name: settings.cookie_name.clone(),
            login_name: format!("{}_login", settings.cookie_name),
            secure: settings.secure,
            login_path: callback_path.to_owned(),
        })
    }

    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    /// The login-state cookie of the login whose `state` is `state`: one cookie per login in
    /// progress, so two tabs logging in at once do not overwrite each other.
    pub fn login_name(&self, state: &str) -> String {
        let tag: String = state
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        format!("{}_{tag}", self.login_name)
    }

    fn seal<T: Serialize>(&self, name: &str, value: &T) -> Option<Cookie<'static>> {
        let json = serde_json::to_string(value).ok()?;
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(name.to_owned(), json));
        jar.get(name).cloned()
    }

    fn open<T: DeserializeOwned>(&self, name: &str, sealed: &str) -> Option<T> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(name.to_owned(), sealed.to_owned()));
        let plain = jar.private(&self.key).get(name)?;
        serde_json::from_str(plain.value()).ok()
    }

    fn harden(&self, mut cookie: Cookie<'static>, path: &str, max_age: i64) -> Cookie<'static> {
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_path(path.to_owned());
        cookie.set_max_age(actix_web::cookie::time::Duration::seconds(max_age.max(0)));
        cookie
    }

    pub fn session_cookie(
        &self,
        data: &SessionData,
        now: DateTime<Utc>,
    ) -> Option<Cookie<'static>> {
        let sealed = self.seal(&self.session_name, data)?;
        Some(self.harden(sealed, "/", data.exp - now.timestamp()))
    }

    /// The session, if the cookie decrypts, authenticates and has not expired.
    pub fn read_session(&self, sealed: &str, now: DateTime<Utc>) -> Option<SessionData> {
        let data: SessionData = self.open(&self.session_name, sealed)?;
        (data.exp > now.timestamp()).then_some(data)
    }

    pub fn login_cookie(&self, state: &LoginState, now: DateTime<Utc>) -> Option<Cookie<'static>> {
        let sealed = self.seal(&self.login_name(&state.state), state)?;
        Some(self.harden(sealed, &self.login_path, state.exp - now.timestamp()))
    }

    /// The login state sealed in the cookie named for `state`.
    pub fn read_login(&self, state: &str, sealed: &str, now: DateTime<Utc>) -> Option<LoginState> {
        let login: LoginState = self.open(&self.login_name(state), sealed)?;
        (login.exp > now.timestamp()).then_some(login)
    }

    /// A cookie that makes the browser forget the session.
    pub fn clear_session(&self) -> Cookie<'static> {
        self.harden(Cookie::new(self.session_name.clone(), ""), "/", 0)
    }

    pub fn clear_login(&self, state: &str) -> Cookie<'static> {
        self.harden(Cookie::new(self.login_name(state), ""), &self.login_path, 0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{CookieKey, SessionSettings};

    fn codec() -> CookieCodec {
        let settings = SessionSettings {
            cookie_name: "s".into(),
            key: CookieKey::from_bytes(vec![9u8; 64]),
            lifetime: Duration::from_secs(3600),
            secure: true,
        };
        CookieCodec::new(&settings, "/login").unwrap()
    }

    #[test]
    fn a_session_round_trips_and_expires() {
        let c = codec();
        let now = Utc::now();
        let data = SessionData {
            sub: "alice".into(),
            groups: vec!["science".into()],
            exp: now.timestamp() + 60,
        };
        let cookie = c.session_cookie(&data, now).unwrap();
        assert!(cookie.http_only().unwrap() && cookie.secure().unwrap());
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert!(!cookie.value().contains("alice"), "cookie is encrypted");
        assert_eq!(c.read_session(cookie.value(), now).unwrap().sub, "alice");
        assert!(c
            .read_session(cookie.value(), now + chrono::TimeDelta::seconds(61))
            .is_none());
    }

    #[test]
    fn tampering_or_swapping_names_is_rejected() {
        let c = codec();
        let now = Utc::now();
        let state = LoginState {
            state: "s".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/".into(),
            exp: now.timestamp() + 60,
        };
        let login = c.login_cookie(&state, now).unwrap();
        assert!(c.read_login("s", login.value(), now).is_some());
        // Sealed for another login's name: refused.
        assert!(c.read_login("other", login.value(), now).is_none());
        // A login cookie presented as a session cookie does not authenticate.
        assert!(c.read_session(login.value(), now).is_none());
        let mut tampered = login.value().to_owned();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(c.read_login("s", &tampered, now).is_none());
    }
}
