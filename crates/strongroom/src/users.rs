//! Users of the built-in login page, declared in the configuration.
//!
//! Passwords people choose are checked with argon2id, on the blocking pool
//! (an argon2 check takes tens of milliseconds by design and must not stall
//! the async workers). An unknown username costs the same as a wrong
//! password, so timing does not tell which usernames exist.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::config::UserConfig;

/// A user as the login page knows it.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub sub: String,
    pub claims: serde_json::Map<String, serde_json::Value>,
    password_hash: String,
}

/// The configured users, by username.
#[derive(Debug, Clone)]
pub struct UserDirectory {
    users: Arc<HashMap<String, User>>,
    /// A hash of a random password, checked when the username is unknown.
    decoy_hash: Arc<String>,
    /// Each argon2id check takes ~19 MiB for its duration: at most one
    /// check per core runs at a time, so a burst of logins queues instead
    /// of multiplying memory (and the CPU could not run more anyway).
    checks: Arc<tokio::sync::Semaphore>,
}

/// Hashes a password with argon2id and a fresh salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl UserDirectory {
    /// Builds the directory; clear-text dev passwords are hashed here so the
    /// check below has one code path. (Validation already refused clear-text
    /// passwords outside dev mode.)
    pub fn new(users: &[UserConfig]) -> Result<UserDirectory, String> {
        let mut map = HashMap::new();
        for u in users {
            let password_hash = match (&u.password_hash, &u.password) {
                (Some(h), _) => h.clone(),
                (None, Some(p)) => hash_password(p)?,
                (None, None) => return Err(format!("user {}: no password", u.username)),
            };
            map.insert(
                u.username.clone(),
                User {
                    username: u.username.clone(),
                    sub: u.sub.clone().unwrap_or_else(|| u.username.clone()),
                    claims: u.claims.clone(),
                    password_hash,
                },
            );
        }
        let decoy = hash_password(&oauth_core::secret::new_secret())?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(UserDirectory {
            users: Arc::new(map),
            decoy_hash: Arc::new(decoy),
            checks: Arc::new(tokio::sync::Semaphore::new(cores)),
        })
    }

    pub fn get_by_sub(&self, sub: &str) -> Option<&User> {
        self.users.values().find(|u| u.sub == sub)
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a username and password on the blocking pool.
    pub async fn authenticate(&self, username: &str, password: &str) -> Option<User> {
        let user = self.users.get(username).cloned();
        let hash = user.as_ref().map_or_else(
            || self.decoy_hash.as_str().to_string(),
            |u| u.password_hash.clone(),
        );
        let password = password.to_string();
        let Ok(_permit) = self.checks.acquire().await else {
            return None;
        };
        let ok = actix_web::web::block(move || verify(&hash, &password))
            .await
            .unwrap_or(false);
        if ok { user } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(username: &str, hash: Option<String>, password: Option<&str>) -> UserConfig {
        UserConfig {
            username: username.into(),
            password_hash: hash,
            password: password.map(str::to_string),
            sub: None,
            claims: Default::default(),
        }
    }

    #[actix_web::test]
    async fn passwords_are_checked_with_argon2() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let dir = UserDirectory::new(&[
            cfg("alice", Some(hash), None),
            cfg("bob", None, Some("dev-password")),
        ])
        .unwrap();
        assert_eq!(
            dir.authenticate("alice", "correct horse")
                .await
                .unwrap()
                .sub,
            "alice"
        );
        assert!(dir.authenticate("alice", "wrong").await.is_none());
        assert!(dir.authenticate("bob", "dev-password").await.is_some());
        assert!(dir.authenticate("mallory", "dev-password").await.is_none());
        assert!(dir.authenticate("", "").await.is_none());
    }
}
