//! STS `RoleSessionName` (`<user>@<app>`) and `SourceIdentity` (`<user>`): 2-64 characters
//! of `[A-Za-z0-9_+=,.@-]`. Other characters are replaced and, whenever anything was replaced
//! or cut, a short hash of the original user id is appended, so two users never share a name.

use sha2::{Digest, Sha256};

const MAX: usize = 64;
const HASH_LEN: usize = 8;

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn short_hash(user_id: &str) -> String {
    Sha256::digest(user_id.as_bytes())
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `user_id` fitted into `budget` characters: unchanged if it already fits and is clean,
/// otherwise sanitised, cut, and suffixed with `-<hash>`.
fn fit(user_id: &str, budget: usize) -> String {
    let clean: String = user_id
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    if clean == user_id && clean.len() <= budget && clean.len() >= 2 {
        return clean;
    }
    let keep = budget.saturating_sub(HASH_LEN + 1);
    let head: String = clean.chars().take(keep).collect();
    format!("{head}-{}", short_hash(user_id))
}

/// `RoleSessionName`: `<user>@<app>`, with the user part shortened as needed.
pub fn role_session_name(user_id: &str, app_name: &str) -> String {
    let budget = MAX.saturating_sub(app_name.len() + 1);
    format!("{}@{app_name}", fit(user_id, budget))
}

/// `SourceIdentity`: the user id itself when it is valid.
pub fn source_identity(user_id: &str) -> String {
    fit(user_id, MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        (2..=64).contains(&name.len()) && name.chars().all(allowed)
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
            assert!(!si.starts_with("aws:"));
            assert!(seen.insert(rsn.clone()), "collision for {id:?}: {rsn}");
        }
        // Same replacement, different originals: still different names.
        assert_ne!(source_identity("a b"), source_identity("a/b"));
    }
}
