//! Bearer-token authentication for requests that change something.

use axum::http::{HeaderMap, StatusCode, header};

use super::ApiError;

/// The API token. Compared in constant time, never logged after start.
pub struct Token(String);

impl Token {
    /// `SLUICE_API_TOKEN` if set, else the contents of the file named by
    /// `SLUICE_API_TOKEN_FILE` (e.g. a mounted secret), else a fresh random
    /// token (and `true`: the caller prints it once so the operator can use it).
    pub fn from_env_or_generate() -> anyhow::Result<(Token, bool)> {
        let from_file = || -> anyhow::Result<Option<String>> {
            let Ok(path) = std::env::var("SLUICE_API_TOKEN_FILE") else { return Ok(None) };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read SLUICE_API_TOKEN_FILE {path}: {e}"))?;
            Ok(Some(text.trim().to_string()))
        };
        let configured = match std::env::var("SLUICE_API_TOKEN") {
            Ok(token) => Some(token),
            Err(_) => from_file()?,
        };
        match configured {
            Some(token) if token.len() >= 16 => Ok((Token(token), false)),
            Some(_) => anyhow::bail!(
                "the API token (SLUICE_API_TOKEN or SLUICE_API_TOKEN_FILE) must be at least 16 characters"
            ),
            None => {
                let mut bytes = [0u8; 24];
                getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
                Ok((Token(hex::encode(bytes)), true))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks `Authorization: Bearer <token>`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "missing `Authorization: Bearer <token>` header")
            })?;
        if constant_time_eq(presented.trim().as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "invalid API token"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let token = Token("0123456789abcdef".into());
        let mut headers = HeaderMap::new();
        assert_eq!(token.check(&headers).unwrap_err().status, StatusCode::UNAUTHORIZED);
        headers.insert(header::AUTHORIZATION, "Bearer 0123456789abcdeX".parse().unwrap());
        assert_eq!(token.check(&headers).unwrap_err().status, StatusCode::FORBIDDEN);
        headers.insert(header::AUTHORIZATION, "Basic 0123456789abcdef".parse().unwrap());
        assert!(token.check(&headers).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer 0123456789abcdef".parse().unwrap());
        assert!(token.check(&headers).is_ok());
    }
}
