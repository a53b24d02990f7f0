//! STS `RoleSessionName` (`<user>@<app>`) and `SourceIdentity` (`<user>`): 2-64 characters
//! of `[A-Za-z0-9_+=,.@-]`.
//!
//! The mapping from user id to name must be one-to-one: CloudTrail attributes every S3 read to
//! it, and two users sharing a name would be indistinguishable there. So a user id passes
//! unchanged only when it is valid as it is *and* cannot be mistaken for a hashed name;
//! every other id becomes `<sanitised head>-<16 hex digits of SHA-256 of the raw id>`. A
//! hashed name always ends in `-` and 16 lowercase hex digits and an unchanged one never
//! does, so the two kinds cannot meet, and two hashed names meet only on a 64-bit collision.

use sha2::{Digest, Sha256};

const MAX: usize = 64;
/// Hex digits of the hash suffix: 64 bits of SHA-256.
const HASH_HEX: usize = 16;
/// `-` plus the hash.
const SUFFIX_LEN: usize = HASH_HEX + 1;

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn hash_suffix(user_id: &str) -> String {
    Sha256::digest(user_id.as_bytes())
        .iter()
        .take(HASH_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `s` has the shape of a hashed name: `-` and 16 lowercase hex digits at the end.
fn looks_hashed(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= SUFFIX_LEN
        && b[b.len() - SUFFIX_LEN] == b'-'
        && b[b.len() - HASH_HEX..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// `user_id` fitted into `budget` (at least `SUFFIX_LEN + 1`) characters.
fn fit(user_id: &str, budget: usize) -> String {
    fit_with(user_id, budget, allowed, |c| c)
}

/// `raw` unchanged when it is 2..=`budget` characters that `ok` accepts and not shaped like a
/// hashed name; otherwise `<head>-<hash of raw>`, the head being `raw` through `normal` with
/// what `ok` still refuses replaced by `_`. One-to-one either way: the hash is of `raw`.
fn fit_with(raw: &str, budget: usize, ok: fn(char) -> bool, normal: fn(char) -> char) -> String {
    let clean = raw.len() >= 2 && raw.len() <= budget && raw.chars().all(ok) && !looks_hashed(raw);
    if clean {
        return raw.to_owned();
    }
    let keep = budget.saturating_sub(SUFFIX_LEN);
    let head: String = raw
        .chars()
        .map(normal)
        .map(|c| if ok(c) { c } else { '_' })
        .take(keep)
        .collect();
    format!("{head}-{}", hash_suffix(raw))
}

/// A group's part of IAM policy names and session-tag keys (at most 64 characters): valid in
/// both (`[a-z0-9_+=.@-]`) and lowercase, because AWS compares both case-insensitively, so
/// "Science" and "science" must not meet. One-to-one, like session names.
pub fn group_name(group: &str) -> String {
    fn ok(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || "_+=.@-".contains(c)
    }
    fit_with(group, MAX, ok, |c| c.to_ascii_lowercase())
}

/// `RoleSessionName`: `<user>@<app>`, with the user part shortened as needed. `app_name` is at
/// most 32 characters (validated), which leaves the user part at least 31.
pub fn role_session_name(user_id: &str, app_name: &str) -> String {
    let budget = MAX.saturating_sub(app_name.len() + 1);
    format!("{}@{app_name}", fit(user_id, budget))
}

/// `RoleSessionName` of a user acting through a platform (`[[platforms]]`):
/// `<user>@<app>+<platform>`, so that CloudTrail and S3's access logs say who acted for whom.
/// The configuration keeps `app_name` and the platform's name to 40 characters together,
/// which leaves the user part at least 22. A session name without a platform never has a
/// `+` after its last `@` (app names cannot hold one), so the two kinds cannot meet.
pub fn role_session_name_via(user_id: &str, app_name: &str, via: Option<&str>) -> String {
    let Some(platform) = via else {
        return role_session_name(user_id, app_name);
    };
    let budget = MAX.saturating_sub(app_name.len() + platform.len() + 2);
    format!("{}@{app_name}+{platform}", fit(user_id, budget))
}

/// `SourceIdentity`: the user id itself when it is valid and unambiguous. It can never start
/// with `aws:` because `:` is not an allowed character.
pub fn source_identity(user_id: &str) -> String {
    fit(user_id, MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn valid(name: &str) -> bool {
        (2..=64).contains(&name.len()) && name.chars().all(allowed) && !name.starts_with("aws:")
    }

    #[test]
    fn a_platforms_sessions_name_it_and_stay_valid() {
        assert_eq!(
            role_session_name_via("alice", "stsvend", Some("hub")),
            "alice@stsvend+hub"
        );
        assert_eq!(
            role_session_name_via("alice", "stsvend", None),
            role_session_name("alice", "stsvend")
        );
        let app = "a".repeat(16);
        let platform = "p".repeat(24);
        for user in ["x".repeat(200), "alice".into(), "ü|ñ".into()] {
            let name = role_session_name_via(&user, &app, Some(&platform));
            assert!(valid(&name), "{name}");
            assert!(name.ends_with(&format!("@{app}+{platform}")), "{name}");
        }
    }

    #[test]
    fn clean_ids_pass_unchanged() {
        assert_eq!(role_session_name("alice", "stsvend"), "alice@stsvend");
        assert_eq!(
            source_identity("alice.smith@example.org"),
            "alice.smith@example.org"
        );
    }

    #[test]
    fn the_reported_collision_is_gone() {
        let app = "stsvend-local";
        let first = role_session_name("auth0|5f7c8ec7c33c", app);
        let as_id = first.strip_suffix(&format!("@{app}")).unwrap_or_default();
        assert_ne!(role_session_name(as_id, app), first);
        assert_ne!(role_session_name("auth0_5f7c8ec7c33c-f93b23b6", app), first);
        assert_ne!(
            source_identity(as_id),
            source_identity("auth0|5f7c8ec7c33c")
        );
    }

    #[test]
    fn hostile_ids_become_valid_distinct_names() {
        let hostile = [
            "alice smith",
            "alice/smith",
            "alice\\smith",
            "ålice",
            "用户",
            "a",
            "",
            &"x".repeat(200),
            &format!("{}y", "x".repeat(199)),
            "aws:admin",
            "alice\nsmith",
        ];
        let mut seen = std::collections::HashSet::new();
        for id in hostile {
            let rsn = role_session_name(id, "stsvend-local");
            let si = source_identity(id);
            assert!(valid(&rsn), "{id:?} -> {rsn:?}");
            assert!(valid(&si), "{id:?} -> {si:?}");
            assert!(rsn.ends_with("@stsvend-local"), "{rsn}");
            assert!(seen.insert(rsn.clone()), "collision for {id:?}: {rsn}");
        }
        assert_ne!(source_identity("a b"), source_identity("a/b"));
    }

    /// xorshift64*: a small deterministic generator, so a failure names a reproducible seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// One random id: clean, hostile, or shaped like a hashed name (including real outputs
    /// of `fit` fed back in as ids, the shape of the reported attack).
    fn random_id(rng: &mut Rng, earlier: &[String]) -> String {
        const CLEAN: &[u8] = b"abcdefABCDEF0123456789_+=,.@-";
        const HOSTILE: &[char] = &[
            '|', ' ', '/', '\\', ':', '\n', '\0', 'é', '用', '😀', '"', '\'', '*', '%', '?',
        ];
        let len = 1 + rng.below(300);
        let mut id: String = (0..len)
            .map(|_| match rng.below(10) {
                0 => HOSTILE[rng.below(HOSTILE.len())],
                _ => CLEAN[rng.below(CLEAN.len())] as char,
            })
            .collect();
        match rng.below(6) {
            // Shaped like a hashed name: `-` and 16 hex digits at the end.
            0 => {
                id.truncate(id.char_indices().nth(40).map_or(id.len(), |(i, _)| i));
                id.push('-');
                for _ in 0..HASH_HEX {
                    id.push(char::from(b"0123456789abcdef"[rng.below(16)]));
                }
            }
            // Another id's name, fed back in as an id.
            1 if !earlier.is_empty() => {
                let other = &earlier[rng.below(earlier.len())];
                id = fit(other, MAX - "stsvend-local".len() - 1);
            }
            _ => {}
        }
        id
    }

    #[test]
    fn a_million_random_ids_never_share_a_name_and_every_name_is_valid() {
        let app = "stsvend-local";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut by_rsn: HashMap<String, String> = HashMap::with_capacity(1_000_000);
        let mut by_si: HashMap<String, String> = HashMap::with_capacity(1_000_000);
        let mut recent: Vec<String> = Vec::with_capacity(1024);
        for i in 0..1_000_000 {
            let id = random_id(&mut rng, &recent);
            let rsn = role_session_name(&id, app);
            let si = source_identity(&id);
            assert!(valid(&rsn), "{id:?} -> {rsn:?}");
            assert!(valid(&si), "{id:?} -> {si:?}");
            if let Some(other) = by_rsn.insert(rsn.clone(), id.clone()) {
                assert_eq!(other, id, "{other:?} and {id:?} share {rsn:?}");
            }
            if let Some(other) = by_si.insert(si.clone(), id.clone()) {
                assert_eq!(other, id, "{other:?} and {id:?} share {si:?}");
            }
            if recent.len() < 1024 {
                recent.push(id);
            } else {
                recent[i % 1024] = id;
            }
        }
    }
}
