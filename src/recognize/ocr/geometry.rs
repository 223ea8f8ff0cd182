//! Plane geometry for text boxes: convex hulls, minimum-area rectangles and
//! the four-corner boxes text lines are reported with.

use serde::Serialize;

/// A point in image pixels (x to the right, y down).
pub type Point = [f32; 2];

/// A text box: four corners in image pixels, clockwise from the top-left
/// one (top-left, top-right, bottom-right, bottom-left).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Quad(pub [Point; 4]);

impl Quad {
    /// Length of the top edge and of the left edge.
    pub fn size(&self) -> (f32, f32) {
        let [a, b, c, d] = self.0;
        (
            distance(a, b).max(distance(d, c)),
            distance(a, d).max(distance(b, c)),
        )
    }

    /// The top-left corner's y, then x: reading order of boxes.
    pub fn top_left(&self) -> Point {
        self.0[0]
    }

    /// The corners scaled by `sx`, `sy` and clamped into `width`×`height`.
    pub fn scaled(&self, sx: f32, sy: f32, width: f32, height: f32) -> Quad {
        Quad(
            self.0
                .map(|[x, y]| [(x * sx).clamp(0.0, width), (y * sy).clamp(0.0, height)]),
        )
    }
}

pub fn distance(a: Point, b: Point) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

fn cross(o: Point, a: Point, b: Point) -> f32 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in a y-up frame;
/// collinear points are dropped.
pub fn convex_hull(mut points: Vec<Point>) -> Vec<Point> {
    points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let mut hull: Vec<Point> = Vec::with_capacity(points.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &Point>> = if pass == 0 {
            Box::new(points.iter())
        } else {
            Box::new(points.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// A rectangle at any angle: centre, side lengths along `axis` and across it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub centre: Point,
    /// Unit vector along the first side.
    pub axis: Point,
    pub length: f32,
    pub breadth: f32,
}

impl Rect {
    pub fn short_side(&self) -> f32 {
        self.length.min(self.breadth)
    }

    pub fn area(&self) -> f32 {
        self.length * self.breadth
    }

    /// The rectangle grown by `d` on every side.
    pub fn grown(&self, d: f32) -> Rect {
        Rect {
            length: self.length + 2.0 * d,
            breadth: self.breadth + 2.0 * d,
            ..*self
        }
    }

    /// The corners, clockwise on screen from the top-left one.
    pub fn quad(&self) -> Quad {
        let [ux, uy] = self.axis;
        let (hl, hb) = (self.length / 2.0, self.breadth / 2.0);
        let [cx, cy] = self.centre;
        let corners = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)].map(|(s, t)| {
            [
                cx + s * hl * ux - t * hb * uy,
                cy + s * hl * uy + t * hb * ux,
            ]
        });
        order_corners(corners)
    }
}

/// The smallest-area rectangle holding `hull` (rotating calipers: one side
/// of it lies on a hull edge). `None` for fewer than two distinct points.
pub fn min_area_rect(hull: &[Point]) -> Option<Rect> {
    if hull.len() < 2 {
        return None;
    }
    let mut best: Option<Rect> = None;
    for i in 0..hull.len() {
        let (a, b) = (hull[i], hull[(i + 1) % hull.len()]);
        let len = distance(a, b);
        if len < 1e-6 {
            continue;
        }
        let axis = [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
        let (mut lo_u, mut hi_u, mut lo_v, mut hi_v) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in hull {
            let (dx, dy) = (p[0] - a[0], p[1] - a[1]);
            let u = dx * axis[0] + dy * axis[1];
            let v = -dx * axis[1] + dy * axis[0];
            lo_u = lo_u.min(u);
            hi_u = hi_u.max(u);
            lo_v = lo_v.min(v);
            hi_v = hi_v.max(v);
        }
        let (mu, mv) = ((lo_u + hi_u) / 2.0, (lo_v + hi_v) / 2.0);
        let rect = Rect {
            centre: [
                a[0] + mu * axis[0] - mv * axis[1],
                a[1] + mu * axis[1] + mv * axis[0],
            ],
            axis,
            length: hi_u - lo_u,
            breadth: hi_v - lo_v,
        };
        if best.is_none_or(|b| rect.area() < b.area()) {
            best = Some(rect);
        }
    }
    best
}

/// Orders four corners clockwise on screen starting at the top-left: the two
/// leftmost are the left side, the upper of each side comes first.
pub fn order_corners(mut c: [Point; 4]) -> Quad {
    c.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (tl, bl) = if c[0][1] <= c[1][1] {
        (c[0], c[1])
    } else {
        (c[1], c[0])
    };
    let (tr, br) = if c[2][1] <= c[3][1] {
        (c[2], c[3])
    } else {
        (c[3], c[2])
    };
    Quad([tl, tr, br, bl])
}

/// Whether `p` lies inside the convex quadrilateral `q` (edges included).
pub fn inside(q: &Quad, p: Point) -> bool {
    let mut sign = 0.0f32;
    for i in 0..4 {
        let c = cross(q.0[i], q.0[(i + 1) % 4], p);
        if c.abs() < 1e-6 {
            continue;
        }
        if sign == 0.0 {
            sign = c.signum();
        } else if c.signum() != sign {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hull_of_a_square_grid_is_its_corners() {
        let pts: Vec<Point> = (0..5)
            .flat_map(|x| (0..3).map(move |y| [x as f32, y as f32]))
            .collect();
        let mut hull = convex_hull(pts);
        hull.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
        assert_eq!(hull, vec![[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]]);
    }

    #[test]
    fn a_turned_rectangle_is_found_with_its_sides() {
        // A 40×10 rectangle turned by 30°.
        let (s, c) = 30f32.to_radians().sin_cos();
        let pts: Vec<Point> = (0..=40)
            .flat_map(|u| (0..=10).map(move |v| (u as f32, v as f32)))
            .map(|(u, v)| [100.0 + u * c - v * s, 50.0 + u * s + v * c])
            .collect();
        let rect = min_area_rect(&convex_hull(pts)).expect("rect");
        let (long, short) = (rect.length.max(rect.breadth), rect.short_side());
        assert!(
            (long - 40.0).abs() < 0.01 && (short - 10.0).abs() < 0.01,
            "{rect:?}"
        );
        let q = rect.quad();
        let (w, h) = q.size();
        assert!((w - 40.0).abs() < 0.01 && (h - 10.0).abs() < 0.01, "{q:?}");
        // Top-left corner is the rectangle's own corner at (100, 50) turned
        // back by the bottom-left one's offset: left of and above the centre.
        assert!(
            q.0[0][0] < rect.centre[0] && q.0[0][1] < rect.centre[1],
            "{q:?}"
        );
        assert!(inside(&q, rect.centre));
        assert!(!inside(&q, [0.0, 0.0]));
    }

    #[test]
    fn growing_adds_to_both_sides() {
        let r = Rect {
            centre: [10.0, 10.0],
            axis: [1.0, 0.0],
            length: 20.0,
            breadth: 4.0,
        }
        .grown(2.0);
        assert_eq!(
            r.quad().0,
            [[-2.0, 6.0], [22.0, 6.0], [22.0, 14.0], [-2.0, 14.0]]
        );
    }
}
