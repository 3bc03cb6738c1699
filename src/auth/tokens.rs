//! Access and refresh tokens: HS256 JWTs with the algorithm pinned, the
//! header `typ` and the `type` claim checked (so one kind never passes for the
//! other), `iss`/`aud` checked, and expiry checked against the clock passed in
//! (with at most 60 s of leeway). Headers that point at other keys (`jwk`,
//! `jku`, `x5u`, `x5c`) are never consulted: the only key is ours.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::secret::SecretBytes;

pub const ISSUER: &str = "secure-api";
pub const AUDIENCE: &str = "secure-api";
const ACCESS_TYP: &str = "at+jwt";
const REFRESH_TYP: &str = "rt+jwt";
const LEEWAY_SECS: i64 = 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub role: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// The user's token version when issued; a bump rejects the token.
    pub ver: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub sub: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// The login this token belongs to.
    pub fam: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed or its signature is wrong")]
    Invalid,
    #[error("token is of the wrong kind")]
    WrongKind,
    #[error("token has expired")]
    Expired,
}

/// A freshly signed access token.
#[derive(Debug)]
pub struct IssuedAccess {
    pub token: String,
    pub expires_in: i64,
}

pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
}

impl TokenSigner {
    pub fn new(key: &SecretBytes, access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub", "jti"]);
        // Expiry is checked against the injected clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            encoding: EncodingKey::from_secret(key.expose()),
            decoding: DecodingKey::from_secret(key.expose()),
            validation,
            access_ttl,
        }
    }

    pub fn issue_access(
        &self,
        user_id: &str,
        role: &str,
        token_version: i64,
        now: OffsetDateTime,
    ) -> Result<IssuedAccess, jsonwebtoken::errors::Error> {
        let iat = now.unix_timestamp();
        let claims = AccessClaims {
            sub: user_id.to_owned(),
            role: role.to_owned(),
            kind: "access".to_owned(),
            iat,
            exp: iat + self.access_ttl.whole_seconds(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            ver: token_version,
        };
        let token = jsonwebtoken::encode(&header(ACCESS_TYP), &claims, &self.encoding)?;
        Ok(IssuedAccess {
            token,
            expires_in: self.access_ttl.whole_seconds(),
        })
    }

    pub fn issue_refresh(
        &self,
        user_id: &str,
        family_id: &str,
        jti: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = RefreshClaims {
            sub: user_id.to_owned(),
            kind: "refresh".to_owned(),
            iat: now.unix_timestamp(),
            exp: expires_at.unix_timestamp(),
            jti: jti.to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            fam: family_id.to_owned(),
        };
        jsonwebtoken::encode(&header(REFRESH_TYP), &claims, &self.encoding)
    }

    pub fn verify_access(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, TokenError> {
        let claims: AccessClaims = self.decode(token, ACCESS_TYP)?;
        if claims.kind != "access" {
            return Err(TokenError::WrongKind);
        }
        check_expiry(claims.exp, now)?;
        Ok(claims)
    }

    /// `None` for `now` skips the expiry check (logout accepts an expired token).
    pub fn verify_refresh(
        &self,
        token: &str,
        now: Option<OffsetDateTime>,
    ) -> Result<RefreshClaims, TokenError> {
        let claims: RefreshClaims = self.decode(token, REFRESH_TYP)?;
        if claims.kind != "refresh" {
            return Err(TokenError::WrongKind);
        }
        if let Some(now) = now {
            check_expiry(claims.exp, now)?;
        }
        Ok(claims)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
    ) -> Result<T, TokenError> {
        let data = jsonwebtoken::decode::<T>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.header.typ.as_deref() != Some(typ) {
            return Err(TokenError::WrongKind);
        }
        Ok(data.claims)
    }
}

fn header(typ: &str) -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(typ.to_owned());
    header
}

fn check_expiry(exp: i64, now: OffsetDateTime) -> Result<(), TokenError> {
    if now.unix_timestamp() > exp.saturating_add(LEEWAY_SECS) {
        Err(TokenError::Expired)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(&SecretBytes::new(vec![7u8; 32]), Duration::minutes(15))
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn access_tokens_round_trip_and_expire_after_the_leeway() {
        let signer = signer();
        let issued = signer.issue_access("u1", "user", 3, now()).unwrap();
        assert_eq!(issued.expires_in, 900);
        let claims = signer.verify_access(&issued.token, now()).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role.as_str(), claims.ver),
            ("u1", "user", 3)
        );
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::HS256);

        let later = now() + Duration::seconds(900 + 60);
        assert!(
            signer.verify_access(&issued.token, later).is_ok(),
            "within leeway"
        );
        let too_late = now() + Duration::seconds(900 + 61);
        assert_eq!(
            signer.verify_access(&issued.token, too_late).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn one_kind_never_passes_for_the_other() {
        let signer = signer();
        let refresh = signer
            .issue_refresh("u1", "fam", "jti", now(), now() + Duration::days(7))
            .unwrap();
        assert!(signer.verify_access(&refresh, now()).is_err());
        let access = signer.issue_access("u1", "user", 0, now()).unwrap().token;
        assert!(signer.verify_refresh(&access, Some(now())).is_err());
        assert!(signer.verify_refresh(&refresh, Some(now())).is_ok());
    }

    #[test]
    fn another_key_or_garbage_is_invalid() {
        let other = TokenSigner::new(&SecretBytes::new(vec![8u8; 32]), Duration::minutes(15));
        let token = other.issue_access("u1", "admin", 0, now()).unwrap().token;
        assert_eq!(
            signer().verify_access(&token, now()).unwrap_err(),
            TokenError::Invalid
        );
        for garbage in ["", "not-a-jwt", "eyJ.eyJ.invalid", "null", "a.b.c.d"] {
            assert!(signer().verify_access(garbage, now()).is_err(), "{garbage}");
        }
    }
}
