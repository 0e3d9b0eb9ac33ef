//! The `entsoe` source: day-ahead prices (document type A44) from the ENTSO-E Transparency
//! Platform's REST API.

use super::error::{ParseError, PriceError};
use super::http::{Http, CONNECT_TIMEOUT, READ_TIMEOUT};
use super::point::{add, floor_to, validate_points, PricePoint};
use super::{PriceSource, SourceKind};
use crate::units::Price;
use jiff::{SignedDuration, Timestamp};
use roxmltree::Node;
use std::fmt;
use std::time::Duration;

/// Default API endpoint.
pub const ENTSOE_DEFAULT_URL: &str = "https://web-api.tp.entsoe.eu/api";

/// Default environment variable holding the security token.
pub const ENTSOE_TOKEN_ENV: &str = "ENTSOE_TOKEN";

/// The window asked for: the current UTC day and the next one (tomorrow's prices appear around
/// noon; the local delivery day of European zones starts at 22:00 or 23:00 UTC the day before).
const WINDOW: SignedDuration = SignedDuration::from_hours(48);

/// An API security token. Never shown: `Debug` prints `Token(<redacted>)` and there is no
/// `Display`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wrap a token.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the request only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Fetches the day-ahead prices of one bidding zone (its EIC code, e.g. `10Y1001A1001A82H` for
/// DE-LU) for the current and the next UTC day and parses them with [`parse_entsoe`]. The token
/// is sent as the `securityToken` query parameter and never appears in errors or `Debug`.
#[derive(Debug, Clone)]
pub struct EntsoeSource {
    base_url: String,
    zone: String,
    token: Token,
    http: Http,
}

impl EntsoeSource {
    /// A source on `base_url` (e.g. [`ENTSOE_DEFAULT_URL`]) for bidding `zone`, with the default
    /// timeouts (10 s to connect, 10 s per read).
    #[must_use]
    pub fn new(base_url: impl Into<String>, zone: impl Into<String>, token: Token) -> Self {
        Self {
            base_url: base_url.into(),
            zone: zone.into(),
            token,
            http: Http::new(CONNECT_TIMEOUT, READ_TIMEOUT),
        }
    }

    /// The same source with other timeouts (tests use short ones).
    #[must_use]
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.http = Http::new(connect, read);
        self
    }

    /// The URL fetched at `now`, without the token (as errors show it).
    #[must_use]
    pub fn shown_url(&self, now: Timestamp) -> String {
        let start = floor_to(now, 86_400);
        let end = add(start, WINDOW);
        format!(
            "{}?documentType=A44&in_Domain={zone}&out_Domain={zone}&periodStart={}&periodEnd={}",
            self.base_url,
            start.strftime("%Y%m%d%H%M"),
            end.strftime("%Y%m%d%H%M"),
            zone = self.zone,
        )
    }

    fn url(&self, shown: &str) -> String {
        // The token goes first so that the shown URL is the real one with one parameter fewer.
        shown.replacen('?', &format!("?securityToken={}&", self.token.expose()), 1)
    }
}

impl PriceSource for EntsoeSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Entsoe
    }

    /// # Errors
    /// [`PriceError`] for a failed request, a status other than 200 (a bad token gives 401), an
    /// acknowledgement instead of prices, or an answer that is not valid A44 data.
    fn fetch(&mut self, now: Timestamp) -> Result<Vec<PricePoint>, PriceError> {
        let shown = self.shown_url(now);
        let url = self.url(&shown);
        let body = self.http.get(SourceKind::Entsoe, &url, &shown, Some(self.token.expose()))?;
        parse_entsoe(&body).map_err(|error| PriceError::Decode {
            kind: SourceKind::Entsoe,
            origin: shown,
            error,
        })
    }
}

/// One price of a period before overlaps between periods are resolved.
struct Candidate {
    point: PricePoint,
    resolution_s: i64,
    /// `classificationSequence_AttributeInstanceComponent.position` of its series (1 if absent).
    sequence: u32,
}

/// Parse an ENTSO-E A44 answer.
///
/// A `Publication_MarketDocument` holds `TimeSeries`, each with `Period`s of
/// `timeInterval/start`, `timeInterval/end` (e.g. `2025-10-01T22:00Z`), a `resolution` (`PT15M`,
/// `PT30M` or `PT60M`) and `Point`s of `position` (1-based) and `price.amount` (EUR/MWh, divided
/// by 1000 into currency per kWh). With `curveType` A03 a position whose price equals the
/// previous one may be omitted (also at the end of a period) and is filled in; with A01 (or no
/// curve type) a missing position stays a gap. Element names are matched by local name, so the
/// namespace version does not matter.
///
/// Only day-ahead series are read: a `TimeSeries` whose `contract_MarketAgreement.type` is given
/// and is not A01 (daily; some zones mix in A07 intraday series) is skipped. Where periods
/// overlap, the series with the lowest `classificationSequence_AttributeInstanceComponent.position`
/// wins (DE-LU publishes the SDAC coupling prices as sequence 1 and the separate EXAA auction as
/// sequence 2), then the finer resolution (some zones publish an hourly series next to the
/// quarter-hourly market products); overlapping periods of the same sequence and resolution must
/// agree, else the answer is refused.
///
/// # Errors
/// [`ParseError::Acknowledgement`] with the `Reason/text` for an `Acknowledgement_MarketDocument`,
/// [`ParseError::Syntax`] for XML that is not one of the two documents, [`ParseError::Value`]
/// for a field that cannot be used (naming it and its value), [`ParseError::NoData`] for a
/// document without prices, [`ParseError::Points`] for points that break the rules.
pub fn parse_entsoe(xml: &str) -> Result<Vec<PricePoint>, ParseError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| ParseError::Syntax { cause: e.to_string() })?;
    let root = doc.root_element();
    match root.tag_name().name() {
        "Publication_MarketDocument" => {}
        "Acknowledgement_MarketDocument" => {
            let reasons: Vec<&str> =
                elements(root, "Reason").filter_map(|r| child_text(r, "text")).map(str::trim).collect();
            let reason = if reasons.is_empty() { "(no reason given)".to_owned() } else { reasons.join("; ") };
            return Err(ParseError::Acknowledgement { reason });
        }
        other => {
            return Err(ParseError::Syntax { cause: format!("unexpected document <{other}>") });
        }
    }
    let mut candidates = Vec::new();
    for series in elements(root, "TimeSeries") {
        if let Some(unit) = child_text(series, "price_Measure_Unit.name") {
            if !unit.trim().eq_ignore_ascii_case("MWH") {
                return Err(value("price_Measure_Unit.name", unit, "only MWH is understood"));
            }
        }
        if child_text(series, "contract_MarketAgreement.type").is_some_and(|c| c.trim() != "A01") {
            continue;
        }
        let fill = child_text(series, "curveType").is_some_and(|c| c.trim() == "A03");
        let sequence = match child_text(series, "classificationSequence_AttributeInstanceComponent.position")
        {
            Some(text) => text.trim().parse().map_err(|_| {
                value(
                    "classificationSequence_AttributeInstanceComponent.position",
                    text,
                    "not a whole number",
                )
            })?,
            None => 1,
        };
        for period in elements(series, "Period") {
            parse_period(period, fill, sequence, &mut candidates)?;
        }
    }
    if candidates.is_empty() {
        return Err(ParseError::NoData);
    }
    let mut points = resolve_overlaps(candidates)?;
    points.sort_by_key(|p| p.start);
    validate_points(&points).map_err(ParseError::Points)?;
    Ok(points)
}

fn parse_period(
    period: Node<'_, '_>,
    fill: bool,
    sequence: u32,
    out: &mut Vec<Candidate>,
) -> Result<(), ParseError> {
    let interval = elements(period, "timeInterval").next().ok_or_else(|| missing("Period/timeInterval"))?;
    let start = instant("timeInterval/start", child_text(interval, "start"))?;
    let end = instant("timeInterval/end", child_text(interval, "end"))?;
    let resolution = child_text(period, "resolution").ok_or_else(|| missing("Period/resolution"))?.trim();
    let resolution_s: i64 = match resolution {
        "PT15M" => 900,
        "PT30M" => 1800,
        "PT60M" | "PT1H" => 3600,
        other => return Err(value("resolution", other, "only PT15M, PT30M and PT60M are understood")),
    };
    let span = end.duration_since(start).as_secs();
    if span <= 0 || span % resolution_s != 0 {
        let shown = format!("{start} .. {end}");
        return Err(value("timeInterval", &shown, "not a positive whole number of resolution steps"));
    }
    let slots = usize::try_from(span / resolution_s)
        .map_err(|_| value("timeInterval", &span.to_string(), "too long"))?;
    let mut prices: Vec<Option<Price>> = vec![None; slots];
    for point in elements(period, "Point") {
        let pos_text = child_text(point, "position").ok_or_else(|| missing("Point/position"))?.trim();
        let position: usize =
            pos_text.parse().map_err(|_| value("position", pos_text, "not a whole number"))?;
        let amount_text =
            child_text(point, "price.amount").ok_or_else(|| missing("Point/price.amount"))?.trim();
        let amount: f64 =
            amount_text.parse().map_err(|_| value("price.amount", amount_text, "not a number"))?;
        let price = Price::checked("price.amount", amount / 1000.0)
            .map_err(|_| value("price.amount", amount_text, "not a finite price"))?;
        let slot = position
            .checked_sub(1)
            .and_then(|i| prices.get_mut(i))
            .ok_or_else(|| value("position", pos_text, &format!("outside 1..={slots} of its period")))?;
        if slot.replace(price).is_some() {
            return Err(value("position", pos_text, "appears twice in one period"));
        }
    }
    let mut previous: Option<Price> = None;
    for (i, price) in prices.into_iter().enumerate() {
        let price = match (price, fill) {
            (Some(p), _) => Some(p),
            (None, true) => {
                Some(previous.ok_or_else(|| value("position", "1", "missing: nothing to repeat"))?)
            }
            (None, false) => None,
        };
        previous = price.or(previous);
        if let Some(price) = price {
            // i < slots, which came from an i64, so the product fits.
            let offset = i64::try_from(i).unwrap_or(i64::MAX).saturating_mul(resolution_s);
            let s = add(start, SignedDuration::from_secs(offset));
            let e = add(s, SignedDuration::from_secs(resolution_s));
            out.push(Candidate { point: PricePoint::new(s, e, price), resolution_s, sequence });
        }
    }
    Ok(())
}

/// Lower sequence first, then finer resolution; a later point overlapping a kept one is dropped
/// unless both have the same sequence and resolution, when it must be an exact duplicate.
fn resolve_overlaps(mut candidates: Vec<Candidate>) -> Result<Vec<PricePoint>, ParseError> {
    candidates.sort_by_key(|c| (c.sequence, c.resolution_s));
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for c in candidates {
        let mut drop = false;
        for k in kept.iter().filter(|k| k.point.overlaps(&c.point)) {
            let same_kind = (k.sequence, k.resolution_s) == (c.sequence, c.resolution_s);
            if !same_kind || k.point == c.point {
                drop = true;
            } else {
                let shown = format!("{} .. {}", c.point.start, c.point.end);
                return Err(value(
                    "Period",
                    &shown,
                    "overlaps another period of the same resolution with other prices",
                ));
            }
        }
        if !drop {
            kept.push(c);
        }
    }
    Ok(kept.into_iter().map(|c| c.point).collect())
}

/// Descendant elements with local name `name`.
fn elements<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    node.descendants().filter(move |n| n.is_element() && n.tag_name().name() == name)
}

/// Text of the first child element with local name `name`.
fn child_text<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children().find(|n| n.is_element() && n.tag_name().name() == name).and_then(|n| n.text())
}

/// An instant like `2025-10-01T22:00Z` (the API leaves out the seconds) or full RFC 3339.
fn instant(field: &str, text: Option<&str>) -> Result<Timestamp, ParseError> {
    let text = text.ok_or_else(|| missing(field))?.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let with_seconds = match text.strip_suffix('Z') {
        Some(minutes) => format!("{minutes}:00Z"),
        None => text.to_owned(),
    };
    with_seconds.parse().map_err(|_| value(field, text, "not an instant like 2025-10-01T22:00Z"))
}

fn missing(field: &str) -> ParseError {
    value(field, "", "missing")
}

fn value(field: &str, value: &str, problem: &str) -> ParseError {
    ParseError::Value { field: field.to_owned(), value: value.to_owned(), problem: problem.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_sent_but_never_shown() {
        let s = EntsoeSource::new("http://h/api", "10Y1001A1001A82H", Token::new("s3cret"));
        let now: Timestamp = "2025-10-01T22:40:00Z".parse().unwrap();
        let shown = s.shown_url(now);
        assert_eq!(
            shown,
            "http://h/api?documentType=A44&in_Domain=10Y1001A1001A82H&out_Domain=10Y1001A1001A82H\
             &periodStart=202510010000&periodEnd=202510030000"
        );
        assert!(s.url(&shown).starts_with("http://h/api?securityToken=s3cret&documentType=A44&"));
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn instants_with_and_without_seconds() {
        let t = instant("x", Some("2025-10-01T22:00Z")).unwrap();
        assert_eq!(t, "2025-10-01T22:00:00Z".parse::<Timestamp>().unwrap());
        assert!(matches!(instant("x", Some("tomorrow")), Err(ParseError::Value { .. })));
    }

    #[test]
    fn same_resolution_overlaps_must_agree() {
        let doc = |second_price: &str| {
            format!(
                "<Publication_MarketDocument>\
                 <TimeSeries><Period><timeInterval><start>2025-10-01T22:00Z</start><end>2025-10-01T23:00Z</end></timeInterval>\
                 <resolution>PT60M</resolution><Point><position>1</position><price.amount>50</price.amount></Point></Period></TimeSeries>\
                 <TimeSeries><Period><timeInterval><start>2025-10-01T22:00Z</start><end>2025-10-01T23:00Z</end></timeInterval>\
                 <resolution>PT60M</resolution><Point><position>1</position><price.amount>{second_price}</price.amount></Point></Period></TimeSeries>\
                 </Publication_MarketDocument>"
            )
        };
        assert_eq!(parse_entsoe(&doc("50")).unwrap().len(), 1);
        assert!(
            matches!(parse_entsoe(&doc("51")), Err(ParseError::Value { field, .. }) if field == "Period")
        );
    }

    #[test]
    fn sequence_one_wins_and_intraday_series_are_skipped() {
        let series = |extra: &str, price: &str| {
            format!(
                "<TimeSeries>{extra}<Period><timeInterval><start>2025-10-01T22:00Z</start><end>2025-10-01T22:15Z</end></timeInterval>\
                 <resolution>PT15M</resolution><Point><position>1</position><price.amount>{price}</price.amount></Point></Period></TimeSeries>"
            )
        };
        let doc = format!(
            "<Publication_MarketDocument>{}{}{}</Publication_MarketDocument>",
            series("<contract_MarketAgreement.type>A07</contract_MarketAgreement.type>", "1"),
            series("<classificationSequence_AttributeInstanceComponent.position>2</classificationSequence_AttributeInstanceComponent.position>", "20"),
            series("<classificationSequence_AttributeInstanceComponent.position>1</classificationSequence_AttributeInstanceComponent.position>", "10"),
        );
        let points = parse_entsoe(&doc).unwrap();
        assert_eq!(points.len(), 1);
        assert!((points[0].price.per_kwh() - 0.010).abs() < 1e-12);
    }
}
