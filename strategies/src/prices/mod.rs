//! Price sources for live economics: day-ahead spot prices fetched from the web, read from a
//! file or pushed through the API, merged into one horizon for the planner.
//!
//! - [`PricePoint`]: a spot price (currency per kWh, no fees or VAT — those are the tariff's)
//!   over `[start, end)`; 15-, 30- and 60-minute points, mixed in one horizon (the European
//!   day-ahead market clears in quarter-hours since October 2025). [`validate_points`] states
//!   the rules.
//! - [`PriceSource`]: one blocking source — [`FileSource`] (CSV, re-read when it changes),
//!   [`AwattarSource`] (aWATTar JSON), [`EntsoeSource`] (ENTSO-E A44 XML), [`PushSource`]
//!   (fed through a shared [`PushHandle`]). The parsers [`parse_price_csv`], [`parse_awattar`]
//!   and [`parse_entsoe`] are public for tests and tools.
//! - [`SourceConfig`]: one `[[economics.prices]]` entry of the site TOML; `build` makes its source.
//! - [`PriceFeed`]: the sources in preference order, polled by the planner thread (never the
//!   control thread: fetches block for up to the HTTP timeouts). It keeps each source's last
//!   good prices through failures, retries with backoff, reports [`FeedStatus`] and
//!   [`FeedEvent`]s for the audit log, and hands the planner a merged horizon
//!   ([`PriceFeed::points`]) or a 15-minute [`crate::tariff::PriceSeries`] ([`PriceFeed::series`]).
//!
//! Time is always passed in (`now`); nothing here reads a clock, so tests drive time by hand.

mod awattar;
mod config;
mod entsoe;
mod error;
mod feed;
mod file;
mod http;
mod point;
mod push;

pub use awattar::{parse_awattar, AwattarSource, AWATTAR_DEFAULT_URL};
pub use config::{SourceConfig, DEFAULT_REFRESH_MINUTES};
pub use entsoe::{parse_entsoe, EntsoeSource, Token, ENTSOE_DEFAULT_URL, ENTSOE_TOKEN_ENV};
pub use error::{ConfigError, ParseError, PriceError};
pub use feed::{FeedEvent, FeedStatus, PriceFeed, SourceReport, BACKOFF_MINUTES};
pub use file::{parse_price_csv, FileSource, CSV_HEADER};
pub use http::{get_text, CONNECT_TIMEOUT, READ_TIMEOUT};
pub use point::{validate_point, validate_points, PointError, PricePoint, MAX_POINT_LENGTH, QUARTER_HOUR};
pub use push::{PushHandle, PushSource, MAX_PUSH_POINTS};

use jiff::Timestamp;
use std::fmt;

/// The kinds of price source; also the `kind` of a [`SourceConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A CSV file.
    File,
    /// The aWATTar market-data API.
    Awattar,
    /// The ENTSO-E Transparency Platform.
    Entsoe,
    /// Prices pushed through the API.
    Push,
}

impl SourceKind {
    /// `"file"`, `"awattar"`, `"entsoe"` or `"push"` (as in the configuration).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Awattar => "awattar",
            Self::Entsoe => "entsoe",
            Self::Push => "push",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source of spot prices. `fetch` blocks (network or file I/O): call it from the planner
/// thread, never from the control thread.
pub trait PriceSource: Send + fmt::Debug {
    /// Which kind of source this is.
    fn kind(&self) -> SourceKind;

    /// The points the source knows at `now`, sorted and valid ([`validate_points`]); `now`
    /// chooses the window asked for and is never read from a clock.
    ///
    /// # Errors
    /// [`PriceError`] naming the source kind, where it looked (URL without token, or path)
    /// and the cause.
    fn fetch(&mut self, now: Timestamp) -> Result<Vec<PricePoint>, PriceError>;
}
