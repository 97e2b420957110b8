//! Bearer tokens of the HTTP endpoints (admin, push): given inline or read
//! from a file (a mounted Secret), checked once at start, so a weak or
//! unusable token stops the gateway instead of locking out its clients.

use std::path::Path;

/// Short tokens are guessable; 16 characters is a floor, not a recommendation.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token is refused. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error("the token must be at least {MIN_TOKEN_LEN} characters")]
    TooShort,
    #[error("the token must be visible ASCII without spaces (an HTTP header value)")]
    NotVisibleAscii,
}

/// Checks a token given inline.
pub fn check(token: &str) -> Result<(), TokenError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotVisibleAscii);
    }
    Ok(())
}

/// Reads and checks the token in `path` (surrounding whitespace, such as a
/// final newline, is not part of it).
pub fn read(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenError::Unreadable(e.to_string()))?;
    let token = text.trim();
    check(token)?;
    Ok(token.to_owned())
}
