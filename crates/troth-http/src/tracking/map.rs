//! The tracking page's map, drawn on the server so it is whole without script:
//! the customer's address, the driver (greyed with its age when stale), the
//! driver's last minutes as a line, how many stops come first, a scale bar and a
//! north arrow, over tiles when a tile server is configured. Under the tiles lies
//! a plain ground with a grid at the scale bar's distance, which is all that shows
//! when no tiles are configured or none load (a closed network), so the map never
//! becomes a grey box. `track.js` redraws it from the section's data attributes
//! with the same geometry ([`super::geo`]) as positions arrive.
//!
//! Privacy: nothing here names or marks another customer. The trail is a bare
//! line of the last [`TRAIL_US`], thinned so a van waiting at a door leaves no
//! cluster of points; tiles are fetched with the page's origin as referrer, never
//! the address holding the token.

use std::fmt::Write;

use troth_core::Timestamp;
use troth_core::shipment::Shipment;
use troth_store::{EventQuery, Store};

use super::TrackingConfig;
use super::geo::{self, FRAME, LatLon, View};
use super::view::LastPositionView;
use crate::ApiError;
use crate::ui::esc;

/// OpenStreetMap's attribution, which its tile servers and the data under almost
/// every other tile server (ODbL) require.
pub const OSM_ATTRIBUTION: &str = "© OpenStreetMap contributors";
pub const OSM_COPYRIGHT: &str = "https://www.openstreetmap.org/copyright";

/// How much of the driver's way the trail shows: enough to see the direction of
/// travel, too little to replay the round.
pub const TRAIL_US: i64 = 10 * 60 * 1_000_000;

/// The tile server the map uses, when one is configured and its URL is usable.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiles {
    /// With `{z}`, `{x}` and `{y}`.
    pub template: String,
    /// `https://tile.example:8443`, the only other origin the page may load images from.
    pub origin: String,
    pub attribution: String,
    pub attribution_url: Option<String>,
}

impl Tiles {
    pub fn of(config: &TrackingConfig) -> Option<Tiles> {
        let template = config.tile_url.as_deref()?;
        if !["{z}", "{x}", "{y}"].iter().all(|p| template.contains(p)) {
            return None;
        }
        let origin = tile_origin(template)?;
        let attribution = config.tile_attribution.clone();
        Some(Tiles {
            template: template.to_owned(),
            origin,
            // Unset, the attribution is OpenStreetMap's, with its link.
            attribution_url: match &attribution {
                Some(_) => config.tile_attribution_url.clone(),
                None => Some(OSM_COPYRIGHT.to_owned()),
            },
            attribution: attribution.unwrap_or_else(|| OSM_ATTRIBUTION.to_owned()),
        })
    }

    fn href(&self, tile: &geo::Tile) -> String {
        self.template
            .replace("{z}", &tile.z.to_string())
            .replace("{x}", &tile.x.to_string())
            .replace("{y}", &tile.y.to_string())
    }
}

/// The origin (`scheme://host[:port]`) of an http(s) tile URL, when its host is
/// written out: the page's Content-Security-Policy names it, so it must be one
/// literal origin (`{s}` subdomains cannot be) made only of host characters (so
/// nothing else can be slipped into the policy).
pub fn tile_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host_ok, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: [::1] or [::1]:8080.
        Some(bracketed) => {
            let (v6, tail) = bracketed.split_once(']')?;
            let port = match tail {
                "" => None,
                tail => Some(tail.strip_prefix(':')?),
            };
            let ok = !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (ok, port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let ok = !host.is_empty()
                && !host.starts_with(['.', '-'])
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            (ok, port)
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (host_ok && port_ok).then(|| format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// A point of the trail and when the driver was there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrailPoint {
    pub at: Timestamp,
    pub at_place: LatLon,
}

/// The driver's trusted positions in the [`TRAIL_US`] up to `last` (the position
/// the page shows), since this run began, oldest first and thinned ([`geo::thin`]).
pub async fn trail<S: Store>(
    store: &S,
    shipment: &Shipment,
    last: Option<&LastPositionView>,
) -> Result<Vec<TrailPoint>, ApiError> {
    let (Some(assignment), Some(last)) = (shipment.assignment().filter(|_| shipment.on_the_road()), last) else {
        return Ok(Vec::new());
    };
    let Some(last_at) = Timestamp::parse_rfc3339(&last.at) else {
        return Ok(Vec::new());
    };
    let page = store
        .events(EventQuery {
            subject: Some(format!("driver:{}", assignment.driver)),
            event_type: Some("courier.position".into()),
            from_us: Some(assignment.since.micros().max(last_at.micros().saturating_sub(TRAIL_US))),
            to_us: Some(last_at.micros().saturating_add(1)),
            newest_first: true,
            // A report every 5 s for 10 minutes; more is not drawn.
            limit: 150,
            ..Default::default()
        })
        .await?;
    let mut points: Vec<TrailPoint> = page
        .events
        .iter()
        .filter_map(|e| {
            let event = troth_core::validate_event(&e.raw).ok()?;
            match event.data {
                // A flagged fix was not trusted: it is not where the driver was.
                troth_core::catalogue::EventData::CourierPosition(p) if p.flag.is_none() => Some(TrailPoint {
                    at: event.time,
                    at_place: LatLon::new(p.lat.0, p.lon.0),
                }),
                _ => None,
            }
        })
        .collect();
    // The log is in arrival order; the line is drawn in the order the van drove.
    points.sort_by_key(|p| p.at);
    points.dedup_by_key(|p| p.at);
    let places: Vec<LatLon> = points.iter().map(|p| p.at_place).collect();
    let out = geo::thin(&places).into_iter().map(|i| points[i]).collect();
    Ok(out)
}

/// What the map shows.
pub struct MapInput<'a> {
    pub destination: Option<LatLon>,
    pub last: Option<&'a LastPositionView>,
    pub trail: &'a [TrailPoint],
    pub stops_before: Option<u32>,
    pub tiles: Option<&'a Tiles>,
    /// Seconds after which a position is stale (the page's limit).
    pub stale_after: i64,
}

/// The map's section. Hidden when there is nothing to place on it (not on the
/// road, or on the road with neither an address nor a position).
pub fn render(m: &MapInput<'_>) -> String {
    let driver = m.last.map(|d| LatLon::new(d.lat, d.lon));
    let mut points: Vec<LatLon> = m.trail.iter().map(|p| p.at_place).collect();
    points.extend(driver);
    points.extend(m.destination);
    let view = View::fit(&points, &FRAME);
    let stale = m.last.is_some_and(|l| l.stale);

    let mut attrs = format!(
        r#" data-frame="{} {} {} {}" data-zooms="{} {} {}" data-trail-ms="{}" data-step-m="{}" data-stale-after="{}""#,
        FRAME.width,
        FRAME.height,
        FRAME.padding,
        FRAME.top,
        geo::MIN_ZOOM,
        geo::MAX_ZOOM,
        geo::ONE_POINT_ZOOM,
        TRAIL_US / 1000,
        geo::TRAIL_STEP_M,
        m.stale_after
    );
    if let Some(v) = &view {
        let _ = write!(attrs, r#" data-view="{} {} {}""#, v.zoom, v.left, v.top);
    }
    if let Some(d) = m.destination {
        let _ = write!(attrs, r#" data-dest-lat="{}" data-dest-lon="{}""#, d.lat, d.lon);
    }
    if let Some(last) = m.last {
        let _ = write!(
            attrs,
            r#" data-lat="{}" data-lon="{}" data-at="{}""#,
            last.lat,
            last.lon,
            esc(&last.at)
        );
    }
    if let Some(tiles) = m.tiles {
        let _ = write!(attrs, r#" data-tiles="{}""#, esc(&tiles.template));
    }
    let trail_json: Vec<String> = m
        .trail
        .iter()
        .map(|p| format!("[{},{},{}]", p.at_place.lat, p.at_place.lon, p.at.micros() / 1000))
        .collect();
    let _ = write!(attrs, r#" data-trail="[{}]""#, trail_json.join(","));

    let (w, h) = (FRAME.width, FRAME.height);
    let mut ground = String::new();
    let mut tiles_html = String::new();
    let mut marks = String::new();
    let mut scale = String::new();
    if let Some(view) = &view {
        let bar = geo::scale_bar(view.metres_per_unit(&FRAME), 90.0);
        ground = grid(view, bar.length);
        if let Some(tiles) = m.tiles {
            for tile in view.tiles(&FRAME) {
                // Percentages of the frame, so the tiles scale with the SVG above them.
                let _ = write!(
                    tiles_html,
                    r#"<img src="{}" alt="" referrerpolicy="strict-origin" decoding="async" draggable="false" style="left:{:.3}%;top:{:.3}%;width:{:.3}%;height:{:.3}%">"#,
                    esc(&tiles.href(&tile)),
                    tile.left / w * 100.0,
                    tile.top / h * 100.0,
                    geo::TILE / w * 100.0,
                    geo::TILE / h * 100.0
                );
            }
        }
        scale = format!(
            r#"<path d="M0 -6V0H{0:.1}V-6"/><text x="0" y="-10">{1}</text>"#,
            bar.length,
            esc(&bar.label)
        );
        if m.trail.len() >= 2 {
            let line: Vec<String> = m
                .trail
                .iter()
                .map(|p| {
                    let (x, y) = view.place(p.at_place);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = write!(
                marks,
                r#"<polyline id="trail" class="trail{}" points="{}"/>"#,
                if stale { " stale" } else { "" },
                line.join(" ")
            );
        }
        if let Some(d) = m.destination {
            let (x, y) = view.place(d);
            let _ = write!(
                marks,
                r#"<g id="home" class="home" transform="translate({x:.1} {y:.1})"><path class="pin" d="{HOME_PIN}"/><path class="house" d="{HOUSE}"/></g>"#
            );
        }
        if let (Some(d), Some(last)) = (driver, m.last) {
            let (x, y) = view.place(d);
            let _ = write!(
                marks,
                r#"<circle id="driver" cx="{x:.1}" cy="{y:.1}" r="9" class="driver{}"/>"#,
                if last.stale { " stale" } else { "" }
            );
            // A stale marker carries its age beside it, so the dot alone never reads as now.
            let (lx, ly) = age_label_at(x, y);
            let _ = write!(
                marks,
                r#"<text id="driver-age" x="{lx:.1}" y="{ly:.1}" class="age"{}>{}</text>"#,
                if last.stale { "" } else { " visibility=\"hidden\"" },
                esc(&ago(last.age_seconds))
            );
        }
    }
    let attribution = m
        .tiles
        .map(|t| {
            let text = esc(&t.attribution);
            match &t.attribution_url {
                Some(url) => format!(
                    r#"<p class="attribution" id="map-attribution"><a href="{}" rel="noopener">{text}</a></p>"#,
                    esc(url)
                ),
                None => format!(r#"<p class="attribution" id="map-attribution">{text}</p>"#),
            }
        })
        .unwrap_or_default();
    let caption = match m.last {
        Some(last) => position_caption(last),
        None => "The driver appears here once their phone reports where they are.".to_owned(),
    };
    format!(
        concat!(
            r#"<section id="map"{hidden}{attrs}><h2>Your driver</h2><div class="map{tiled}" style="aspect-ratio:{w}/{h}">"#,
            r#"<svg class="ground" viewBox="0 0 {w} {h}" aria-hidden="true" focusable="false"><rect width="{w}" height="{h}" class="paper"/><path id="map-grid" class="grid" d="{ground}"/></svg>"#,
            r#"<div class="tiles" id="map-tiles">{tiles_html}</div>"#,
            r#"<svg class="overlay" id="map-svg" viewBox="0 0 {w} {h}" role="img" aria-label="Map of your address and your driver's position">"#,
            r#"<g id="map-marks">{marks}</g>"#,
            r#"<g class="north" transform="translate({nx} 30)"><path d="M0 -14L7 6L0 2L-7 6Z"/><text y="20">N</text></g>"#,
            r#"<g class="scale" id="map-scale" transform="translate(12 {sy})">{scale}</g></svg>"#,
            r#"<p class="map-stops" id="map-stops"{stops_hidden}>{stops}</p>{attribution}</div>"#,
            r#"<p class="muted{caption_class}" id="driver-at">{caption}</p>"#,
            r#"<p class="legend muted"><span><span class="key driver-key"></span>Driver</span> "#,
            r#"<span{home_hidden}><span class="key home-key"></span>Your address</span> "#,
            r#"<span><span class="key trail-key"></span>Recent path</span></p></section>"#
        ),
        // `concat!` makes the format string, which cannot capture names by itself.
        // No address pin without the address: the legend does not promise one.
        home_hidden = if m.destination.is_some() { "" } else { " hidden" },
        attrs = attrs,
        w = w,
        h = h,
        ground = ground,
        tiles_html = tiles_html,
        marks = marks,
        scale = scale,
        attribution = attribution,
        hidden = if points.is_empty() { " hidden" } else { "" },
        tiled = if m.tiles.is_some() { " tiled" } else { "" },
        nx = w - 22.0,
        sy = h - 12.0,
        stops_hidden = if m.stops_before.is_none() { " hidden" } else { "" },
        stops = m.stops_before.map(stops_text).unwrap_or_default(),
        caption_class = if stale { " stale" } else { "" },
        caption = esc(&caption),
    )
}

/// The address marker: a pin whose tip is on the address (the translate), with a
/// house in its head.
const HOME_PIN: &str = "M0 0L-8.7 -12A10 10 0 1 1 8.7 -12Z";
const HOUSE: &str = "M-5 -15.5L0 -20.5L5 -15.5V-11.5H-5Z";

/// Where the age label goes: above the marker, or below it near the top edge,
/// never past the sides.
fn age_label_at(x: f64, y: f64) -> (f64, f64) {
    (
        x.clamp(44.0, FRAME.width - 44.0),
        if y > 40.0 { y - 16.0 } else { y + 28.0 },
    )
}

/// Grid lines every `step` units, fixed to the ground (they move with the map),
/// as one SVG path.
fn grid(view: &View, step: f64) -> String {
    let mut d = String::new();
    if step < 8.0 {
        return d;
    }
    let mut x = step - view.left.rem_euclid(step);
    while x < FRAME.width {
        let _ = write!(d, "M{x:.1} 0V{}", FRAME.height);
        x += step;
    }
    let mut y = step - view.top.rem_euclid(step);
    while y < FRAME.height {
        let _ = write!(d, "M0 {y:.1}H{}", FRAME.width);
        y += step;
    }
    d
}

/// "3 stops before yours" (`track.js` words it the same).
pub fn stops_text(n: u32) -> String {
    match n {
        0 => "Your stop is next".into(),
        1 => "1 stop before yours".into(),
        n => format!("{n} stops before yours"),
    }
}

/// "Position 2 min ago", or for a stale one what it is and is not.
fn position_caption(last: &LastPositionView) -> String {
    if last.stale {
        format!(
            "Last known position, {}: the driver's phone has not reported since, so this is not where they are now.",
            ago(last.age_seconds)
        )
    } else {
        format!("Position {}", ago(last.age_seconds))
    }
}

/// "just now", "4 min ago", "2 h 5 min ago" (`track.js` words ages the same way).
fn ago(seconds: i64) -> String {
    let minutes = seconds.max(0) / 60;
    match minutes {
        0 => "just now".into(),
        1..=59 => format!("{minutes} min ago"),
        _ if minutes % 60 == 0 => format!("{} h ago", minutes / 60),
        _ => format!("{} h {} min ago", minutes / 60, minutes % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_exactly_the_tile_servers_origin() {
        assert_eq!(
            tile_origin("https://tile.openstreetmap.org/{z}/{x}/{y}.png").as_deref(),
            Some("https://tile.openstreetmap.org")
        );
        assert_eq!(
            tile_origin("HTTPS://Tiles.Shop.example:8443/osm/{z}/{x}/{y}.png?key=1").as_deref(),
            Some("https://tiles.shop.example:8443")
        );
        assert_eq!(
            tile_origin("http://[::1]:8080/{z}/{x}/{y}.png").as_deref(),
            Some("http://[::1]:8080")
        );
        for bad in [
            "https://{s}.tile.example/{z}/{x}/{y}.png",
            "https://tile.example;script-src *//{z}/{x}/{y}",
            "https://tile.example 'unsafe-inline'/{z}/{x}/{y}",
            "https://user@tile.example/{z}/{x}/{y}",
            "https://tile.example:80a/{z}/{x}/{y}",
            "ftp://tile.example/{z}/{x}/{y}",
            "javascript:alert(1)",
            "https:///{z}/{x}/{y}",
        ] {
            assert_eq!(tile_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn tiles_are_attributed_to_openstreetmap_unless_told_otherwise() {
        let mut config = TrackingConfig {
            tile_url: Some("https://tile.openstreetmap.org/{z}/{x}/{y}.png".into()),
            ..Default::default()
        };
        let tiles = Tiles::of(&config).unwrap();
        assert_eq!(tiles.attribution, OSM_ATTRIBUTION);
        assert_eq!(tiles.attribution_url.as_deref(), Some(OSM_COPYRIGHT));
        config.tile_attribution = Some("© Shop maps".into());
        let tiles = Tiles::of(&config).unwrap();
        assert_eq!(
            (tiles.attribution.as_str(), tiles.attribution_url),
            ("© Shop maps", None)
        );
        config.tile_url = Some("https://{s}.tile.example/{z}/{x}/{y}.png".into());
        assert_eq!(Tiles::of(&config), None, "no origin to allow, no tiles");
        assert_eq!(Tiles::of(&TrackingConfig::default()), None);
    }

    #[test]
    fn stops_read_as_people_say_them() {
        assert_eq!(stops_text(0), "Your stop is next");
        assert_eq!(stops_text(1), "1 stop before yours");
        assert_eq!(stops_text(4), "4 stops before yours");
    }

    #[test]
    fn the_grid_is_fixed_to_the_ground() {
        let view = View {
            zoom: 15,
            left: 1000.0,
            top: 2000.0,
        };
        let moved = View { left: 1010.0, ..view };
        // Ten units east, the first vertical line is ten units further left.
        let first_x = |d: &str| d[1..].split(' ').next().unwrap().parse::<f64>().unwrap();
        let (a, b) = (first_x(&grid(&view, 50.0)), first_x(&grid(&moved, 50.0)));
        assert!(
            (a - b - 10.0).abs() < 0.11 || (a + 50.0 - b - 10.0).abs() < 0.11,
            "{a} {b}"
        );
    }
}
