//! One Redis connection per thread, reconnected on demand no more often than a capped
//! backoff allows.

use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};

/// The first wait after a failure; each failure in a row doubles it, up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long to wait before the next try after failures in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(BACKOFF_FIRST)
    }
}

impl Backoff {
    /// The wait before the next try.
    pub(crate) fn delay(self) -> Duration {
        self.0
    }

    /// Another failure: returns the wait before the next try and doubles the one after.
    fn failed(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        delay
    }
}

/// One connection that reconnects on demand.
pub(crate) struct Redis {
    client: redis::Client,
    connection: Option<Connection>,
    /// How long one command may wait for Redis.
    timeout: Duration,
    next_try: Instant,
    pub(crate) backoff: Backoff,
}

impl Redis {
    pub(crate) fn new(client: redis::Client, timeout: Duration) -> Self {
        Self {
            client,
            connection: None,
            timeout,
            next_try: Instant::now(),
            backoff: Backoff::default(),
        }
    }

    fn get(&mut self) -> RedisResult<&mut Connection> {
        if self.connection.is_none() {
            if Instant::now() < self.next_try {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "Redis unreachable; retrying",
                )));
            }
            match self.connect() {
                Ok(connection) => {
                    self.connection = Some(connection);
                    self.backoff = Backoff::default();
                }
                Err(error) => {
                    self.failed();
                    return Err(error);
                }
            }
        }
        Ok(self.connection.as_mut().expect("connected just above"))
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Drops the connection after an error and waits a little longer before the next try.
    pub(crate) fn failed(&mut self) {
        self.connection = None;
        self.next_try = Instant::now() + self.backoff.failed();
    }

    /// Runs `f` on the connection; an I/O-level error drops it.
    pub(crate) fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let connection = self.get()?;
        let result = f(connection);
        if let Err(error) = &result
            && (error.is_io_error()
                || error.is_connection_dropped()
                || error.is_timeout()
                || error.is_connection_refusal())
        {
            self.failed();
        }
        result
    }
}

/// Why the shared log is unavailable, as members are told (`503`).
pub(crate) fn describe(error: &redis::RedisError) -> String {
    format!("the shared room's Redis is unavailable ({error})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..7).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(), BACKOFF_MAX);
    }

    #[test]
    fn an_unavailable_log_says_why() {
        let error = redis::RedisError::from((redis::ErrorKind::Io, "refused"));
        let text = describe(&error);
        assert!(
            text.starts_with("the shared room's Redis is unavailable ("),
            "{text}"
        );
        assert!(text.contains("refused"), "{text}");
    }
}
