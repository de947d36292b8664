//! Rectangular regions of tensors (one half-open span per axis) and the
//! copy in / copy out of a region. Every split law speaks in regions.

use serde::{Deserialize, Serialize};
use tessera_graph::tensor::{numel, strides};
use tessera_graph::Tensor;

/// Half-open index interval `[start, end)` along one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
    pub fn len(self) -> usize {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(self) -> bool {
        self.end <= self.start
    }
    /// Smallest span containing both.
    pub fn hull(self, o: Span) -> Span {
        Span { start: self.start.min(o.start), end: self.end.max(o.end) }
    }
    pub fn contains(self, o: Span) -> bool {
        self.start <= o.start && o.end <= self.end
    }
    pub fn intersect(self, o: Span) -> Span {
        let s = self.start.max(o.start);
        Span { start: s, end: self.end.min(o.end).max(s) }
    }
}

/// A box in a tensor: one span per axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region(pub Vec<Span>);

impl Region {
    /// The whole of a tensor of `shape`.
    pub fn full(shape: &[usize]) -> Region {
        Region(shape.iter().map(|&d| Span::new(0, d)).collect())
    }
    /// The whole tensor except `axis`, restricted to `span`.
    pub fn along(shape: &[usize], axis: usize, span: Span) -> Region {
        let mut r = Region::full(shape);
        r.0[axis] = span;
        r
    }
    /// Extent per axis.
    pub fn shape(&self) -> Vec<usize> {
        self.0.iter().map(|s| s.len()).collect()
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape())
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().any(|s| s.is_empty())
    }
    pub fn hull(&self, o: &Region) -> Region {
        Region(self.0.iter().zip(&o.0).map(|(a, b)| a.hull(*b)).collect())
    }
    pub fn contains(&self, o: &Region) -> bool {
        self.0.len() == o.0.len() && self.0.iter().zip(&o.0).all(|(a, b)| a.contains(*b))
    }
    pub fn intersect(&self, o: &Region) -> Region {
        Region(self.0.iter().zip(&o.0).map(|(a, b)| a.intersect(*b)).collect())
    }
    /// `self` expressed in the coordinates of `outer` (which contains it).
    pub fn relative_to(&self, outer: &Region) -> Region {
        Region(self.0.iter().zip(&outer.0).map(|(s, o)| Span::new(s.start - o.start, s.end - o.start)).collect())
    }
    /// True if the regions share no element.
    pub fn disjoint(&self, o: &Region) -> bool {
        self.intersect(o).is_empty()
    }

    /// `self` minus `o` as disjoint boxes (at most two per axis): what must
    /// still be fetched when `o` is already held.
    pub fn minus(&self, o: &Region) -> Vec<Region> {
        let common = self.intersect(o);
        if common.is_empty() {
            return if self.is_empty() { vec![] } else { vec![self.clone()] };
        }
        let mut out = Vec::new();
        let mut rest = self.clone();
        for a in 0..self.0.len() {
            let (r, c) = (rest.0[a], common.0[a]);
            if r.start < c.start {
                let mut b = rest.clone();
                b.0[a] = Span::new(r.start, c.start);
                out.push(b);
            }
            if c.end < r.end {
                let mut b = rest.clone();
                b.0[a] = Span::new(c.end, r.end);
                out.push(b);
            }
            rest.0[a] = c;
        }
        out
    }
}

/// Copies region `r` out of `t`.
pub fn extract(t: &Tensor, r: &Region) -> Tensor {
    assert_eq!(r.0.len(), t.shape().len(), "region rank");
    let shape = r.shape();
    let mut out = Tensor::zeros(&shape);
    if out.numel() == 0 {
        return out;
    }
    let src_strides = strides(t.shape());
    let rank = shape.len();
    let inner = shape[rank - 1];
    let rows = out.numel() / inner;
    let src = t.data();
    let dst = out.data_mut();
    let mut idx = vec![0usize; rank.saturating_sub(1)];
    for row in 0..rows {
        let mut off = r.0[rank - 1].start;
        for (a, &i) in idx.iter().enumerate() {
            off += (r.0[a].start + i) * src_strides[a];
        }
        dst[row * inner..(row + 1) * inner].copy_from_slice(&src[off..off + inner]);
        for a in (0..idx.len()).rev() {
            idx[a] += 1;
            if idx[a] < shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

/// Writes `src` into region `r` of `dst`; with `add`, accumulates instead.
pub fn insert(dst: &mut Tensor, r: &Region, src: &Tensor, add: bool) {
    assert_eq!(r.shape(), src.shape(), "region shape");
    if src.numel() == 0 {
        return;
    }
    let dst_strides = strides(dst.shape());
    let shape = r.shape();
    let rank = shape.len();
    let inner = shape[rank - 1];
    let rows = src.numel() / inner;
    let s = src.data();
    let d = dst.data_mut();
    let mut idx = vec![0usize; rank.saturating_sub(1)];
    for row in 0..rows {
        let mut off = r.0[rank - 1].start;
        for (a, &i) in idx.iter().enumerate() {
            off += (r.0[a].start + i) * dst_strides[a];
        }
        let from = &s[row * inner..(row + 1) * inner];
        let to = &mut d[off..off + inner];
        if add {
            to.iter_mut().zip(from).for_each(|(a, b)| *a += b);
        } else {
            to.copy_from_slice(from);
        }
        for a in (0..idx.len()).rev() {
            idx[a] += 1;
            if idx[a] < shape[a] {
                break;
            }
            idx[a] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_insert_round_trip() {
        let shape = [2, 3, 5, 4];
        let t = Tensor::new(shape.to_vec(), (0..numel(&shape)).map(|v| v as f32).collect()).unwrap();
        let r = Region(vec![Span::new(1, 2), Span::new(0, 3), Span::new(1, 4), Span::new(2, 4)]);
        let piece = extract(&t, &r);
        assert_eq!(piece.shape(), &[1, 3, 3, 2]);
        // element [0,1,0,0] of the piece is t[1,1,1,2]
        assert_eq!(piece.data()[6], t.data()[60 + 20 + 4 + 2]);
        let mut z = Tensor::zeros(&shape);
        insert(&mut z, &r, &piece, false);
        assert_eq!(extract(&z, &r), piece);
        insert(&mut z, &r, &piece, true);
        assert_eq!(extract(&z, &r).data()[6], 2.0 * piece.data()[6]);
    }

    #[test]
    fn minus_partitions_the_difference() {
        let r = Region(vec![Span::new(0, 1), Span::new(0, 4), Span::new(0, 10), Span::new(0, 6)]);
        for h in [
            Region(vec![Span::new(0, 1), Span::new(0, 4), Span::new(2, 8), Span::new(0, 6)]),
            Region(vec![Span::new(0, 1), Span::new(1, 3), Span::new(2, 8), Span::new(1, 5)]),
            Region(vec![Span::new(0, 1), Span::new(0, 4), Span::new(20, 30), Span::new(0, 6)]),
            r.clone(),
        ] {
            let parts = r.minus(&h);
            let total: usize = parts.iter().map(|p| p.numel()).sum();
            assert_eq!(total, r.numel() - r.intersect(&h).numel());
            for (i, p) in parts.iter().enumerate() {
                assert!(r.contains(p) && p.disjoint(&h));
                for q in &parts[i + 1..] {
                    assert!(p.disjoint(q));
                }
            }
        }
    }

    #[test]
    fn span_algebra() {
        let a = Span::new(2, 6);
        assert_eq!(a.hull(Span::new(8, 9)), Span::new(2, 9));
        assert!(a.contains(Span::new(3, 6)));
        assert!(a.intersect(Span::new(6, 9)).is_empty());
    }
}
