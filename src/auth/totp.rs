//! Time-based one-time passwords, RFC 6238 over RFC 4226: HMAC-SHA1 (the
//! algorithm every authenticator app implements), 6 digits, 30-second
//! steps, one step of drift either way. The RFC test vectors below are the
//! proof that this is the algorithm the apps compute.

use aws_lc_rs::hmac;
use time::OffsetDateTime;

/// Seconds per step.
pub const STEP_SECONDS: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Bytes of a generated secret: 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
/// Steps accepted on either side of the current one (clock drift).
const DRIFT_STEPS: i64 = 1;

/// The RFC 4226 HOTP value of `key` at `counter`, `digits` long.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    // SHA-1 is what RFC 6238 authenticators compute; as an HMAC it is sound.
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) & 0x7fff_ffff)
        .unwrap_or(0);
    word % 10u32.pow(digits)
}

/// The step `now` falls in.
pub fn step_at(now: OffsetDateTime) -> i64 {
    now.unix_timestamp().div_euclid(STEP_SECONDS)
}

/// The code of `key` for `step`, as the six digits an app shows.
pub fn code_at(key: &[u8], step: i64) -> String {
    let counter = u64::try_from(step).unwrap_or(0);
    format!("{:06}", hotp(key, counter, DIGITS))
}

/// The step whose code `code` is, among the current step and one either
/// side, if it is newer than `last_accepted` (a code is accepted once, and
/// never one older than a code already accepted). Compared in constant time.
pub fn accepted_step(
    key: &[u8],
    code: &str,
    now: OffsetDateTime,
    last_accepted: Option<i64>,
) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    let mut found = None;
    for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
        let expected = code_at(key, step);
        let newer = last_accepted.is_none_or(|last| step > last);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && newer && step >= 0 {
            found = Some(step);
        }
    }
    found
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random secret.
pub fn generate_secret() -> Result<Vec<u8>, getrandom::Error> {
    let mut secret = vec![0u8; SECRET_BYTES];
    getrandom::fill(&mut secret)?;
    Ok(secret)
}

/// The secret as apps take it: base32 (RFC 4648), no padding.
pub fn encode_secret(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The `otpauth://` URI of Google's Key Uri Format, which authenticator
/// apps read from the QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let issuer_enc = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer_enc}:{account}?secret={secret}&issuer={issuer_enc}\
         &algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        account = percent_encode(account),
        secret = encode_secret(secret),
    )
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An SVG image of a QR code holding `text`; `None` if it cannot hold it.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    /// RFC 4226 appendix D: HOTP values for counters 0 to 9.
    #[test]
    fn rfc4226_hotp_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, value) in expected.into_iter().enumerate() {
            assert_eq!(hotp(RFC_SECRET, counter as u64, 6), value, "{counter}");
        }
    }

    /// RFC 6238 appendix B, the SHA1 rows (8 digits there).
    #[test]
    fn rfc6238_sha1_vectors() {
        for (time, value) in [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            let now = OffsetDateTime::from_unix_timestamp(time).unwrap();
            let counter = step_at(now) as u64;
            assert_eq!(hotp(RFC_SECRET, counter, 8), value, "{time}");
            // The 6-digit code is the same value's last six digits.
            assert_eq!(
                code_at(RFC_SECRET, step_at(now)),
                format!("{:06}", value % 1_000_000)
            );
        }
    }

    #[test]
    fn one_step_of_drift_either_way_and_never_a_step_twice() {
        let now = OffsetDateTime::from_unix_timestamp(1_900_000_015).unwrap();
        let step = step_at(now);
        for drift in [-1, 0, 1] {
            let code = code_at(RFC_SECRET, step + drift);
            assert_eq!(
                accepted_step(RFC_SECRET, &code, now, None),
                Some(step + drift)
            );
        }
        for far in [-2, 2] {
            let code = code_at(RFC_SECRET, step + far);
            assert_eq!(accepted_step(RFC_SECRET, &code, now, None), None);
        }
        let code = code_at(RFC_SECRET, step);
        assert_eq!(accepted_step(RFC_SECRET, &code, now, Some(step)), None);
        let older = code_at(RFC_SECRET, step - 1);
        assert_eq!(accepted_step(RFC_SECRET, &older, now, Some(step)), None);
        assert_eq!(accepted_step(RFC_SECRET, "12345", now, None), None);
        assert_eq!(accepted_step(RFC_SECRET, "12345a", now, None), None);
    }

    /// What a phone sees: the SVG rendered to pixels and read by a QR decoder.
    fn decode_svg_qr(svg: &str) -> String {
        let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default()).unwrap();
        let size = tree.size().to_int_size();
        let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::default(),
            &mut pixmap.as_mut(),
        );
        let (width, height) = (size.width() as usize, size.height() as usize);
        let pixels = pixmap.data();
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
            let at = (y * width + x) * 4;
            // Transparent counts as the white paper behind the image.
            if pixels[at + 3] < 128 {
                255
            } else {
                pixels[at]
            }
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_qr_code_reads_back_as_the_uri() {
        let uri = otpauth_uri("secure-api", "ann_o'neil", &generate_secret().unwrap());
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{svg}");
        assert_eq!(decode_svg_qr(&svg), uri);
    }

    #[test]
    fn the_uri_follows_the_key_uri_format() {
        let uri = otpauth_uri("secure api", "ann", RFC_SECRET);
        assert_eq!(
            uri,
            "otpauth://totp/secure%20api:ann?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=secure%20api&algorithm=SHA1&digits=6&period=30"
        );
    }
}
