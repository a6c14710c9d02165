//! One handler per scheduler message, as mini-redis has one file per
//! command. Each is given the device its message names, found once by
//! [`super::dispatch`].
//!
//! # Layout
//! - [`welcome`]: the attach is answered.
//! - [`grant`]: memory restored, then the gate opened.
//! - [`reserved`]: room made for a holder's growth.
//! - [`drop_lock`]: drain, evict, release.
//! - [`evict`]: memory moved out (also the end of a drop).
//! - [`prepare`]: host room made ahead of an eviction.
//! - [`fetch`]: memory brought back ahead of a grant.
//! - [`notice`]: connection-wide notices, logged.

mod drop_lock;
mod evict;
mod fetch;
mod grant;
mod notice;
mod prepare;
mod reserved;
mod welcome;

pub use drop_lock::drop_lock;
pub use evict::evict;
pub use fetch::fetch;
pub use grant::grant;
pub use notice::notice;
pub use prepare::prepare;
pub use reserved::reserved;
pub use welcome::welcome;
