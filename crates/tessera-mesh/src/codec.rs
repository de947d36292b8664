//! Primitive encoders and bounds-checked decoders for message payloads:
//! little-endian integers and floats, length-prefixed strings and byte
//! strings, counted lists and tensors (rank, dims, raw little-endian f32).
//!
//! The reader never trusts a length: every count and size is checked
//! against the bytes actually left before anything is allocated, so a
//! hostile payload can neither panic the decoder nor make it allocate more
//! than the payload's own size.

use tessera_graph::Tensor;

/// Highest tensor rank accepted on the wire (NCHW needs 4; 8 leaves room).
pub const MAX_RANK: usize = 8;

/// Appends primitives to a payload buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty payload.
    pub fn new() -> Writer {
        Writer::default()
    }
    /// An empty payload with room for `n` bytes (avoids regrowth for tensors).
    pub fn with_capacity(n: usize) -> Writer {
        Writer { buf: Vec::with_capacity(n) }
    }
    /// Appends a byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Appends a little-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends a little-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends a little-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Appends a little-endian f64.
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A count or index that must fit the wire's u32 (saturates: a count
    /// this large could never be sent anyway and fails on decode).
    pub fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    /// u32 byte length + UTF-8.
    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }
    /// u32 byte length + raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.buf.extend_from_slice(b);
    }
    /// u8 rank, rank × u32 dims, then the elements as little-endian f32.
    pub fn tensor(&mut self, t: &Tensor) {
        self.u8(t.shape().len().min(255) as u8);
        for &d in t.shape() {
            self.len(d);
        }
        self.buf.reserve(t.bytes());
        for v in t.data() {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }
    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.buf.len()
    }
    /// The payload.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Bytes a tensor takes in a payload.
pub fn tensor_len(t: &Tensor) -> usize {
    1 + 4 * t.shape().len() + t.bytes()
}

/// Reads primitives from a payload, failing (never panicking) on any
/// truncation or implausible size.
pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

/// Why a payload did not decode.
pub type DecodeResult<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    /// A reader over a whole payload.
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b, pos: 0 }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!("truncated at byte {}: {} more needed, {} left", self.pos, n, self.remaining()));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    /// Reads a byte.
    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }
    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    /// A finite f64 (NaN and infinities are rejected: every float on the
    /// wire is a time or a rate).
    /// Reads a little-endian f64.
    pub fn f64(&mut self) -> DecodeResult<f64> {
        let v = f64::from_le_bytes(self.arr()?);
        if !v.is_finite() {
            return Err(format!("non-finite number at byte {}", self.pos - 8));
        }
        Ok(v)
    }
    /// A u32 index as usize.
    pub fn index(&mut self) -> DecodeResult<usize> {
        Ok(self.u32()? as usize)
    }
    /// A list count whose items take at least `min_item` bytes each: a
    /// count the remaining bytes cannot hold is rejected before anything
    /// is allocated.
    pub fn count(&mut self, min_item: usize) -> DecodeResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(format!("count {n} at byte {} cannot fit in the {} bytes left", self.pos - 4, self.remaining()));
        }
        Ok(n)
    }
    /// Reads a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> DecodeResult<String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("invalid UTF-8 string before byte {}", self.pos))
    }
    /// A byte string, borrowed.
    pub fn bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A tensor: rank ≤ [`MAX_RANK`], dims, data; the element count is
    /// checked against the bytes left before the data is copied.
    pub fn tensor(&mut self) -> DecodeResult<Tensor> {
        let rank = self.u8()? as usize;
        if rank > MAX_RANK {
            return Err(format!("tensor rank {rank} exceeds {MAX_RANK}"));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(self.u32()? as usize);
        }
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("tensor element count overflows")?;
        let nbytes = numel.checked_mul(4).ok_or("tensor byte size overflows")?;
        let raw = self.take(nbytes)?;
        let data: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Tensor::new(shape, data).map_err(|e| e.to_string())
    }
    /// Fails unless every byte was consumed (trailing garbage is an error).
    pub fn end(&self) -> DecodeResult<()> {
        if self.remaining() != 0 {
            return Err(format!("{} trailing bytes", self.remaining()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let t = Tensor::new(vec![2, 3], vec![1.0, -2.5, 3.0, f32::MIN_POSITIVE, 0.0, 7.25]).unwrap();
        let mut w = Writer::new();
        w.u8(7);
        w.u16(65000);
        w.u32(123456);
        w.u64(u64::MAX - 3);
        w.f64(-1.5);
        w.str("héllo");
        w.bytes(&[1, 2, 3]);
        w.tensor(&t);
        assert_eq!(w.written(), 1 + 2 + 4 + 8 + 8 + 4 + 6 + 4 + 3 + tensor_len(&t));
        let buf = w.finish();
        let mut r = Reader::new(&buf);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 65000);
        assert_eq!(r.u32().unwrap(), 123456);
        assert_eq!(r.u64().unwrap(), u64::MAX - 3);
        assert_eq!(r.f64().unwrap(), -1.5);
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.bytes().unwrap(), &[1, 2, 3]);
        assert_eq!(r.tensor().unwrap(), t);
        r.end().unwrap();
    }

    #[test]
    fn hostile_sizes_are_errors_not_allocations() {
        // A tensor claiming 2^32 x 2^32 elements.
        let mut w = Writer::new();
        w.u8(2);
        w.u32(u32::MAX);
        w.u32(u32::MAX);
        let b = w.finish();
        assert!(Reader::new(&b).tensor().is_err());
        // A list claiming 4 billion items in 4 bytes.
        let b = u32::MAX.to_le_bytes();
        assert!(Reader::new(&b).count(1).is_err());
        // Rank 200.
        assert!(Reader::new(&[200u8]).tensor().is_err());
        // Non-finite floats.
        assert!(Reader::new(&f64::NAN.to_le_bytes()).f64().is_err());
        // Bad UTF-8.
        let mut w = Writer::new();
        w.bytes(&[0xff, 0xfe]);
        assert!(Reader::new(&w.finish()).str().is_err());
    }
}
