//! Who may join which room.

/// Access policy for joins.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Development: anyone may join any room without a token.
    Dev,
    /// Production: joins need a valid token (not configured: every join is refused).
    Locked,
}

impl Auth {
    /// Checks a join; the error is the reason shown to the client.
    pub fn check_join(&self, token: Option<&str>, _room: &str) -> Result<(), String> {
        match self {
            Auth::Dev => Ok(()),
            Auth::Locked => match token {
                None => Err("a token is required to join".into()),
                Some(_) => Err("token verification is not configured on this node".into()),
            },
        }
    }
}
