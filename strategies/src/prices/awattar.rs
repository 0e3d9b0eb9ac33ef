//! The `awattar` source: the public market-data API of aWATTar (Germany and Austria).

use super::error::{ParseError, PriceError};
use super::http::{Http, CONNECT_TIMEOUT, READ_TIMEOUT};
use super::point::{add, floor_to, validate_points, PricePoint};
use super::{PriceSource, SourceKind};
use crate::units::Price;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Default base URL (Germany); `https://api.awattar.at` serves Austria.
pub const AWATTAR_DEFAULT_URL: &str = "https://api.awattar.de";

/// How far ahead prices are asked for: day-ahead prices for tomorrow appear around noon, so two
/// days from the current hour always cover everything published.
const WINDOW: SignedDuration = SignedDuration::from_hours(48);

/// Fetches `GET {url}/v1/marketdata?start={ms}&end={ms}` for the window from the start of the
/// current UTC hour to 48 h later and parses it with [`parse_awattar`].
#[derive(Debug, Clone)]
pub struct AwattarSource {
    base_url: String,
    http: Http,
}

impl AwattarSource {
    /// A source on `base_url` (e.g. [`AWATTAR_DEFAULT_URL`]; a trailing `/` is ignored), with
    /// the default timeouts (10 s to connect, 10 s per read).
    #[must_use]
    pub fn new(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        Self { base_url, http: Http::new(CONNECT_TIMEOUT, READ_TIMEOUT) }
    }

    /// The same source with other timeouts (tests use short ones).
    #[must_use]
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.http = Http::new(connect, read);
        self
    }

    /// The URL fetched at `now`.
    #[must_use]
    pub fn url(&self, now: Timestamp) -> String {
        let start = floor_to(now, 3600);
        let end = add(start, WINDOW);
        format!(
            "{}/v1/marketdata?start={}&end={}",
            self.base_url,
            start.as_millisecond(),
            end.as_millisecond()
        )
    }
}

impl PriceSource for AwattarSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Awattar
    }

    /// # Errors
    /// [`PriceError`] for a failed request, a status other than 200, or an answer that is not
    /// valid market data (an empty `data` list included).
    fn fetch(&mut self, now: Timestamp) -> Result<Vec<PricePoint>, PriceError> {
        let url = self.url(now);
        let body = self.http.get(SourceKind::Awattar, &url, &url, None)?;
        parse_awattar(&body).map_err(|error| PriceError::Decode {
            kind: SourceKind::Awattar,
            origin: url,
            error,
        })
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    data: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    start_timestamp: i64,
    end_timestamp: i64,
    marketprice: f64,
    unit: String,
}

/// Parse an aWATTar market-data answer:
/// `{"object":"list","data":[{"start_timestamp":ms,"end_timestamp":ms,"marketprice":f64,"unit":"Eur/MWh"}]}`.
/// Timestamps are Unix milliseconds (UTC); `marketprice` in EUR/MWh is divided by 1000 into
/// currency per kWh. Hourly and quarter-hourly entries may be mixed; they are sorted by start
/// and must then pass [`validate_points`].
///
/// # Errors
/// [`ParseError::Syntax`] for JSON that is not of that shape, [`ParseError::Value`] for a unit
/// other than EUR/MWh or an unrepresentable timestamp, [`ParseError::NoData`] for an empty list,
/// [`ParseError::Points`] for points that break the rules.
pub fn parse_awattar(json: &str) -> Result<Vec<PricePoint>, ParseError> {
    let answer: Answer =
        serde_json::from_str(json).map_err(|e| ParseError::Syntax { cause: e.to_string() })?;
    if answer.data.is_empty() {
        return Err(ParseError::NoData);
    }
    let mut points = Vec::with_capacity(answer.data.len());
    for e in answer.data {
        if !e.unit.eq_ignore_ascii_case("Eur/MWh") {
            return Err(value("unit", &e.unit, "only Eur/MWh is understood"));
        }
        let start = instant("start_timestamp", e.start_timestamp)?;
        let end = instant("end_timestamp", e.end_timestamp)?;
        let price = Price::checked("marketprice", e.marketprice / 1000.0)
            .map_err(|_| value("marketprice", &e.marketprice.to_string(), "not a finite price"))?;
        points.push(PricePoint::new(start, end, price));
    }
    points.sort_by_key(|p| p.start);
    validate_points(&points).map_err(ParseError::Points)?;
    Ok(points)
}

fn instant(field: &str, ms: i64) -> Result<Timestamp, ParseError> {
    Timestamp::from_millisecond(ms)
        .map_err(|_| value(field, &ms.to_string(), "not a representable Unix time in ms"))
}

fn value(field: &str, value: &str, problem: &str) -> ParseError {
    ParseError::Value { field: field.to_owned(), value: value.to_owned(), problem: problem.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_at_the_current_hour() {
        let s = AwattarSource::new("http://example.invalid/");
        let now: Timestamp = "2025-10-01T22:40:00Z".parse().unwrap();
        assert_eq!(s.url(now), "http://example.invalid/v1/marketdata?start=1759356000000&end=1759528800000");
    }

    #[test]
    fn refuses_other_units_empty_lists_and_overlaps() {
        let unit = r#"{"object":"list","data":[{"start_timestamp":0,"end_timestamp":3600000,"marketprice":1,"unit":"Eur/kWh"}]}"#;
        assert!(matches!(parse_awattar(unit), Err(ParseError::Value { field, .. }) if field == "unit"));
        assert_eq!(parse_awattar(r#"{"object":"list","data":[]}"#), Err(ParseError::NoData));
        assert!(matches!(parse_awattar("{\"data\": 1}"), Err(ParseError::Syntax { .. })));
        let overlap = r#"{"object":"list","data":[
            {"start_timestamp":0,"end_timestamp":3600000,"marketprice":1,"unit":"Eur/MWh"},
            {"start_timestamp":900000,"end_timestamp":1800000,"marketprice":1,"unit":"Eur/MWh"}]}"#;
        assert!(matches!(parse_awattar(overlap), Err(ParseError::Points(_))));
    }
}
