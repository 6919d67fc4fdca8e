//! The tracking map's geometry, pure: Web Mercator as slippy-map tile servers cut
//! it (256-pixel tiles, zoom `z` is `2^z` tiles across the world), the view that
//! fits what the customer should see, the tiles under it, a scale bar, and the
//! thinning of the driver's trail. `track.js` repeats these few formulas to redraw
//! the map as positions arrive; the constants it needs travel in the page's data
//! attributes, so the two cannot disagree on sizes.

/// A tile's side in pixels, as every slippy-map server serves them.
pub const TILE: f64 = 256.0;

/// Web Mercator's edge: the latitude at which the square world ends.
const MAX_LAT: f64 = 85.051_128_78;

/// The Earth's radius in Web Mercator (WGS 84's semi-major axis), in metres.
const EARTH_M: f64 = 6_378_137.0;

/// The closest zoom the map fits at: a street and its neighbours. Closer, a driver
/// 50 m from the door would fill the map and say nothing about the street.
pub const MAX_ZOOM: u32 = 16;
/// The widest: a country. Drivers and addresses further apart are not one delivery.
pub const MIN_ZOOM: u32 = 3;
/// A single point (only the address, say) is shown at neighbourhood scale.
pub const ONE_POINT_ZOOM: u32 = 15;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    pub fn new(lat: f64, lon: f64) -> LatLon {
        LatLon { lat, lon }
    }
}

/// The map's frame in its own units (the SVG's viewBox; CSS scales it to the page).
/// Points are fitted inside the margins: `padding` on the sides and at the bottom
/// keeps markers and labels off the edges and clear of the scale bar and the
/// attribution; `top` is larger, because the address pin rises above its point and
/// the stop count and the north arrow sit along the top.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub padding: f64,
    pub top: f64,
}

impl Frame {
    /// The room points are fitted into: (left, top, width, height).
    pub fn room(&self) -> (f64, f64, f64, f64) {
        (
            self.padding,
            self.top,
            self.width - 2.0 * self.padding,
            self.height - self.top - self.padding,
        )
    }
}

/// The tracking page's map: 6:5, about a phone's width, so tiles are drawn near
/// their own size on a phone and the map is not a letterbox on a desktop.
pub const FRAME: Frame = Frame {
    width: 360.0,
    height: 300.0,
    padding: 36.0,
    top: 60.0,
};

/// A point's position on the world's pixel plane at `zoom` (x east, y south).
pub fn world(p: LatLon, zoom: u32) -> (f64, f64) {
    let size = TILE * f64::from(1u32 << zoom.min(30));
    let x = (p.lon + 180.0) / 360.0 * size;
    let phi = p.lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let y = (1.0 - (phi.tan() + 1.0 / phi.cos()).ln() / std::f64::consts::PI) / 2.0 * size;
    (x, y)
}

/// The inverse of [`world`].
pub fn unworld((x, y): (f64, f64), zoom: u32) -> LatLon {
    let size = TILE * f64::from(1u32 << zoom.min(30));
    let lon = x / size * 360.0 - 180.0;
    let n = std::f64::consts::PI * (1.0 - 2.0 * y / size);
    LatLon {
        lat: n.sinh().atan().to_degrees(),
        lon,
    }
}

/// What the map shows: a zoom and the world pixel at the frame's top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub zoom: u32,
    pub left: f64,
    pub top: f64,
}

/// One tile under the view: its address and where its top-left corner falls in the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    pub z: u32,
    pub x: i64,
    pub y: i64,
    pub left: f64,
    pub top: f64,
}

impl View {
    /// The closest zoom (an integer, so tiles are drawn at their own size) at which
    /// every point fits inside the frame's margins, their bounding box centred in them.
    /// `None` without points. Deliveries are local: a box across the antimeridian
    /// is not handled (it would fit at a world's width).
    pub fn fit(points: &[LatLon], frame: &Frame) -> Option<View> {
        let (first, rest) = points.split_first()?;
        let zoom = if rest.iter().all(|p| p == first) {
            ONE_POINT_ZOOM
        } else {
            // Spans double with each zoom: measure once at the closest and halve.
            let (w, h) = span(points, MAX_ZOOM);
            let (_, _, room_w, room_h) = frame.room();
            let mut zoom = MAX_ZOOM;
            let mut scale = 1.0;
            while zoom > MIN_ZOOM && (w * scale > room_w || h * scale > room_h) {
                zoom -= 1;
                scale /= 2.0;
            }
            zoom
        };
        let px: Vec<(f64, f64)> = points.iter().map(|p| world(*p, zoom)).collect();
        let (min_x, max_x) = bounds(px.iter().map(|p| p.0));
        let (min_y, max_y) = bounds(px.iter().map(|p| p.1));
        let (room_left, room_top, room_w, room_h) = frame.room();
        Some(View {
            zoom,
            left: (min_x + max_x) / 2.0 - (room_left + room_w / 2.0),
            top: (min_y + max_y) / 2.0 - (room_top + room_h / 2.0),
        })
    }

    /// Where a point falls in the frame.
    pub fn place(&self, p: LatLon) -> (f64, f64) {
        let (x, y) = world(p, self.zoom);
        (x - self.left, y - self.top)
    }

    /// The tiles that cover the frame, row by row. Columns wrap around the world
    /// (x modulo `2^z`); rows beyond the poles do not exist and are left out.
    pub fn tiles(&self, frame: &Frame) -> Vec<Tile> {
        let n = 1i64 << self.zoom.min(30);
        let first = |edge: f64| (edge / TILE).floor() as i64;
        // The last tile whose area reaches into the frame (an edge exactly on a
        // tile's border does not pull in the next one).
        let last = |edge: f64| (edge / TILE).ceil() as i64 - 1;
        let mut tiles = Vec::new();
        for ty in first(self.top)..=last(self.top + frame.height) {
            if !(0..n).contains(&ty) {
                continue;
            }
            for tx in first(self.left)..=last(self.left + frame.width) {
                tiles.push(Tile {
                    z: self.zoom,
                    x: tx.rem_euclid(n),
                    y: ty,
                    left: tx as f64 * TILE - self.left,
                    top: ty as f64 * TILE - self.top,
                });
            }
        }
        tiles
    }

    /// Metres on the ground per frame unit at the frame's centre (Mercator
    /// stretches with latitude, so a scale holds only near the latitude it is for).
    pub fn metres_per_unit(&self, frame: &Frame) -> f64 {
        let centre = unworld(
            (self.left + frame.width / 2.0, self.top + frame.height / 2.0),
            self.zoom,
        );
        2.0 * std::f64::consts::PI * EARTH_M * centre.lat.to_radians().cos() / (TILE * f64::from(1u32 << self.zoom))
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

fn span(points: &[LatLon], zoom: u32) -> (f64, f64) {
    let px: Vec<(f64, f64)> = points.iter().map(|p| world(*p, zoom)).collect();
    let (min_x, max_x) = bounds(px.iter().map(|p| p.0));
    let (min_y, max_y) = bounds(px.iter().map(|p| p.1));
    (max_x - min_x, max_y - min_y)
}

/// A scale bar: a round distance and its length in frame units.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleBar {
    pub metres: f64,
    pub length: f64,
    /// `200 m`, `1 km`.
    pub label: String,
}

/// The longest round distance (1, 2 or 5 times a power of ten metres) whose bar
/// is at most `max_length` units long.
pub fn scale_bar(metres_per_unit: f64, max_length: f64) -> ScaleBar {
    let most = (metres_per_unit * max_length).max(1.0);
    let power = 10f64.powi(most.log10().floor() as i32);
    let metres = [5.0, 2.0, 1.0]
        .iter()
        .map(|m| m * power)
        .find(|&m| m <= most)
        .unwrap_or(power);
    let label = if metres >= 1000.0 {
        format!("{} km", metres / 1000.0)
    } else {
        format!("{metres} m")
    };
    ScaleBar {
        metres,
        length: metres / metres_per_unit,
        label,
    }
}

/// The distance between two points along the Earth's surface (haversine), in metres.
pub fn distance_m(a: LatLon, b: LatLon) -> f64 {
    let (phi1, phi2) = (a.lat.to_radians(), b.lat.to_radians());
    let dphi = phi2 - phi1;
    let dlambda = (b.lon - a.lon).to_radians();
    let h = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// How close two kept points of a trail may be. A van waiting at a door reports
/// the same spot again and again; dropping points this close turns that cluster
/// into one point of a line, so the trail does not mark where the van stopped.
pub const TRAIL_STEP_M: f64 = 30.0;

/// The trail as drawn, given oldest first: the indices of the points kept, each at
/// least [`TRAIL_STEP_M`] from the one kept before it. The last point (where the
/// driver is) is always kept, in place of a kept point it is too close to.
pub fn thin(points: &[LatLon]) -> Vec<usize> {
    let mut kept: Vec<usize> = Vec::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        match kept.last() {
            Some(&prev) if distance_m(points[prev], *p) < TRAIL_STEP_M => {
                if i + 1 == points.len() {
                    kept.pop();
                    kept.push(i);
                }
            }
            _ => kept.push(i),
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const BERLIN: LatLon = LatLon {
        lat: 52.52,
        lon: 13.405,
    };

    fn close(a: f64, b: f64, within: f64) -> bool {
        (a - b).abs() <= within
    }

    #[test]
    fn the_projection_matches_the_tile_scheme() {
        // Zoom 0 is one tile: (0, 0) at its centre, the corners at the poles' edge.
        assert_eq!(world(LatLon::new(0.0, 0.0), 0), (128.0, 128.0));
        let (x, y) = world(LatLon::new(MAX_LAT, -180.0), 0);
        assert!(close(x, 0.0, 1e-9) && close(y, 0.0, 1e-6), "{x} {y}");
        // Berlin's centre is in tile 8802/5373 at zoom 14 (the slippy-map formula).
        let (x, y) = world(BERLIN, 14);
        assert_eq!(((x / TILE) as i64, (y / TILE) as i64), (8802, 5373));
        // Latitudes past the edge are drawn at the edge, not at infinity.
        assert!(world(LatLon::new(90.0, 0.0), 3).1.is_finite());
    }

    #[test]
    fn unworld_inverts_world() {
        for zoom in [0, 5, 12, 16] {
            for p in [BERLIN, LatLon::new(-33.87, 151.21), LatLon::new(0.0, -179.9)] {
                let back = unworld(world(p, zoom), zoom);
                assert!(
                    close(back.lat, p.lat, 1e-9) && close(back.lon, p.lon, 1e-9),
                    "{p:?} at {zoom}"
                );
            }
        }
    }

    #[test]
    fn the_view_fits_every_point_inside_the_padding_at_the_closest_zoom() {
        let home = BERLIN;
        let driver = LatLon::new(52.51, 13.38);
        let points = [home, driver, LatLon::new(52.505, 13.37)];
        let view = View::fit(&points, &FRAME).unwrap();
        let inside = |v: &View| {
            points.iter().all(|p| {
                let (x, y) = v.place(*p);
                (FRAME.padding..=FRAME.width - FRAME.padding).contains(&x)
                    && (FRAME.top..=FRAME.height - FRAME.padding).contains(&y)
            })
        };
        assert!(inside(&view), "{view:?}");
        // One zoom closer, they would not fit: it is the closest.
        let closer = View::fit(&points, &FRAME).map(|v| {
            let mut c = v;
            c.zoom += 1;
            let (cx, cy) = ((v.left + FRAME.width / 2.0) * 2.0, (v.top + FRAME.height / 2.0) * 2.0);
            c.left = cx - FRAME.width / 2.0;
            c.top = cy - FRAME.height / 2.0;
            c
        });
        assert!(!inside(&closer.unwrap()));
        // The points' box is centred in the margins.
        let placed: Vec<(f64, f64)> = points.iter().map(|p| view.place(*p)).collect();
        let (lo, hi) = bounds(placed.iter().map(|p| p.0));
        assert!(close(lo + hi, FRAME.width, 1e-6));
        let (lo, hi) = bounds(placed.iter().map(|p| p.1));
        assert!(close(lo + hi, FRAME.top + FRAME.height - FRAME.padding, 1e-6));
    }

    #[test]
    fn fitting_stops_at_street_and_country_scale() {
        assert_eq!(View::fit(&[], &FRAME), None);
        let one = View::fit(&[BERLIN], &FRAME).unwrap();
        assert_eq!(one.zoom, ONE_POINT_ZOOM);
        let (x, y) = one.place(BERLIN);
        assert!(close(x, FRAME.width / 2.0, 1e-6) && close(y, (FRAME.top + FRAME.height - FRAME.padding) / 2.0, 1e-6));
        let next_door = View::fit(&[BERLIN, LatLon::new(52.5201, 13.4051)], &FRAME).unwrap();
        assert_eq!(next_door.zoom, MAX_ZOOM);
        let far = View::fit(&[BERLIN, LatLon::new(-33.87, 151.21)], &FRAME).unwrap();
        assert_eq!(far.zoom, MIN_ZOOM);
    }

    #[test]
    fn tiles_cover_the_frame_exactly() {
        let view = View::fit(&[BERLIN], &FRAME).unwrap();
        let tiles = view.tiles(&FRAME);
        // Every corner of the frame is on a tile, and every tile touches the frame.
        for (x, y) in [
            (0.0, 0.0),
            (FRAME.width - 0.1, 0.0),
            (0.0, FRAME.height - 0.1),
            (180.0, 150.0),
        ] {
            assert!(
                tiles
                    .iter()
                    .any(|t| (t.left..t.left + TILE).contains(&x) && (t.top..t.top + TILE).contains(&y)),
                "({x}, {y}) uncovered by {tiles:?}"
            );
        }
        for t in &tiles {
            assert!(t.left < FRAME.width && t.left + TILE > 0.0 && t.top < FRAME.height && t.top + TILE > 0.0);
            assert_eq!(t.z, ONE_POINT_ZOOM);
        }
        // A frame aligned on tile borders takes exactly the tiles inside it.
        let aligned = View {
            zoom: 4,
            left: 512.0,
            top: 256.0,
        };
        let frame = Frame {
            width: 512.0,
            height: 256.0,
            padding: 0.0,
            top: 0.0,
        };
        let addresses: Vec<(i64, i64)> = aligned.tiles(&frame).iter().map(|t| (t.x, t.y)).collect();
        assert_eq!(addresses, [(2, 1), (3, 1)]);
    }

    #[test]
    fn tiles_wrap_east_west_and_stop_at_the_poles() {
        let view = View {
            zoom: 1,
            left: -100.0,
            top: -100.0,
        };
        let tiles = view.tiles(&FRAME);
        let addresses: Vec<(i64, i64)> = tiles.iter().map(|t| (t.x, t.y)).collect();
        // Column -1 is column 1 of a two-tile world, drawn again east of column 0;
        // row -1 (north of the pole) does not exist.
        assert_eq!(addresses, [(1, 0), (0, 0), (1, 0)]);
        assert_eq!((tiles[0].left, tiles[0].top), (-156.0, 100.0));
    }

    #[test]
    fn the_scale_is_true_on_the_ground() {
        let view = View::fit(&[BERLIN], &FRAME).unwrap();
        let per_unit = view.metres_per_unit(&FRAME);
        // Measure 100 units east of the centre on the ground.
        let centre = unworld((view.left + 180.0, view.top + 150.0), view.zoom);
        let east = unworld((view.left + 280.0, view.top + 150.0), view.zoom);
        let measured = distance_m(centre, east) / 100.0;
        assert!(close(per_unit, measured, measured * 0.002), "{per_unit} vs {measured}");
        // About 2.9 m per unit at zoom 15 in Berlin.
        assert!(close(per_unit, 2.9, 0.1), "{per_unit}");
    }

    #[test]
    fn scale_bars_are_round_and_no_longer_than_allowed() {
        let bar = scale_bar(2.9, 90.0);
        assert_eq!((bar.metres, bar.label.as_str()), (200.0, "200 m"));
        assert!(close(bar.length, 200.0 / 2.9, 1e-9));
        let bar = scale_bar(40.0, 90.0);
        assert_eq!((bar.metres, bar.label.as_str()), (2000.0, "2 km"));
        let bar = scale_bar(0.5, 90.0);
        assert_eq!(bar.label, "20 m");
        for per_unit in [0.3, 1.0, 7.7, 123.0, 9_000.0] {
            let bar = scale_bar(per_unit, 90.0);
            assert!(
                bar.length <= 90.0 + 1e-9 && bar.length > 90.0 / 5.0,
                "{per_unit}: {bar:?}"
            );
        }
    }

    #[test]
    fn a_trail_keeps_no_cluster_where_the_van_waited() {
        let step = 0.001; // about 110 m of latitude
        let mut points: Vec<LatLon> = (0..5).map(|i| LatLon::new(52.5 + step * f64::from(i), 13.4)).collect();
        // Twenty reports at one door, a few metres apart.
        let door = points[4];
        points.extend((0..20).map(|i| LatLon::new(door.lat + 0.00001 * f64::from(i % 3), door.lon)));
        points.extend((1..4).map(|i| LatLon::new(door.lat + step * f64::from(i), 13.4)));
        let kept = thin(&points);
        assert_eq!(kept, [0, 1, 2, 3, 4, 25, 26, 27]);
        assert!(
            kept.windows(2)
                .all(|w| distance_m(points[w[0]], points[w[1]]) >= TRAIL_STEP_M)
        );
        // The driver's latest position is kept even when close to the point before.
        let moved = LatLon::new(points[27].lat + 0.0001, 13.4);
        points.push(moved);
        assert_eq!(thin(&points), [0, 1, 2, 3, 4, 25, 26, 28]);
        assert_eq!(thin(&[]), Vec::<usize>::new());
    }

    #[test]
    fn distances_are_on_the_ground() {
        // One degree of latitude is about 111.2 km.
        assert!(close(
            distance_m(LatLon::new(0.0, 0.0), LatLon::new(1.0, 0.0)),
            111_195.0,
            10.0
        ));
        assert_eq!(distance_m(BERLIN, BERLIN), 0.0);
    }
}
