//! An emulated link in front of a real one: what a peer sends and receives
//! is held back as a link of `LinkSim` bandwidth and latency would (each
//! direction serialises its frames, then adds the one-way latency; order is
//! kept). With it one machine hosts peers with a Pi's or a phone's network
//! over real WebRTC on loopback: the coordinator measures and plans for
//! the emulated link. The model is the in-memory transport's.

use std::collections::VecDeque;

use super::LinkSim;

/// One direction: items in order, each with the time it arrives.
#[derive(Debug)]
struct Lane<T> {
    free_at: f64,
    last: f64,
    queue: VecDeque<(f64, T)>,
}

impl<T> Lane<T> {
    fn new() -> Lane<T> {
        Lane { free_at: f64::NEG_INFINITY, last: f64::NEG_INFINITY, queue: VecDeque::new() }
    }

    fn push(&mut self, link: &LinkSim, now: f64, bytes: usize, item: T) {
        let start = self.free_at.max(now);
        let done = start + bytes as f64 * 8.0 / (link.mbps * 1e3);
        self.free_at = done;
        let at = (done + link.latency_ms).max(self.last);
        self.last = at;
        self.queue.push_back((at, item));
    }

    fn due(&mut self, now: f64) -> Vec<T> {
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|(at, _)| *at <= now) {
            out.push(self.queue.pop_front().expect("checked").1);
        }
        out
    }
}

/// Both directions of an emulated link; `U` goes up (sent), `D` comes down
/// (received).
#[derive(Debug)]
pub struct Shaper<U, D> {
    link: LinkSim,
    up: Lane<U>,
    down: Lane<D>,
}

impl<U, D> Shaper<U, D> {
    /// A link of `link`'s bandwidth and latency.
    pub fn new(link: LinkSim) -> Shaper<U, D> {
        Shaper { link, up: Lane::new(), down: Lane::new() }
    }

    /// The emulated link.
    pub fn link(&self) -> LinkSim {
        self.link
    }

    /// Queues `item` of `bytes` to send at `now` (ms).
    pub fn send(&mut self, now: f64, bytes: usize, item: U) {
        self.up.push(&self.link, now, bytes, item);
    }

    /// Queues `item` of `bytes` received at `now` (ms).
    pub fn receive(&mut self, now: f64, bytes: usize, item: D) {
        self.down.push(&self.link, now, bytes, item);
    }

    /// What was sent and has crossed the link by `now`, in order.
    pub fn take_sent(&mut self, now: f64) -> Vec<U> {
        self.up.due(now)
    }

    /// What was received and has crossed the link by `now`, in order.
    pub fn take_received(&mut self, now: f64) -> Vec<D> {
        self.down.due(now)
    }

    /// When the next item leaves the link, if any is queued.
    pub fn next_at(&self) -> Option<f64> {
        let a = self.up.queue.front().map(|x| x.0);
        let b = self.down.queue.front().map(|x| x.0);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_take_their_serialisation_and_latency_in_order() {
        let mut s: Shaper<u32, u32> = Shaper::new(LinkSim { latency_ms: 10.0, mbps: 8.0 });
        // 8 Mbit/s = 1 byte per µs: 1000 bytes take 1 ms on the wire.
        s.send(0.0, 1000, 1);
        s.send(0.0, 1000, 2);
        s.send(0.0, 0, 3);
        assert_eq!(s.next_at(), Some(11.0));
        assert!(s.take_sent(10.9).is_empty());
        assert_eq!(s.take_sent(11.0), vec![1]);
        assert_eq!(s.take_sent(12.0), vec![2, 3], "a small item does not overtake a large one");
        s.receive(100.0, 0, 7);
        assert!(s.take_sent(200.0).is_empty());
        assert_eq!(s.take_received(109.0), Vec::<u32>::new());
        assert_eq!(s.take_received(110.0), vec![7]);
        assert_eq!(s.next_at(), None);
    }

    #[test]
    fn links_parse() {
        assert_eq!(LinkSim::parse("20mbit,15ms").unwrap(), LinkSim { latency_ms: 15.0, mbps: 20.0 });
        assert_eq!(LinkSim::parse("1.5,0").unwrap(), LinkSim { latency_ms: 0.0, mbps: 1.5 });
        for bad in ["20", "x,1", "0,1", "5,-1", "nan,1"] {
            assert!(LinkSim::parse(bad).is_err(), "{bad}");
        }
    }
}
