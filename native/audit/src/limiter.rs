//! `SearchLimiter`: upstream's `SearchEventsLimiter`, a token bucket (the core's) in front of
//! the searches of any [`AuditLog`]; events pass through to the wrapped log untouched.

use std::sync::{Arc, Mutex};

use tapelog_core::AuditEvent;
use tapelog_core::audit::limiter::{LimiterConfig, TokenBucket};

use super::{AuditError, AuditLog, SearchPage, SearchQuery, SessionQuery};
use crate::emit::{EmitError, Emitter};

/// Where the limiter reads the time.
pub use crate::emit::Clock as LimiterClock;

/// Refuses searches over the rate ([`AuditError::RateLimited`], transient): each search takes
/// a token; `refill_amount` tokens come back every `refill_time`, up to `burst`.
pub struct SearchLimiter<L> {
    inner: L,
    bucket: Mutex<TokenBucket>,
    clock: LimiterClock,
}

impl<L: AuditLog> SearchLimiter<L> {
    /// A limiter on the wall clock.
    pub fn new(inner: L, config: LimiterConfig) -> Result<SearchLimiter<L>, AuditError> {
        SearchLimiter::with_clock(inner, config, Arc::new(crate::emit::system_clock))
    }

    /// A limiter on another clock (tests).
    pub fn with_clock(
        inner: L,
        config: LimiterConfig,
        clock: LimiterClock,
    ) -> Result<SearchLimiter<L>, AuditError> {
        let bucket = TokenBucket::new(config, clock())?;
        Ok(SearchLimiter {
            inner,
            bucket: Mutex::new(bucket),
            clock,
        })
    }

    /// The wrapped log.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Takes a token as a search does, for reads that are not [`AuditLog`] searches (the
    /// feed): [`AuditError::RateLimited`] when none is left.
    pub fn take_token(&self) -> Result<(), AuditError> {
        self.take()
    }

    fn take(&self) -> Result<(), AuditError> {
        let now = (self.clock)();
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        if b.try_take(now) {
            Ok(())
        } else {
            Err(AuditError::RateLimited)
        }
    }
}

impl<L: AuditLog> AuditLog for SearchLimiter<L> {
    async fn search_events(&self, query: SearchQuery) -> Result<SearchPage, AuditError> {
        self.take()?;
        self.inner.search_events(query).await
    }

    async fn search_session_events(&self, query: SessionQuery) -> Result<SearchPage, AuditError> {
        self.take()?;
        self.inner.search_session_events(query).await
    }
}

impl<L: AuditLog + Emitter> Emitter for SearchLimiter<L> {
    async fn emit(&self, event: AuditEvent) -> Result<(), EmitError> {
        self.inner.emit(event).await
    }
}
