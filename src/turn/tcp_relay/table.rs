//! The one table of RFC 6062 connections, shared by every worker: each
//! entry's state and user, the per-user counts, and what the shell keeps
//! with it ([`Held`]).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

use subtle::ConstantTimeEq;

use crate::auth::{Authenticated, Key, Signer};
use crate::turn::ConnId;

/// What the shell keeps with a connection (its sockets, its tasks): the
/// core stores it and hands it back, never reads it.
pub struct Held(Box<dyn Any + Send>);

impl Held {
    /// Wraps the shell's value.
    pub fn new<T: Any + Send>(value: T) -> Self {
        Held(Box::new(value))
    }

    /// The shell's value back, if it is a `T`.
    pub fn downcast<T: Any>(self) -> Result<T, Held> {
        self.0.downcast::<T>().map(|b| *b).map_err(Held)
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held(..)")
    }
}

/// A peer connection known by its CONNECTION-ID.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) username: String,
    /// An OAuth allocation's mac key: every client of a key shares its
    /// kid as username, so the key tells them apart (review F21).
    pub(super) mac: Option<[u8; 20]>,
    pub(super) state: State,
    pub(super) held: Option<Held>,
}

impl Entry {
    /// A connection of the allocation that `signer` signs for `username`.
    pub(super) fn new(username: String, signer: &Signer, state: State) -> Entry {
        let mac = match signer.key {
            Key::Mac { bytes, .. } => Some(bytes),
            _ => None,
        };
        Entry {
            username,
            mac,
            state,
            held: None,
        }
    }

    /// Whether `auth` may bind this connection: the allocation's user,
    /// with the same kind of credential and, for OAuth, a token that
    /// carries the allocation's mac key (compared in constant time).
    pub(super) fn owned_by(&self, auth: &Authenticated) -> bool {
        if self.username != auth.username {
            return false;
        }
        match (&self.mac, &auth.signer.key) {
            (Some(mine), Key::Mac { bytes, .. }) => bool::from(mine.ct_eq(bytes)),
            (None, Key::Md5(_) | Key::Sha256(_)) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// A Connect's attempt, not answered yet.
    Connecting,
    /// Connected, waiting for a ConnectionBind.
    Waiting,
    Bound,
}

/// Peer connections of every worker, and each user's count of them
/// (pending Connects included).
#[derive(Debug, Default)]
pub struct TcpConns(Mutex<Table>);

#[derive(Debug, Default)]
pub(super) struct Table {
    pub(super) entries: HashMap<ConnId, Entry>,
    per_user: HashMap<String, u32>,
}

impl Table {
    pub(super) fn contains_key(&self, conn: &ConnId) -> bool {
        self.entries.contains_key(conn)
    }

    /// Counts one more connection for `user`, unless at `max`.
    pub(super) fn reserve(&mut self, user: &str, max: u32) -> bool {
        let n = self.per_user.get(user).copied().unwrap_or(0);
        if n >= max {
            return false;
        }
        self.per_user.insert(user.to_string(), n + 1);
        true
    }

    pub(super) fn unreserve(&mut self, user: &str) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(user);
            }
        }
    }

    /// Ends a connection and its place in its user's count.
    pub(super) fn remove(&mut self, conn: &ConnId) -> Option<Entry> {
        let e = self.entries.remove(conn)?;
        self.unreserve(&e.username);
        Some(e)
    }
}

impl TcpConns {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections not yet ended (waiting or bound).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections counted for `user`, pending Connects included.
    pub fn of_user(&self, user: &str) -> u32 {
        self.lock().per_user.get(user).copied().unwrap_or(0)
    }

    /// The shell keeps `held` with connection `conn` (any worker may take
    /// it back). An ended connection gives it back: the shell drops it.
    /// Anything held before is dropped: take it first.
    pub fn hold(&self, conn: ConnId, held: Held) -> Result<(), Held> {
        match self.lock().entries.get_mut(&conn) {
            Some(e) => {
                e.held = Some(held);
                Ok(())
            }
            None => Err(held),
        }
    }

    /// What the shell keeps with connection `conn`, taken out.
    pub fn take(&self, conn: ConnId) -> Option<Held> {
        self.lock().entries.get_mut(&conn)?.held.take()
    }
}
