//! Rooms and their members: who is in which room, the one coordinator, and
//! delivery of messages to members' outgoing queues. No I/O here: members
//! are reached through bounded queues that their connection tasks drain.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tessera_mesh::PeerId;
use tessera_mesh::transport::signal::{Member, Role, ServerMsg, codes};
use tokio::sync::{Notify, mpsc};

/// A queued outgoing text frame (already serialised JSON).
pub type Outbox = mpsc::Sender<String>;

/// How a member is reached.
pub struct Slot {
    pub name: String,
    pub role: Role,
    pub tx: Outbox,
    /// Notified when the member cannot keep up and must be dropped.
    pub kick: Arc<Notify>,
}

struct Room {
    token: String,
    capacity: usize,
    coordinator: Option<PeerId>,
    members: BTreeMap<PeerId, Slot>,
}

/// Every room on the server.
pub struct Rooms {
    rooms: Mutex<HashMap<String, Room>>,
    next_id: AtomicU32,
}

/// A refusal: an error code from [`codes`] and a message for people.
pub type Refusal = (&'static str, String);

impl Rooms {
    pub fn new() -> Self {
        Rooms { rooms: Mutex::new(HashMap::new()), next_id: AtomicU32::new(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates (or replaces) room `name` guarded by `token`.
    pub fn create(&self, name: &str, token: &str, capacity: usize) {
        self.lock().insert(
            name.to_string(),
            Room { token: token.to_string(), capacity, coordinator: None, members: BTreeMap::new() },
        );
    }

    /// Whether `token` opens `room` (constant time in the token).
    pub fn check(&self, room: &str, token: &str) -> Result<(), Refusal> {
        let rooms = self.lock();
        let Some(r) = rooms.get(room) else {
            return Err((codes::UNKNOWN_ROOM, format!("no room {room:?} on this server")));
        };
        if !ct_eq(r.token.as_bytes(), token.as_bytes()) {
            return Err((codes::UNAUTHORIZED, "wrong token for this room".into()));
        }
        Ok(())
    }

    /// Admits a member; returns its id and the welcome, and tells the others.
    pub fn join(&self, room: &str, token: &str, slot: Slot) -> Result<(PeerId, ServerMsg), Refusal> {
        let mut rooms = self.lock();
        let Some(r) = rooms.get_mut(room) else {
            return Err((codes::UNKNOWN_ROOM, format!("no room {room:?} on this server")));
        };
        if !ct_eq(r.token.as_bytes(), token.as_bytes()) {
            return Err((codes::UNAUTHORIZED, "wrong token for this room".into()));
        }
        if r.members.len() >= r.capacity {
            return Err((codes::ROOM_FULL, format!("room is full ({} members)", r.capacity)));
        }
        if slot.role == Role::Coordinator
            && let Some(c) = r.coordinator
        {
            return Err((codes::COORDINATOR_EXISTS, format!("room already has a coordinator (id {c})")));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let peers: Vec<Member> =
            r.members.iter().map(|(&id, s)| Member { id, name: s.name.clone(), role: s.role }).collect();
        let joined = text(&ServerMsg::PeerJoined { id, name: slot.name.clone(), role: slot.role });
        for s in r.members.values() {
            deliver(s, joined.clone());
        }
        let role = slot.role;
        if role == Role::Coordinator {
            r.coordinator = Some(id);
        }
        let welcome = ServerMsg::Welcome { id, room: room.to_string(), role, coordinator: r.coordinator, peers };
        r.members.insert(id, slot);
        Ok((id, welcome))
    }

    /// Removes a member and tells the others (`peer-left`, with its role, so
    /// peers see their coordinator go).
    pub fn leave(&self, room: &str, id: PeerId) {
        let mut rooms = self.lock();
        let Some(r) = rooms.get_mut(room) else { return };
        let Some(slot) = r.members.remove(&id) else { return };
        if r.coordinator == Some(id) {
            r.coordinator = None;
        }
        let left = text(&ServerMsg::PeerLeft { id, role: slot.role });
        for s in r.members.values() {
            deliver(s, left.clone());
        }
    }

    /// Relays a signal from `from` to `to` in `room`.
    pub fn relay(&self, room: &str, from: PeerId, to: PeerId, data: serde_json::Value) -> Result<(), Refusal> {
        let rooms = self.lock();
        let Some(r) = rooms.get(room) else {
            return Err((codes::UNKNOWN_ROOM, "room is gone".into()));
        };
        match r.members.get(&to) {
            Some(s) if to != from => {
                deliver(s, text(&ServerMsg::Signal { from, data }));
                Ok(())
            }
            _ => Err((codes::UNKNOWN_PEER, format!("no member {to} in this room"))),
        }
    }

    /// Members of `room` (for tests and status lines).
    pub fn count(&self, room: &str) -> usize {
        self.lock().get(room).map_or(0, |r| r.members.len())
    }
}

impl Default for Rooms {
    fn default() -> Self {
        Self::new()
    }
}

/// Serialises a server message.
pub fn text(m: &ServerMsg) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"encode"}"#.into())
}

/// Queues a frame for a member; a member whose queue is full is kicked
/// rather than letting the server's memory grow.
fn deliver(s: &Slot, frame: String) {
    if s.tx.try_send(frame).is_err() {
        s.kick.notify_one();
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, role: Role) -> (Slot, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(8);
        (Slot { name: name.into(), role, tx, kick: Arc::new(Notify::new()) }, rx)
    }

    #[test]
    fn join_relay_leave() {
        let rooms = Rooms::new();
        rooms.create("r", "secret", 3);
        let (s, _) = slot("x", Role::Peer);
        assert_eq!(rooms.join("r", "nope", s).unwrap_err().0, codes::UNAUTHORIZED);
        let (s, _) = slot("x", Role::Peer);
        assert_eq!(rooms.join("q", "secret", s).unwrap_err().0, codes::UNKNOWN_ROOM);

        let (s, mut crx) = slot("c", Role::Coordinator);
        let (c, w) = rooms.join("r", "secret", s).unwrap();
        assert!(matches!(w, ServerMsg::Welcome { coordinator: Some(x), .. } if x == c));
        let (s, mut prx) = slot("p", Role::Peer);
        let (p, w) = rooms.join("r", "secret", s).unwrap();
        let ServerMsg::Welcome { peers, coordinator, .. } = w else { panic!() };
        assert_eq!(coordinator, Some(c));
        assert_eq!(peers, vec![Member { id: c, name: "c".into(), role: Role::Coordinator }]);
        assert!(crx.try_recv().unwrap().contains("peer-joined"));

        let (s, _) = slot("c2", Role::Coordinator);
        assert_eq!(rooms.join("r", "secret", s).unwrap_err().0, codes::COORDINATOR_EXISTS);
        let (s, _) = slot("p2", Role::Peer);
        rooms.join("r", "secret", s).unwrap();
        let (s, _) = slot("p3", Role::Peer);
        assert_eq!(rooms.join("r", "secret", s).unwrap_err().0, codes::ROOM_FULL);

        assert!(prx.try_recv().unwrap().contains("peer-joined")); // p2
        rooms.relay("r", c, p, serde_json::json!({"type":"offer","sdp":"v=0"})).unwrap();
        let got: serde_json::Value = serde_json::from_str(&prx.try_recv().unwrap()).unwrap();
        assert_eq!(got["from"], c);
        assert_eq!(rooms.relay("r", c, 999, serde_json::json!({})).unwrap_err().0, codes::UNKNOWN_PEER);
        assert_eq!(rooms.relay("r", c, c, serde_json::json!({})).unwrap_err().0, codes::UNKNOWN_PEER);

        rooms.leave("r", c);
        let left: serde_json::Value = serde_json::from_str(&prx.try_recv().unwrap()).unwrap();
        assert_eq!(left["type"], "peer-left");
        assert_eq!(left["role"], "coordinator");
        // The coordinator's seat is free again.
        let (s, _) = slot("c2", Role::Coordinator);
        assert!(rooms.join("r", "secret", s).is_ok());
        assert_eq!(rooms.count("r"), 3);
    }

    #[test]
    fn a_full_queue_kicks_instead_of_growing() {
        let rooms = Rooms::new();
        rooms.create("r", "t", 40);
        let (tx, _rx) = mpsc::channel(1);
        let kick = Arc::new(Notify::new());
        rooms.join("r", "t", Slot { name: "slow".into(), role: Role::Peer, tx, kick: kick.clone() }).unwrap();
        for i in 0..3 {
            let (s, _) = slot(&format!("p{i}"), Role::Peer);
            rooms.join("r", "t", s).unwrap();
        }
        // The second peer-joined overflowed the slow member's queue of 1.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), kick.notified()).await.expect("kicked");
        });
    }
}
