//! Encrypted, authenticated cookies (AES-256-GCM through the `cookie` crate's private jar):
//! the session itself, and the short-lived login state of a login round trip. The cookie
//! name is bound into the encryption, so one cookie cannot be replayed as the other.

use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::SessionSettings;

/// What the session cookie holds: only what is needed to serve requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionData {
    pub sub: std::sync::Arc<str>,
    pub groups: std::sync::Arc<[String]>,
    /// Unix seconds after which the session is void.
    pub exp: i64,
    /// Unix seconds of the login the groups were read at (0 in cookies from before this
    /// field existed: such sessions log in again).
    #[serde(default)]
    pub auth_time: i64,
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

/// Login-state cookies a browser can hold at once. Each is a fixed name (a slot), so however
/// many logins an attacker makes a browser start, it never holds more than this many: with
/// `return_to` capped at `MAX_RETURN_TO` each is about 1 KB, so the cookies sent to the
/// callback stay far below the 8 KB header limits of common proxies.
pub const LOGIN_SLOTS: usize = 4;

/// The longest `return_to` path a login remembers.
pub const MAX_RETURN_TO: usize = 512;

/// Which login-state cookie slots a browser holds and until when: an unencrypted hint in a
/// small cookie sent on every path, because the login-state cookies themselves are sent only
/// to the callback and a login can start anywhere. Tampering with it can only make a new login
/// overwrite another login in progress in the same browser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotIndex([i64; LOGIN_SLOTS]);

impl SlotIndex {
    pub fn parse(value: &str) -> Self {
        let mut out = [0i64; LOGIN_SLOTS];
        let parts: Vec<&str> = value.split('.').collect();
        if parts.len() == LOGIN_SLOTS {
            for (slot, part) in out.iter_mut().zip(parts) {
                *slot = part.parse().unwrap_or(0);
            }
        }
        Self(out)
    }

    fn render(&self) -> String {
        self.0
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(".")
    }

    /// A free slot, else the one whose login started first.
    fn pick(&self, now: i64) -> usize {
        self.0
            .iter()
            .position(|&exp| exp <= now)
            .unwrap_or_else(|| {
                self.0
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, &exp)| exp)
                    .map_or(0, |(i, _)| i)
            })
    }
}

/// How many opened session cookies are kept (about 0.5 KiB each).
const OPENED_SESSIONS: u64 = 10_000;

/// Encrypts and decrypts stsvend's cookies with the configured key.
#[derive(Clone)]
pub struct CookieCodec {
    key: Key,
    /// Earlier keys: cookies sealed with them are still read (key rotation).
    previous: Vec<Key>,
    /// Session cookies already opened, by their whole sealed value (a hit compares it byte
    /// for byte): a browser sends the same cookie on every request, and opening it (base64,
    /// AES-GCM, JSON) is most of a cached credential request's work. Expiry is still checked
    /// on every read.
    opened: moka::sync::Cache<
        std::sync::Arc<str>,
        std::sync::Arc<SessionData>,
        foldhash::fast::RandomState,
    >,
    session_name: String,
    login_base: String,
    index_name: String,
    secure: bool,
    session_path: String,
    login_path: String,
}

impl CookieCodec {
    /// `key` must be at least 64 bytes (the configuration guarantees it). `path_prefix` is
    /// the path of `server.public_url` without a trailing `/` (empty when it has none): the
    /// proxy in front strips it, but the browser sees it, so cookie paths must include it.
    pub fn new(
        settings: &SessionSettings,
        callback_path: &str,
        path_prefix: &str,
    ) -> Result<Self, String> {
        let key = Key::try_from(settings.key.bytes()).map_err(|e| e.to_string())?;
        let previous = settings
            .previous_keys
            .iter()
            .map(|k| Key::try_from(k.bytes()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let base = &settings.cookie_name;
        // `__Host-` pins a cookie to this exact host over https with Path=/ (no subdomain can
        // set or shadow it); `__Secure-` is what remains possible for path-scoped cookies.
        let (host, secure_prefix) = match (settings.secure, path_prefix.is_empty()) {
            (true, true) => ("__Host-", "__Secure-"),
            (true, false) => ("__Secure-", "__Secure-"),
            (false, _) => ("", ""),
        };
        Ok(Self {
            key,
            previous,
            opened: moka::sync::Cache::builder()
                .max_capacity(OPENED_SESSIONS)
                .time_to_live(std::time::Duration::from_secs(3600))
                .build_with_hasher(foldhash::fast::RandomState::default()),
            session_name: format!("{host}{base}"),
            login_base: format!("{secure_prefix}{base}_login"),
            index_name: format!("{host}{base}_logins"),
            secure: settings.secure,
            session_path: if path_prefix.is_empty() {
                "/".to_owned()
            } else {
                path_prefix.to_owned()
            },
            login_path: format!("{path_prefix}{callback_path}"),
        })
    }

    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    pub fn index_name(&self) -> &str {
        &self.index_name
    }

    /// The login-state cookie of slot `slot`.
    pub fn login_name(&self, slot: usize) -> String {
        format!("{}_{slot}", self.login_base)
    }

    fn seal<T: Serialize>(&self, name: &str, value: &T) -> Option<Cookie<'static>> {
        let json = serde_json::to_string(value).ok()?;
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(name.to_owned(), json));
        jar.get(name).cloned()
    }

    /// The cookie's content, if the current key or one of the previous keys sealed it.
    fn open<T: DeserializeOwned>(&self, name: &str, sealed: &str) -> Option<T> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(name.to_owned(), sealed.to_owned()));
        let plain = std::iter::once(&self.key)
            .chain(&self.previous)
            .find_map(|key| jar.private(key).get(name))?;
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
        Some(self.harden(sealed, &self.session_path, data.exp - now.timestamp()))
    }

    /// The session, if the cookie decrypts, authenticates and has not expired.
    pub fn read_session(
        &self,
        sealed: &str,
        now: DateTime<Utc>,
    ) -> Option<std::sync::Arc<SessionData>> {
        let data = match self.opened.get(sealed) {
            Some(data) => data,
            None => {
                let data: std::sync::Arc<SessionData> =
                    std::sync::Arc::new(self.open(&self.session_name, sealed)?);
                self.opened.insert(sealed.into(), data.clone());
                data
            }
        };
        (data.exp > now.timestamp()).then_some(data)
    }

    /// The cookies that start a login: its state in a free slot (or the oldest one's), and
    /// the updated slot index. `index` is the index cookie the browser sent, if any.
    pub fn login_cookies(
        &self,
        state: &LoginState,
        index: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Vec<Cookie<'static>>> {
        let mut slots = index.map(SlotIndex::parse).unwrap_or_default();
        let slot = slots.pick(now.timestamp());
        slots.0[slot] = state.exp;
        let sealed = self.seal(&self.login_name(slot), state)?;
        let ttl = state.exp - now.timestamp();
        Some(vec![
            self.harden(sealed, &self.login_path, ttl),
            self.index_cookie(slots, now),
        ])
    }

    fn index_cookie(&self, slots: SlotIndex, now: DateTime<Utc>) -> Cookie<'static> {
        let ttl = slots.0.iter().max().map_or(0, |&exp| exp - now.timestamp());
        self.harden(
            Cookie::new(self.index_name.clone(), slots.render()),
            &self.session_path,
            ttl,
        )
    }

    /// The login in progress whose `state` is `state`, among the login-state cookies the
    /// browser sent (`cookie` looks one up by name), and its slot.
    pub fn find_login(
        &self,
        state: &str,
        cookie: impl Fn(&str) -> Option<String>,
        now: DateTime<Utc>,
    ) -> Option<(usize, LoginState)> {
        (0..LOGIN_SLOTS).find_map(|slot| {
            let sealed = cookie(&self.login_name(slot))?;
            let login: LoginState = self.open(&self.login_name(slot), &sealed)?;
            (login.exp > now.timestamp() && constant_time_eq(&login.state, state))
                .then_some((slot, login))
        })
    }

    /// A cookie that makes the browser forget the session.
    pub fn clear_session(&self) -> Cookie<'static> {
        self.harden(
            Cookie::new(self.session_name.clone(), ""),
            &self.session_path,
            0,
        )
    }

    /// Cookies that end the login in `slot`: the state itself, and its entry in the index.
    pub fn clear_login(
        &self,
        slot: usize,
        index: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<Cookie<'static>> {
        let mut slots = index.map(SlotIndex::parse).unwrap_or_default();
        if let Some(exp) = slots.0.get_mut(slot) {
            *exp = 0;
        }
        vec![
            self.harden(Cookie::new(self.login_name(slot), ""), &self.login_path, 0),
            self.index_cookie(slots, now),
        ]
    }
}

/// Compare two secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
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
            previous_keys: vec![],
            lifetime: Duration::from_secs(3600),
            secure: true,
        };
        CookieCodec::new(&settings, "/login", "").unwrap()
    }

    fn login_state(state: &str, exp: i64) -> LoginState {
        LoginState {
            state: state.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/".into(),
            exp,
        }
    }

    #[test]
    fn a_session_round_trips_and_expires() {
        let c = codec();
        let now = Utc::now();
        let data = SessionData {
            sub: "alice".into(),
            groups: vec!["science".into()].into(),
            exp: now.timestamp() + 60,
            auth_time: now.timestamp(),
        };
        let cookie = c.session_cookie(&data, now).unwrap();
        assert!(cookie.http_only().unwrap() && cookie.secure().unwrap());
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(&*c.read_session(cookie.value(), now).unwrap().sub, "alice");
        // Encrypted, not merely encoded: no decoding of the value shows the user, and a codec
        // with another key cannot open it.
        use base64::Engine as _;
        let value = cookie.value();
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let decoded = engine.decode(value).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&decoded).contains("alice"),
                "the cookie's plaintext shows through"
            );
        }
        let percent = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        assert!(!percent.contains("alice"));
        let other = CookieCodec::new(
            &SessionSettings {
                cookie_name: "s".into(),
                key: CookieKey::from_bytes(vec![8u8; 64]),
                previous_keys: vec![],
                lifetime: Duration::from_secs(3600),
                secure: true,
            },
            "/login",
            "",
        )
        .unwrap();
        assert!(
            other.read_session(value, now).is_none(),
            "opened without the key"
        );
        assert!(c
            .read_session(cookie.value(), now + chrono::TimeDelta::seconds(61))
            .is_none());
    }

    /// Session-key rotation: cookies sealed with a previous key are still read; new cookies
    /// are sealed with the current key, which an old deployment (without it) cannot read.
    #[test]
    fn previous_keys_read_old_cookies_and_new_cookies_use_the_current_key() {
        let old = codec();
        let now = Utc::now();
        let data = SessionData {
            sub: "alice".into(),
            groups: vec![].into(),
            exp: now.timestamp() + 60,
            auth_time: now.timestamp(),
        };
        let old_cookie = old.session_cookie(&data, now).unwrap();
        let rotated_settings = SessionSettings {
            cookie_name: "s".into(),
            key: CookieKey::from_bytes(vec![7u8; 64]),
            previous_keys: vec![CookieKey::from_bytes(vec![9u8; 64])],
            lifetime: Duration::from_secs(3600),
            secure: true,
        };
        let rotated = CookieCodec::new(&rotated_settings, "/login", "").unwrap();
        assert_eq!(
            &*rotated.read_session(old_cookie.value(), now).unwrap().sub,
            "alice"
        );
        let new_cookie = rotated.session_cookie(&data, now).unwrap();
        assert!(rotated.read_session(new_cookie.value(), now).is_some());
        assert!(
            old.read_session(new_cookie.value(), now).is_none(),
            "new cookies use the new key"
        );
        // Once the old key is dropped from previous_keys, its cookies stop working.
        let dropped = CookieCodec::new(
            &SessionSettings {
                previous_keys: vec![],
                ..rotated_settings
            },
            "/login",
            "",
        )
        .unwrap();
        assert!(dropped.read_session(old_cookie.value(), now).is_none());
    }

    #[test]
    fn tampering_or_swapping_names_is_rejected() {
        let c = codec();
        let now = Utc::now();
        let state = login_state("s", now.timestamp() + 60);
        let cookies = c.login_cookies(&state, None, now).unwrap();
        let login = cookies[0].clone();
        let lookup = |value: String| {
            let name = login.name().to_owned();
            move |n: &str| (n == name).then(|| value.clone())
        };
        assert!(c
            .find_login("s", lookup(login.value().into()), now)
            .is_some());
        // Another login's state: not this one.
        assert!(c
            .find_login("other", lookup(login.value().into()), now)
            .is_none());
        // A login cookie presented as a session cookie does not authenticate.
        assert!(c.read_session(login.value(), now).is_none());
        let mut tampered = login.value().to_owned();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(c.find_login("s", lookup(tampered), now).is_none());
    }

    #[test]
    fn logins_fill_free_slots_then_replace_the_oldest() {
        let c = codec();
        let now = Utc::now();
        let mut index: Option<String> = None;
        let mut used = Vec::new();
        for i in 0..(LOGIN_SLOTS as i64 + 2) {
            let state = login_state(&format!("s{i}"), now.timestamp() + 600 + i);
            let cookies = c.login_cookies(&state, index.as_deref(), now).unwrap();
            used.push(cookies[0].name().to_owned());
            index = Some(cookies[1].value().to_owned());
        }
        let names: Vec<String> = (0..LOGIN_SLOTS).map(|s| c.login_name(s)).collect();
        assert_eq!(used[..LOGIN_SLOTS], names[..]);
        // Full: the oldest (slot 0, then slot 1) is replaced.
        assert_eq!(used[LOGIN_SLOTS], names[0]);
        assert_eq!(used[LOGIN_SLOTS + 1], names[1]);
        // A garbage index is ignored, not an error.
        assert_eq!(SlotIndex::parse("x.y"), SlotIndex::default());
    }

    #[test]
    fn cookie_names_and_paths_follow_the_public_url() {
        let mut settings = SessionSettings {
            cookie_name: "s".into(),
            key: CookieKey::from_bytes(vec![9u8; 64]),
            previous_keys: vec![],
            lifetime: Duration::from_secs(3600),
            secure: true,
        };
        let root = CookieCodec::new(&settings, "/login", "").unwrap();
        assert_eq!(root.session_name(), "__Host-s");
        assert_eq!(root.login_name(0), "__Secure-s_login_0");
        let prefixed = CookieCodec::new(&settings, "/login", "/archive").unwrap();
        assert_eq!(prefixed.session_name(), "__Secure-s");
        let now = Utc::now();
        let data = SessionData {
            sub: "a".into(),
            groups: vec![].into(),
            exp: now.timestamp() + 60,
            auth_time: now.timestamp(),
        };
        assert_eq!(
            prefixed.session_cookie(&data, now).unwrap().path(),
            Some("/archive")
        );
        let state = login_state("s", now.timestamp() + 60);
        let cookies = prefixed.login_cookies(&state, None, now).unwrap();
        assert_eq!(cookies[0].path(), Some("/archive/login"));
        settings.secure = false;
        let dev = CookieCodec::new(&settings, "/login", "").unwrap();
        assert_eq!(dev.session_name(), "s");
    }
}
