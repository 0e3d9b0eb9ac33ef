//! API tokens: roles, hashed storage, constant-time lookup, and rate limits per token and per
//! client address (the E-stop is exempt from both: [`TokenRegistry::identify`]).
//!
//! A request carries `Authorization: Bearer <token>`. Only the SHA-256 of each token is
//! configured ([`TokenConfig::sha256_hex`]); the presented token is hashed and compared with
//! **every** configured hash in constant time (no early exit), so neither the position of a
//! match nor the length of a common prefix leaks through timing.
//!
//! # Roles
//!
//! `viewer` < `operator` < `admin`, and `provider` beside them:
//!
//! | role | read | operate (state, e-stop, reset, control modes, site mode), read the audit log | schedules |
//! | --- | --- | --- | --- |
//! | `viewer` | yes | no | read |
//! | `operator` | yes | yes | read, delete |
//! | `provider` | no | no | submit, read, delete |
//! | `admin` | yes | yes | all |

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads telemetry, safety state, control modes, schedules.
    Viewer,
    /// A viewer that may also change the state, e-stop, reset and set control modes.
    Operator,
    /// May submit (and read/delete) provider schedules only.
    Provider,
    /// Everything.
    Admin,
}

impl Role {
    /// The name used in configuration and audit (`viewer`, `operator`, `provider`, `admin`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Provider => "provider",
            Self::Admin => "admin",
        }
    }

    /// Whether this role may do `access`.
    #[must_use]
    pub const fn allows(self, access: Access) -> bool {
        match (self, access) {
            (Self::Admin, _) => true,
            (Self::Viewer, Access::Read | Access::ScheduleRead) => true,
            (
                Self::Viewer,
                Access::Operate
                | Access::EmergencyStop
                | Access::AuditRead
                | Access::ScheduleSubmit
                | Access::ScheduleDelete
                | Access::GridCommit,
            ) => false,
            (
                Self::Operator,
                Access::Read
                | Access::Operate
                | Access::EmergencyStop
                | Access::AuditRead
                | Access::ScheduleRead
                | Access::ScheduleDelete
                | Access::GridCommit,
            ) => true,
            (Self::Operator, Access::ScheduleSubmit) => false,
            (
                Self::Provider,
                Access::ScheduleSubmit | Access::ScheduleRead | Access::ScheduleDelete | Access::GridCommit,
            ) => true,
            (Self::Provider, Access::Read | Access::Operate | Access::EmergencyStop | Access::AuditRead) => {
                false
            }
        }
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read telemetry, history, safety, control modes.
    Read,
    /// Change state, reset, control modes, site mode.
    Operate,
    /// The software E-stop: the roles of `Operate`, but never rate-limited.
    EmergencyStop,
    /// Read the audit log (operator, admin).
    AuditRead,
    /// Submit a provider schedule.
    ScheduleSubmit,
    /// Read a schedule.
    ScheduleRead,
    /// Delete a schedule.
    ScheduleDelete,
    /// Commit the site to grid services (`PUT /api/v1/grid-services`): operator, provider.
    GridCommit,
}

/// One configured token (serde: `{"name": "ops", "role": "operator", "sha256_hex": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenConfig {
    /// Who holds it (appears in the audit log).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// SHA-256 of the token's UTF-8 bytes, 64 hex digits.
    pub sha256_hex: String,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Principal {
    /// The audit actor string: `"name (role)"`.
    #[must_use]
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.role.as_str())
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token (Authorization: Bearer <token>)")]
    Missing,
    /// The token is not known.
    #[error("invalid token")]
    Invalid,
    /// The token's rate limit is exhausted.
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until one request is allowed again (≥ 1).
        retry_after_secs: u64,
    },
}

/// A configuration error of the token list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token '{name}': {message}")]
pub struct TokenConfigError {
    /// The token's name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// A token bucket's parameters: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Bucket size (≥ 1).
    pub burst: f64,
    /// Refill rate in requests per second (> 0).
    pub per_second: f64,
}

impl Default for RateLimit {
    /// 20 requests at once, 5 per second sustained.
    fn default() -> Self {
        Self { burst: 20.0, per_second: 5.0 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The default limit per client address: 60 requests at once, 20 per second sustained (more
/// than one token's, since several clients may share an address behind NAT).
pub const DEFAULT_ADDRESS_LIMIT: RateLimit = RateLimit { burst: 60.0, per_second: 20.0 };

/// At most this many client addresses are tracked; see [`TokenRegistry::charge_address`].
pub const MAX_TRACKED_ADDRESSES: usize = 4096;

/// The configured tokens and their rate-limit buckets, per token and per client address.
#[derive(Debug)]
pub struct TokenRegistry {
    tokens: Vec<([u8; 32], Principal)>,
    limit: RateLimit,
    buckets: Mutex<HashMap<usize, Bucket>>,
    address_limit: RateLimit,
    address_buckets: Mutex<HashMap<std::net::IpAddr, Bucket>>,
}

fn sane(limit: RateLimit) -> RateLimit {
    RateLimit {
        burst: if limit.burst.is_finite() && limit.burst >= 1.0 { limit.burst } else { 1.0 },
        per_second: if limit.per_second.is_finite() && limit.per_second > 0.0 {
            limit.per_second
        } else {
            1.0
        },
    }
}

/// Charge one request to `b` (created full); the wait until one is allowed if none is left.
fn take(b: &mut Bucket, limit: RateLimit, now: Instant) -> Result<(), AuthError> {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    b.tokens = (b.tokens + elapsed * limit.per_second).min(limit.burst);
    b.at = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        return Ok(());
    }
    let wait = Duration::try_from_secs_f64((1.0 - b.tokens) / limit.per_second).unwrap_or(Duration::MAX);
    let secs = wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1);
    Err(AuthError::RateLimited { retry_after_secs: secs })
}

/// SHA-256 of a token, as 64 lowercase hex digits (what [`TokenConfig::sha256_hex`] holds).
#[must_use]
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: 32 bytes from the operating system, as 64 hex digits. The gateway
/// prints it once (`admin token: <token>`) and stores only [`hash_token`] of it.
///
/// # Errors
/// The OS random source failed.
pub fn generate_admin_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

impl TokenRegistry {
    /// A registry of `tokens`, each limited by `limit`.
    ///
    /// # Errors
    /// [`TokenConfigError`] for a hash that is not 64 hex digits, an empty or duplicate name,
    /// or a duplicate hash.
    pub fn new(tokens: &[TokenConfig], limit: RateLimit) -> Result<Self, TokenConfigError> {
        let mut out: Vec<([u8; 32], Principal)> = Vec::with_capacity(tokens.len());
        for t in tokens {
            let err = |m: &str| TokenConfigError { name: t.name.clone(), message: m.to_owned() };
            if t.name.trim().is_empty() {
                return Err(err("empty name"));
            }
            let mut h = [0u8; 32];
            hex::decode_to_slice(t.sha256_hex.trim(), &mut h)
                .map_err(|_| err("sha256_hex must be 64 hex digits"))?;
            if out.iter().any(|(oh, p)| *oh == h || p.name == t.name) {
                return Err(err("duplicate name or token hash"));
            }
            out.push((h, Principal { name: t.name.clone(), role: t.role }));
        }
        Ok(Self {
            tokens: out,
            limit: sane(limit),
            buckets: Mutex::new(HashMap::new()),
            address_limit: DEFAULT_ADDRESS_LIMIT,
            address_buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The same registry with `limit` per client address instead of
    /// [`DEFAULT_ADDRESS_LIMIT`].
    #[must_use]
    pub fn with_address_limit(mut self, limit: RateLimit) -> Self {
        self.address_limit = sane(limit);
        self
    }

    /// Charge one request to the bucket of client address `ip`.
    ///
    /// At most [`MAX_TRACKED_ADDRESSES`] are tracked: when the table is full, addresses whose
    /// bucket has refilled are forgotten, and if that frees nothing the table is cleared. That
    /// fails open (a flood from many addresses resets the per-address limit) rather than
    /// refusing every new address; the per-token limit still applies.
    ///
    /// # Errors
    /// [`AuthError::RateLimited`].
    pub fn charge_address(&self, ip: std::net::IpAddr, now: Instant) -> Result<(), AuthError> {
        // Plain numbers; a poisoned lock still holds usable buckets.
        let mut buckets = self.address_buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&ip) {
            let refill =
                Duration::try_from_secs_f64(self.address_limit.burst / self.address_limit.per_second)
                    .unwrap_or(Duration::MAX);
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < refill);
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                buckets.clear();
            }
        }
        let limit = self.address_limit;
        let b = buckets.entry(ip).or_insert(Bucket { tokens: limit.burst, at: now });
        take(b, limit, now)
    }

    /// Who holds the token in an `Authorization` header value, **without** charging its rate
    /// limit (the E-stop only; every other endpoint uses [`TokenRegistry::authenticate`]).
    ///
    /// # Errors
    /// [`AuthError::Missing`] or [`AuthError::Invalid`].
    pub fn identify(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        self.lookup(authorization).map(|(_, p)| p)
    }

    fn lookup(&self, authorization: Option<&str>) -> Result<(usize, Principal), AuthError> {
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<usize> = None;
        for (i, (h, _)) in self.tokens.iter().enumerate() {
            // Every hash is compared; the match is recorded without branching out early.
            if bool::from(h.ct_eq(&presented)) {
                found = Some(i);
            }
        }
        let i = found.ok_or(AuthError::Invalid)?;
        let principal = self.tokens.get(i).map(|(_, p)| p.clone()).ok_or(AuthError::Invalid)?;
        Ok((i, principal))
    }

    /// Authenticate the value of an `Authorization` header (or its absence) at `now`, and
    /// charge one request to the token's bucket.
    ///
    /// # Errors
    /// [`AuthError::Missing`], [`AuthError::Invalid`] or [`AuthError::RateLimited`].
    pub fn authenticate(&self, authorization: Option<&str>, now: Instant) -> Result<Principal, AuthError> {
        let (i, principal) = self.lookup(authorization)?;
        self.charge(i, now)?;
        Ok(principal)
    }

    fn charge(&self, i: usize, now: Instant) -> Result<(), AuthError> {
        // A poisoned lock only means another request panicked mid-update; the bucket data is
        // still plain numbers, so keep limiting with it.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = buckets.entry(i).or_insert(Bucket { tokens: self.limit.burst, at: now });
        take(b, self.limit, now)
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap or panic is a failed test with its message.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn reg(limit: RateLimit) -> TokenRegistry {
        TokenRegistry::new(
            &[
                TokenConfig { name: "v".into(), role: Role::Viewer, sha256_hex: hash_token("tv") },
                TokenConfig { name: "a".into(), role: Role::Admin, sha256_hex: hash_token("ta") },
            ],
            limit,
        )
        .unwrap()
    }

    #[test]
    fn looks_up_by_hash_and_refuses_unknown_or_missing() {
        let r = reg(RateLimit::default());
        let now = Instant::now();
        assert_eq!(r.authenticate(Some("Bearer ta"), now).unwrap().role, Role::Admin);
        assert_eq!(r.authenticate(Some("bearer tv"), now).unwrap().name, "v");
        assert_eq!(r.authenticate(Some("Bearer nope"), now), Err(AuthError::Invalid));
        assert_eq!(r.authenticate(Some("Basic ta"), now), Err(AuthError::Missing));
        assert_eq!(r.authenticate(None, now), Err(AuthError::Missing));
    }

    #[test]
    fn rate_limit_refills() {
        let r = reg(RateLimit { burst: 2.0, per_second: 0.5 });
        let t0 = Instant::now();
        assert!(r.authenticate(Some("Bearer tv"), t0).is_ok());
        assert!(r.authenticate(Some("Bearer tv"), t0).is_ok());
        assert_eq!(
            r.authenticate(Some("Bearer tv"), t0),
            Err(AuthError::RateLimited { retry_after_secs: 2 })
        );
        // Another token has its own bucket.
        assert!(r.authenticate(Some("Bearer ta"), t0).is_ok());
        assert!(r.authenticate(Some("Bearer tv"), t0 + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn identify_does_not_charge_and_addresses_have_their_own_buckets() {
        let r = reg(RateLimit { burst: 1.0, per_second: 0.001 })
            .with_address_limit(RateLimit { burst: 2.0, per_second: 0.001 });
        let t0 = Instant::now();
        assert!(r.authenticate(Some("Bearer tv"), t0).is_ok());
        assert!(r.authenticate(Some("Bearer tv"), t0).is_err());
        for _ in 0..100 {
            assert_eq!(r.identify(Some("Bearer tv")).unwrap().name, "v");
        }
        assert_eq!(r.identify(Some("Bearer x")), Err(AuthError::Invalid));
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        assert!(r.charge_address(a, t0).is_ok());
        assert!(r.charge_address(a, t0).is_ok());
        assert!(matches!(r.charge_address(a, t0), Err(AuthError::RateLimited { .. })));
        assert!(r.charge_address(b, t0).is_ok());
    }

    #[test]
    fn config_errors_and_generated_tokens() {
        let bad = TokenConfig { name: "x".into(), role: Role::Viewer, sha256_hex: "zz".into() };
        assert!(TokenRegistry::new(&[bad], RateLimit::default()).is_err());
        let t = generate_admin_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, generate_admin_token().unwrap());
        assert_eq!(hash_token(&t).len(), 64);
    }

    #[test]
    fn roles() {
        assert!(Role::Admin.allows(Access::ScheduleSubmit));
        assert!(!Role::Operator.allows(Access::ScheduleSubmit));
        assert!(!Role::Provider.allows(Access::Read));
        assert!(!Role::Viewer.allows(Access::Operate));
        assert!(Role::Operator.allows(Access::Operate));
    }
}
