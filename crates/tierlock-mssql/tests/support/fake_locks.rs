//! The fake server's applock table: session-owned locks and, per resource, a FIFO queue of
//! waiting requests, as SQL Server's lock manager keeps them. A request is granted at once only
//! if it is compatible with every lock other sessions hold *and* nothing is queued on the
//! resource before it; a release grants queued requests in arrival order, inside the release, so
//! a newcomer can never overtake a request that was already waiting. Locks and queued requests
//! of a session vanish with it.

use std::collections::HashMap;

/// A lock held by a session, or a request queued for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub resource: String,
    pub spid: i32,
    pub exclusive: bool,
}

#[derive(Debug)]
struct Request {
    id: u64,
    want: Held,
    granted: bool,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    Queued(u64),
    /// Not grantable, and the request was not to wait.
    Refused,
}

#[derive(Debug, Default)]
pub struct Table {
    /// Granted locks; a session holding a resource twice appears twice (two releases needed).
    locks: Vec<Held>,
    /// Requests in arrival order; granted ones stay until their waiter collects them.
    queue: Vec<Request>,
    next_id: u64,
    /// The fencing counter table: `None` until created.
    pub fences: Option<HashMap<String, i64>>,
}

impl Table {
    pub fn locks(&self) -> Vec<Held> {
        self.locks.clone()
    }

    /// Requests still waiting.
    pub fn waiting(&self) -> Vec<Held> {
        self.queue
            .iter()
            .filter(|r| !r.granted)
            .map(|r| r.want.clone())
            .collect()
    }

    /// Whether `want` is compatible with the locks of every other session.
    pub fn grantable(&self, want: &Held) -> bool {
        self.locks
            .iter()
            .filter(|h| h.resource == want.resource && h.spid != want.spid)
            .all(|h| !want.exclusive && !h.exclusive)
    }

    pub fn holds(&self, spid: i32, resource: &str, exclusive: bool) -> bool {
        self.locks
            .iter()
            .any(|h| h.spid == spid && h.resource == resource && h.exclusive == exclusive)
    }

    /// Grants `want` if nothing is queued on its resource and it is compatible; else queues it,
    /// or refuses it at once if it may not wait.
    pub fn request(&mut self, want: Held, may_wait: bool) -> Outcome {
        let queued_before = self
            .queue
            .iter()
            .any(|r| !r.granted && r.want.resource == want.resource);
        if !queued_before && self.grantable(&want) {
            self.locks.push(want);
            return Outcome::Granted;
        }
        if !may_wait {
            return Outcome::Refused;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.queue.push(Request {
            id,
            want,
            granted: false,
        });
        Outcome::Queued(id)
    }

    /// `Some(true)` if the queued request was granted (it is then collected), `Some(false)` if
    /// it still waits, `None` if it is gone (its session ended).
    pub fn collect(&mut self, id: u64) -> Option<bool> {
        let at = self.queue.iter().position(|r| r.id == id)?;
        if self.queue[at].granted {
            self.queue.remove(at);
            return Some(true);
        }
        Some(false)
    }

    /// Withdraws a request whose wait timed out: `true` if it had been granted meanwhile (then it
    /// counts as granted), `false` if it was withdrawn.
    pub fn withdraw(&mut self, id: u64) -> bool {
        let Some(at) = self.queue.iter().position(|r| r.id == id) else {
            return false;
        };
        let request = self.queue.remove(at);
        if !request.granted {
            // Requests queued behind it may be grantable now.
            self.pump();
        }
        request.granted
    }

    /// Releases one reference of `spid` on `resource`; false if it holds none.
    pub fn release(&mut self, spid: i32, resource: &str) -> bool {
        let Some(at) = self
            .locks
            .iter()
            .position(|h| h.spid == spid && h.resource == resource)
        else {
            return false;
        };
        self.locks.remove(at);
        self.pump();
        true
    }

    /// Drops everything `spid` holds or waits for (its session ended).
    pub fn end_session(&mut self, spid: i32) {
        self.locks.retain(|h| h.spid != spid);
        self.queue.retain(|r| r.want.spid != spid);
        self.pump();
    }

    /// Drops every lock on `resource`, whoever holds it.
    pub fn forget(&mut self, resource: &str) {
        self.locks.retain(|h| h.resource != resource);
        self.pump();
    }

    /// Drops every lock and every request (a server restart).
    pub fn clear(&mut self) {
        self.locks.clear();
        self.queue.clear();
    }

    /// Grants waiting requests in arrival order: per resource, until the first one that cannot
    /// be granted.
    fn pump(&mut self) {
        let mut blocked: Vec<String> = Vec::new();
        for at in 0..self.queue.len() {
            if self.queue[at].granted {
                continue;
            }
            let want = self.queue[at].want.clone();
            if blocked.contains(&want.resource) {
                continue;
            }
            if self.grantable(&want) {
                self.locks.push(want);
                self.queue[at].granted = true;
            } else {
                blocked.push(want.resource);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(resource: &str, spid: i32) -> Held {
        Held {
            resource: resource.into(),
            spid,
            exclusive: true,
        }
    }

    #[test]
    fn a_release_grants_the_first_waiter_before_any_newcomer() {
        let mut table = Table::default();
        assert_eq!(table.request(x("r", 1), true), Outcome::Granted);
        let Outcome::Queued(id) = table.request(x("r", 2), true) else {
            panic!("granted beside a holder")
        };
        assert!(table.release(1, "r"));
        assert!(matches!(table.request(x("r", 3), true), Outcome::Queued(_)));
        assert_eq!(table.request(x("r", 4), false), Outcome::Refused);
        assert_eq!(table.collect(id), Some(true));
        assert_eq!(table.locks(), [x("r", 2)]);
    }
}
