//! Continuous piecewise-linear functions of one variable on a closed interval, and the two
//! operations the planner's dynamic programme needs: the min-plus (infimal) convolution with a
//! slot's cost function and the restriction to an interval. Everything is exact up to floating
//! point rounding: no sampling, no grid.

use std::collections::VecDeque;

/// Points closer than this in `x` (watt-hours) are merged. Far above the rounding noise of
/// energies up to 1 GWh (about 1e-7 Wh), far below anything physically meaningful.
pub(crate) const X_EPS: f64 = 1e-9;

/// Relative tolerance for dropping a point that lies on the chord of its neighbours.
const Y_REL_TOL: f64 = 1e-12;

/// Relative tolerance on slopes when deciding whether a function is convex.
const SLOPE_REL_TOL: f64 = 1e-12;

/// A vertex.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pt {
    pub(crate) x: f64,
    pub(crate) y: f64,
}

/// A continuous piecewise-linear function given by its vertices, `x` strictly increasing. A
/// single vertex is a function defined at one point. Never empty.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pwl {
    pts: Vec<Pt>,
}

/// Value at `x` on the segment `p`–`q` (the parameter is clamped to the segment).
fn lerp(p: Pt, q: Pt, x: f64) -> f64 {
    let dx = q.x - p.x;
    if dx <= 0.0 {
        return p.y.min(q.y);
    }
    let t = ((x - p.x) / dx).clamp(0.0, 1.0);
    p.y + t * (q.y - p.y)
}

/// Appends a vertex, merging it into the previous one when they are closer than [`X_EPS`] (the
/// lower value wins: the functions built here are minima).
fn push_pt(out: &mut Vec<Pt>, x: f64, y: f64) {
    if let Some(last) = out.last_mut() {
        if x <= last.x + X_EPS {
            last.y = last.y.min(y);
            return;
        }
    }
    out.push(Pt { x, y });
}

/// Appends the lower envelope on `[u, w]` of up to three linear functions given by their values
/// at `u` and at `w`. The minimum of linear functions is concave, so its vertices are among the
/// pairwise crossings: evaluating it there and at the ends is exact.
fn push_lower_lines(out: &mut Vec<Pt>, u: f64, w: f64, lines: &[(f64, f64)]) {
    let mut ts = [0.0_f64; 5];
    let mut nt = 0;
    ts[nt] = 0.0;
    nt += 1;
    for i in 0..lines.len() {
        for j in (i + 1)..lines.len() {
            let du = lines[i].0 - lines[j].0;
            let dw = lines[i].1 - lines[j].1;
            if (du < 0.0 && dw > 0.0) || (du > 0.0 && dw < 0.0) {
                let t = du / (du - dw);
                if t > 0.0 && t < 1.0 && nt < ts.len() - 1 {
                    ts[nt] = t;
                    nt += 1;
                }
            }
        }
    }
    ts[nt] = 1.0;
    nt += 1;
    let ts = &mut ts[..nt];
    ts.sort_by(f64::total_cmp);
    for &t in ts.iter() {
        let x = if t >= 1.0 { w } else { u + t * (w - u) };
        let y = lines.iter().map(|&(a, b)| a + t * (b - a)).fold(f64::INFINITY, f64::min);
        push_pt(out, x, y);
    }
}

impl Pwl {
    /// The constant `y` on `[lo, hi]` (a single point when `hi - lo` is below [`X_EPS`]).
    pub(crate) fn constant(lo: f64, hi: f64, y: f64) -> Self {
        let mut pts = vec![Pt { x: lo, y }];
        push_pt(&mut pts, hi, y);
        Self { pts }
    }

    /// From vertices that are already sorted by `x` (closer ones are merged). `None` if empty.
    pub(crate) fn from_points(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Self> {
        let mut pts = Vec::new();
        for (x, y) in points {
            push_pt(&mut pts, x, y);
        }
        if pts.is_empty() {
            None
        } else {
            Some(Self { pts })
        }
    }

    /// The vertices.
    pub(crate) fn points(&self) -> &[Pt] {
        &self.pts
    }

    /// Left end of the domain.
    pub(crate) fn lo(&self) -> f64 {
        self.pts.first().map_or(0.0, |p| p.x)
    }

    /// Right end of the domain.
    pub(crate) fn hi(&self) -> f64 {
        self.pts.last().map_or(0.0, |p| p.x)
    }

    /// Value at `x`; outside the domain the value at the nearer end (callers stay inside up to
    /// rounding).
    pub(crate) fn eval(&self, x: f64) -> f64 {
        let pts = &self.pts;
        let i = pts.partition_point(|p| p.x < x);
        if i == 0 {
            return pts.first().map_or(0.0, |p| p.y);
        }
        if i >= pts.len() {
            return pts.last().map_or(0.0, |p| p.y);
        }
        lerp(pts[i - 1], pts[i], x)
    }

    /// Whether the slopes never decrease (within rounding).
    pub(crate) fn is_convex(&self) -> bool {
        let mut prev = f64::NEG_INFINITY;
        for w in self.pts.windows(2) {
            let s = (w[1].y - w[0].y) / (w[1].x - w[0].x);
            if s < prev - SLOPE_REL_TOL * (1.0 + prev.abs()) {
                return false;
            }
            prev = s;
        }
        true
    }

    /// The restriction to `[lo, hi] ∩ domain`. When that intersection is empty by no more than
    /// `snap` (rounding), the function is restricted to the nearest end instead; beyond that
    /// `None`.
    pub(crate) fn restrict(&self, lo: f64, hi: f64, snap: f64) -> Option<Self> {
        let mut a = lo.max(self.lo());
        let mut b = hi.min(self.hi());
        if a > b {
            if a - b > snap {
                return None;
            }
            let m = 0.5 * (a + b);
            a = m;
            b = m;
        }
        let mut pts = Vec::with_capacity(self.pts.len() + 2);
        push_pt(&mut pts, a, self.eval(a));
        for p in &self.pts {
            if p.x > a && p.x < b {
                push_pt(&mut pts, p.x, p.y);
            }
        }
        push_pt(&mut pts, b, self.eval(b));
        Some(Self { pts })
    }

    /// Drops vertices that lie on the chord of their neighbours, so that sizes stay small.
    pub(crate) fn simplify(&mut self) {
        let mut out: Vec<Pt> = Vec::with_capacity(self.pts.len());
        for &p in &self.pts {
            while out.len() >= 2 {
                let a = out[out.len() - 2];
                let m = out[out.len() - 1];
                // Local scale: values far from the optimum (steep penalty regions) must not
                // loosen the tolerance near it.
                let tol = Y_REL_TOL * (1.0 + a.y.abs() + m.y.abs() + p.y.abs());
                if (m.y - lerp(a, p, m.x)).abs() <= tol {
                    out.pop();
                } else {
                    break;
                }
            }
            push_pt(&mut out, p.x, p.y);
        }
        self.pts = out;
    }

    /// `e ↦ min_δ f(δ) + self(e + δ)` over all `δ` in `f`'s domain with `e + δ` in `self`'s
    /// domain, on its whole domain `[self.lo − f.hi, self.hi − f.lo]`. Exact for any continuous
    /// piecewise-linear `self` and `f`, convex or not.
    pub(crate) fn min_plus(&self, f: &Pwl) -> Pwl {
        let mut out = if self.is_convex() && f.is_convex() {
            self.min_plus_convex(f)
        } else {
            self.min_plus_general(f)
        };
        out.simplify();
        out
    }

    /// Convex case: the epigraph of the result is the Minkowski sum of the two epigraphs, so the
    /// result starts at the sum of the left ends of `self` and of `g(y) = f(−y)` and continues
    /// with all segments of both, sorted by slope (a merge, linear time).
    fn min_plus_convex(&self, f: &Pwl) -> Pwl {
        let v = &self.pts;
        let fp = &f.pts;
        let (Some(v0), Some(fl)) = (v.first(), fp.last()) else {
            return self.clone();
        };
        let mut out = Vec::with_capacity(v.len() + fp.len());
        let mut x = v0.x - fl.x;
        let mut y = v0.y + fl.y;
        out.push(Pt { x, y });
        // g's segments in increasing y are f's segments right to left, with slopes negated.
        let mut i = 0; // next segment of v: v[i]..v[i+1]
        let mut j = fp.len() - 1; // next segment of g: f[j-1]..f[j], reversed
        loop {
            let vs = (i + 1 < v.len()).then(|| {
                let (p, q) = (v[i], v[i + 1]);
                (q.x - p.x, q.y - p.y)
            });
            let gs = (j >= 1).then(|| {
                let (p, q) = (fp[j - 1], fp[j]);
                (q.x - p.x, p.y - q.y)
            });
            let (dx, dy, take_v) = match (vs, gs) {
                (None, None) => break,
                (Some((dx, dy)), None) => (dx, dy, true),
                (None, Some((dx, dy))) => (dx, dy, false),
                (Some((vx, vy)), Some((gx, gy))) => {
                    // Compare slopes vy/vx <= gy/gx without dividing (both dx > 0).
                    if vy * gx <= gy * vx {
                        (vx, vy, true)
                    } else {
                        (gx, gy, false)
                    }
                }
            };
            if take_v {
                i += 1;
            } else {
                j -= 1;
            }
            x += dx;
            y += dy;
            push_pt(&mut out, x, y);
        }
        Pwl { pts: out }
    }

    /// General case: for each linear piece of `f` (slope `s` on `[a, b]`) the result is
    /// `−s·e + const + min_{x ∈ [e+a, e+b]} (self(x) + s·x)`, a sliding-window minimum; the result
    /// is the lower envelope over the pieces. Pieces are merged in increasing `δ`, which keeps
    /// every partial envelope continuous.
    fn min_plus_general(&self, f: &Pwl) -> Pwl {
        let fp = &f.pts;
        if fp.len() == 1 {
            let d = fp[0];
            return Pwl { pts: self.pts.iter().map(|p| Pt { x: p.x - d.x, y: p.y + d.y }).collect() };
        }
        let mut acc: Option<Vec<Pt>> = None;
        let mut h: Vec<Pt> = Vec::with_capacity(self.pts.len());
        let mut m: Vec<Pt> = Vec::with_capacity(4 * self.pts.len() + 4);
        for w in fp.windows(2) {
            let (a, b) = (w[0].x, w[1].x);
            let s = (w[1].y - w[0].y) / (b - a);
            h.clear();
            h.extend(self.pts.iter().map(|p| Pt { x: p.x, y: p.y + s * p.x }));
            m.clear();
            sliding_min(&h, a, b, &mut m);
            let c = w[0].y - s * a;
            for p in &mut m {
                p.y += c - s * p.x;
            }
            acc = Some(match acc {
                None => m.clone(),
                Some(prev) => lower_envelope(&prev, &m),
            });
        }
        Pwl { pts: acc.unwrap_or_else(|| self.pts.clone()) }
    }
}

/// `e ↦ min { h(x) : x ∈ [e + a, e + b] ∩ dom h }` for `a < b`, on `[h.lo − b, h.hi − a]`.
///
/// The minimum of a piecewise-linear function over an interval is attained at an end of the
/// interval or at a vertex inside it. Sweeping `e` upwards, vertices enter the window at its right
/// end and leave it at its left end in the same order, so a monotone deque yields the least
/// vertex inside; between two events the two ends move along one segment each, so the result
/// there is the lower envelope of two lines and a constant. Linear time.
fn sliding_min(h: &[Pt], a: f64, b: f64, out: &mut Vec<Pt>) {
    let Some(first) = h.first() else {
        return;
    };
    let n = h.len() - 1;
    let mut dq: VecDeque<usize> = VecDeque::new();
    let mut ib = 0; // next vertex to enter (when e + b reaches it)
    let mut ia = 0; // next vertex to leave (when e + a reaches it)
    let mut e = first.x - b;
    loop {
        while ib <= n && h[ib].x - b <= e {
            while dq.back().is_some_and(|&k| h[k].y >= h[ib].y) {
                dq.pop_back();
            }
            dq.push_back(ib);
            ib += 1;
        }
        while ia <= n && h[ia].x - a <= e {
            while dq.front().is_some_and(|&k| k <= ia) {
                dq.pop_front();
            }
            ia += 1;
        }
        if ia > n {
            push_pt(out, e, h[n].y);
            return;
        }
        let next_a = h[ia].x - a;
        let next = if ib <= n { next_a.min(h[ib].x - b) } else { next_a };
        let mut lines = [(0.0, 0.0); 3];
        let mut nl = 0;
        if ia >= 1 {
            let (p, q) = (h[ia - 1], h[ia]);
            lines[nl] = (lerp(p, q, e + a), lerp(p, q, next + a));
            nl += 1;
        }
        if ib <= n && ib >= 1 {
            let (p, q) = (h[ib - 1], h[ib]);
            lines[nl] = (lerp(p, q, e + b), lerp(p, q, next + b));
            nl += 1;
        }
        if let Some(&k) = dq.front() {
            lines[nl] = (h[k].y, h[k].y);
            nl += 1;
        }
        if nl > 0 {
            push_lower_lines(out, e, next, &lines[..nl]);
        }
        e = next;
    }
}

/// The pointwise minimum of two functions whose domains overlap or touch, on the union of the
/// domains.
fn lower_envelope(f: &[Pt], g: &[Pt]) -> Vec<Pt> {
    let mut xs: Vec<f64> = Vec::with_capacity(f.len() + g.len());
    let (mut i, mut j) = (0, 0);
    while i < f.len() || j < g.len() {
        let x = match (f.get(i), g.get(j)) {
            (Some(p), Some(q)) if p.x <= q.x => {
                i += 1;
                p.x
            }
            (Some(_), Some(q)) => {
                j += 1;
                q.x
            }
            (Some(p), None) => {
                i += 1;
                p.x
            }
            (None, Some(q)) => {
                j += 1;
                q.x
            }
            (None, None) => break,
        };
        if xs.last().is_none_or(|&l| x > l) {
            xs.push(x);
        }
    }
    let mut out = Vec::with_capacity(xs.len() * 2);
    if xs.len() == 1 {
        let y = f.iter().chain(g.iter()).map(|p| p.y).fold(f64::INFINITY, f64::min);
        out.push(Pt { x: xs[0], y });
        return out;
    }
    let (mut jf, mut jg) = (0usize, 0usize);
    for w in xs.windows(2) {
        let (u, v) = (w[0], w[1]);
        let mut lines = [(0.0, 0.0); 2];
        let mut nl = 0;
        for (pts, ptr) in [(f, &mut jf), (g, &mut jg)] {
            let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
                continue;
            };
            if u < first.x || v > last.x {
                continue;
            }
            while *ptr + 2 < pts.len() && pts[*ptr + 1].x <= u {
                *ptr += 1;
            }
            let (p, q) = (pts[*ptr], pts[*ptr + 1]);
            lines[nl] = (lerp(p, q, u), lerp(p, q, v));
            nl += 1;
        }
        if nl > 0 {
            push_lower_lines(&mut out, u, v, &lines[..nl]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pwl(p: &[(f64, f64)]) -> Pwl {
        Pwl::from_points(p.iter().copied()).unwrap()
    }

    /// Brute-force reference on a fine grid of δ (exact at the vertices used below).
    fn brute(v: &Pwl, f: &Pwl, e: f64) -> f64 {
        let mut best = f64::INFINITY;
        let n = 20_000;
        for k in 0..=n {
            let d = f.lo() + (f.hi() - f.lo()) * f64::from(k) / f64::from(n);
            let x = e + d;
            if x >= v.lo() - 1e-12 && x <= v.hi() + 1e-12 {
                best = best.min(f.eval(d) + v.eval(x));
            }
        }
        best
    }

    fn check(v: &Pwl, f: &Pwl) {
        let r = v.min_plus(f);
        assert!((r.lo() - (v.lo() - f.hi())).abs() < 1e-9);
        assert!((r.hi() - (v.hi() - f.lo())).abs() < 1e-9);
        for k in 0..=200 {
            let e = r.lo() + (r.hi() - r.lo()) * f64::from(k) / 200.0;
            let want = brute(v, f, e);
            let got = r.eval(e);
            assert!(got <= want + 1e-9, "e={e}: got {got} > brute {want}");
            assert!(got >= want - 1e-3, "e={e}: got {got} << brute {want}");
        }
    }

    #[test]
    fn convex_and_general_agree_on_convex_input() {
        let v = pwl(&[(0.0, 3.0), (1.0, 1.0), (3.0, 0.0), (4.0, 2.0)]);
        let f = pwl(&[(-1.0, 1.0), (0.0, 0.0), (0.5, 1.0)]);
        let a = v.min_plus_convex(&f);
        let mut b = v.min_plus_general(&f);
        b.simplify();
        for k in 0..=100 {
            let e = a.lo() + (a.hi() - a.lo()) * f64::from(k) / 100.0;
            assert!((a.eval(e) - b.eval(e)).abs() < 1e-12, "e={e}");
        }
        check(&v, &f);
    }

    #[test]
    fn non_convex_functions() {
        let v = pwl(&[(0.0, 0.0), (1.0, 2.0), (2.0, -1.0), (3.0, 1.0), (5.0, -0.5), (6.0, 0.0)]);
        let f = pwl(&[(-1.5, -1.0), (0.0, 0.0), (0.7, -0.4), (1.0, 0.3)]);
        check(&v, &f);
        let f1 = pwl(&[(0.3, 0.2)]);
        check(&v, &f1);
        let v1 = pwl(&[(2.0, 1.0)]);
        check(&v1, &f);
    }

    #[test]
    fn restrict_and_simplify() {
        let mut v = pwl(&[(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 0.0)]);
        v.simplify();
        assert_eq!(v.points().len(), 3);
        let r = v.restrict(0.5, 2.5, 0.0).unwrap();
        assert_eq!(r.lo(), 0.5);
        assert!((r.eval(2.5) - 1.0).abs() < 1e-12);
        assert!(v.restrict(4.0, 5.0, 0.1).is_none());
        let s = v.restrict(3.05, 5.0, 0.1).unwrap();
        assert_eq!(s.points().len(), 1);
    }
}
