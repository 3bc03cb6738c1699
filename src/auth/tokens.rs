//! Access and refresh tokens: HS256 JWTs with the algorithm pinned, the
//! header `typ` and the `type` claim checked (so one kind never passes for the
//! other), `iss`/`aud` checked, and expiry checked against the clock passed in
//! (with at most 60 s of leeway). Headers that point at other keys (`jwk`,
//! `jku`, `x5u`, `x5c`) are never consulted: the only key is ours.
//!
//! jsonwebtoken signs. Verification, which runs on every authenticated
//! request, is done here: jsonwebtoken re-derives the HMAC key and parses the
//! claims twice per call (a third of the CPU of a `/users/me` request, by
//! callgrind), while this keeps the keyed HMAC state and parses once, into
//! the claims type, after the signature has been checked in constant time.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::secret::SecretBytes;

pub const ISSUER: &str = "secure-api";
pub const AUDIENCE: &str = "secure-api";
const ACCESS_TYP: &str = "at+jwt";
const REFRESH_TYP: &str = "rt+jwt";
const LEEWAY_SECS: i64 = 60;
/// Far above any token we issue (about 350 bytes); bounds the work a forged
/// one can cause.
const MAX_TOKEN_LEN: usize = 2048;

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
    /// The session (login, refresh family) the token belongs to: ending the
    /// session ends the token.
    pub sid: String,
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
    verification: hmac::Key,
    access_ttl: Duration,
}

/// The JOSE header fields that matter; any others are ignored, except `crit`,
/// which names extensions a verifier must understand (we understand none).
#[derive(Deserialize)]
struct JoseHeader<'a> {
    alg: &'a str,
    #[serde(default)]
    typ: Option<&'a str>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// The claims both kinds share, checked after the type-specific parse.
trait Audience {
    fn issuer_and_audience(&self) -> (&str, &str);
}

impl Audience for AccessClaims {
    fn issuer_and_audience(&self) -> (&str, &str) {
        (&self.iss, &self.aud)
    }
}

impl Audience for RefreshClaims {
    fn issuer_and_audience(&self) -> (&str, &str) {
        (&self.iss, &self.aud)
    }
}

impl TokenSigner {
    pub fn new(key: &SecretBytes, access_ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key.expose()),
            verification: hmac::Key::new(hmac::HMAC_SHA256, key.expose()),
            access_ttl,
        }
    }

    pub fn issue_access(
        &self,
        user_id: &str,
        role: &str,
        token_version: i64,
        session_id: &str,
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
            sid: session_id.to_owned(),
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

    pub fn verify_refresh(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<RefreshClaims, TokenError> {
        let claims = self.verify_refresh_ignoring_expiry(token)?;
        check_expiry(claims.exp, now)?;
        Ok(claims)
    }

    /// A refresh token of ours, expired or not: logout accepts an expired
    /// one, since logging out must always work.
    pub fn verify_refresh_ignoring_expiry(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        let claims: RefreshClaims = self.decode(token, REFRESH_TYP)?;
        if claims.kind != "refresh" {
            return Err(TokenError::WrongKind);
        }
        Ok(claims)
    }

    /// Compact JWS: exactly three base64url parts, `alg` HS256, a valid
    /// signature, then `typ`, then the claims with `iss` and `aud`.
    fn decode<T: serde::de::DeserializeOwned + Audience>(
        &self,
        token: &str,
        typ: &str,
    ) -> Result<T, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, claims) = signing_input.split_once('.').ok_or(TokenError::Invalid)?;
        if claims.contains('.') {
            return Err(TokenError::Invalid);
        }
        let header = base64url(header)?;
        let header: JoseHeader<'_> =
            serde_json::from_slice(&header).map_err(|_| TokenError::Invalid)?;
        if header.alg != "HS256" || header.crit.is_some() {
            return Err(TokenError::Invalid);
        }
        hmac::verify(
            &self.verification,
            signing_input.as_bytes(),
            &base64url(signature)?,
        )
        .map_err(|_| TokenError::Invalid)?;
        if header.typ != Some(typ) {
            return Err(TokenError::WrongKind);
        }
        let claims: T =
            serde_json::from_slice(&base64url(claims)?).map_err(|_| TokenError::Invalid)?;
        if claims.issuer_and_audience() != (ISSUER, AUDIENCE) {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

fn base64url(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Invalid)
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
        let issued = signer.issue_access("u1", "user", 3, "s1", now()).unwrap();
        assert_eq!(issued.expires_in, 900);
        let claims = signer.verify_access(&issued.token, now()).unwrap();
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.role.as_str(),
                claims.ver,
                claims.sid.as_str()
            ),
            ("u1", "user", 3, "s1")
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
        let access = signer
            .issue_access("u1", "user", 0, "s1", now())
            .unwrap()
            .token;
        assert!(signer.verify_refresh(&access, now()).is_err());
        assert!(signer.verify_refresh(&refresh, now()).is_ok());
    }

    #[test]
    fn an_expired_refresh_token_still_names_its_session_for_logout() {
        let signer = signer();
        let refresh = signer
            .issue_refresh("u1", "fam", "jti", now(), now() + Duration::days(7))
            .unwrap();
        let later = now() + Duration::days(8);
        assert_eq!(
            signer.verify_refresh(&refresh, later).unwrap_err(),
            TokenError::Expired
        );
        let claims = signer.verify_refresh_ignoring_expiry(&refresh).unwrap();
        assert_eq!(claims.fam, "fam");
        let access = signer
            .issue_access("u1", "user", 0, "s1", now())
            .unwrap()
            .token;
        assert!(signer.verify_refresh_ignoring_expiry(&access).is_err());
    }

    #[test]
    fn another_key_or_garbage_is_invalid() {
        let other = TokenSigner::new(&SecretBytes::new(vec![8u8; 32]), Duration::minutes(15));
        let token = other
            .issue_access("u1", "admin", 0, "s1", now())
            .unwrap()
            .token;
        assert_eq!(
            signer().verify_access(&token, now()).unwrap_err(),
            TokenError::Invalid
        );
        for garbage in ["", "not-a-jwt", "eyJ.eyJ.invalid", "null", "a.b.c.d"] {
            assert!(signer().verify_access(garbage, now()).is_err(), "{garbage}");
        }
    }

    /// Signs any header and claims with the test key, as a forger who knows
    /// the key could (so only the checks after the signature are tested).
    fn signed(header: &str, claims: &serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        let tag = hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn access_claims() -> serde_json::Value {
        serde_json::json!({
            "sub": "u1", "role": "user", "type": "access", "iat": 1_800_000_000,
            "exp": 1_800_000_900, "jti": "j", "iss": ISSUER, "aud": AUDIENCE, "ver": 0,
            "sid": "s1"
        })
    }

    const GOOD_HEADER: &str = r#"{"alg":"HS256","typ":"at+jwt"}"#;

    #[test]
    fn a_token_signed_with_our_key_still_needs_every_check_to_pass() {
        let signer = signer();
        assert!(
            signer
                .verify_access(&signed(GOOD_HEADER, &access_claims()), now())
                .is_ok()
        );

        for header in [
            r#"{"alg":"HS512","typ":"at+jwt"}"#,
            r#"{"alg":"none","typ":"at+jwt"}"#,
            r#"{"typ":"at+jwt"}"#,
            r#"{"alg":"HS256","typ":"at+jwt","crit":["exp"]}"#,
            "not json",
        ] {
            let token = signed(header, &access_claims());
            assert_eq!(
                signer.verify_access(&token, now()).unwrap_err(),
                TokenError::Invalid,
                "{header}"
            );
        }
        for typ in [r#"{"alg":"HS256"}"#, r#"{"alg":"HS256","typ":"rt+jwt"}"#] {
            let token = signed(typ, &access_claims());
            assert_eq!(
                signer.verify_access(&token, now()).unwrap_err(),
                TokenError::WrongKind,
                "{typ}"
            );
        }
        for (field, value) in [
            ("iss", serde_json::json!("someone-else")),
            ("aud", serde_json::json!("someone-else")),
            ("aud", serde_json::json!([AUDIENCE])),
            ("exp", serde_json::json!("1800000900")),
            ("ver", serde_json::Value::Null),
        ] {
            let mut claims = access_claims();
            claims[field] = value;
            let token = signed(GOOD_HEADER, &claims);
            assert_eq!(
                signer.verify_access(&token, now()).unwrap_err(),
                TokenError::Invalid,
                "{field}"
            );
        }
        for missing in ["sub", "exp", "iss", "aud", "jti", "type", "ver", "sid"] {
            let mut claims = access_claims();
            claims.as_object_mut().unwrap().remove(missing);
            let token = signed(GOOD_HEADER, &claims);
            assert!(
                signer.verify_access(&token, now()).is_err(),
                "without {missing}"
            );
        }
    }

    #[test]
    fn only_the_canonical_three_part_encoding_is_accepted() {
        let signer = signer();
        let token = signed(GOOD_HEADER, &access_claims());
        assert!(signer.verify_access(&token, now()).is_ok());
        let padded = format!("{token}=");
        let four_parts = format!("{token}.e30");
        let (input, signature) = token.rsplit_once('.').unwrap();
        let standard_alphabet =
            format!("{input}.{}", signature.replace('-', "+").replace('_', "/"));
        let oversized = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
        for bad in [
            padded,
            four_parts,
            oversized,
            format!("{input}."),
            format!(".{token}"),
        ] {
            assert_eq!(
                signer.verify_access(&bad, now()).unwrap_err(),
                TokenError::Invalid,
                "{bad}"
            );
        }
        if standard_alphabet != token {
            assert!(signer.verify_access(&standard_alphabet, now()).is_err());
        }
    }
}
