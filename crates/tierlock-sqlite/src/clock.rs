//! The clock that lease expiry is measured on: one clock for every process of the host.
//!
//! On Linux it is `CLOCK_MONOTONIC` in nanoseconds, tagged with the kernel's boot id:
//!
//! * every process of the host reads the same value (a process in a container with its own
//!   time namespace reads it shifted by its namespace's offset, which is subtracted here);
//! * it never jumps: an NTP step or an administrator setting the date moves the wall clock, and
//!   a lease judged by the wall clock would expire early (two holders) or late;
//! * it is the clock of [`std::time::Instant`], on which the holder times its renewals and its
//!   own 9/10-of-`ttl` view of expiry (see `worker.rs`), so the holder and the waiters measure
//!   the lease with the very same clock and the holder always gives up first;
//! * it stops while the machine is suspended, for the holder's timers and the waiters alike.
//!
//! It restarts at each boot; the boot id says which boot a value belongs to, and a lease from
//! another boot has no live holder (every process died with the old boot), so it is expired.
//!
//! Elsewhere, and on a Linux without a readable boot id, the domain is the wall clock
//! (`SystemTime`, nanoseconds since 1970): subject to clock steps, which the documentation says.
//! Rows record their domain; a row of a different domain is judged by its wall-clock
//! `expires_at` instead (see [`HostClock::is_live`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The domain name of the wall clock.
const WALL: &str = "wall";
/// The prefix of a boot-scoped monotonic domain: `boot:<boot id>`.
const BOOT: &str = "boot:";

/// The host's lease clock: its domain and how to read it.
#[derive(Debug, Clone)]
pub(crate) struct HostClock {
    domain: String,
    /// What this process's `CLOCK_MONOTONIC` reads more than the host's (time namespaces).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    offset_ns: i64,
}

impl HostClock {
    /// The clock of this process's host.
    pub(crate) fn detect() -> HostClock {
        #[cfg(target_os = "linux")]
        {
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|id| id.trim().to_owned())
                .unwrap_or_default();
            if !boot.is_empty() {
                return HostClock {
                    domain: format!("{BOOT}{boot}"),
                    offset_ns: timens_offset(),
                };
            }
        }
        HostClock::wall()
    }

    /// The wall clock (for platforms without a shared monotonic clock, and for tests).
    pub(crate) fn wall() -> HostClock {
        HostClock {
            domain: WALL.to_owned(),
            offset_ns: 0,
        }
    }

    /// `boot:<boot id>` or `wall`: recorded with every expiry.
    pub(crate) fn domain(&self) -> &str {
        &self.domain
    }

    /// Now, in nanoseconds of this clock.
    pub(crate) fn now_ns(&self) -> i64 {
        #[cfg(target_os = "linux")]
        if self.domain != WALL {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            return now
                .tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(now.tv_nsec)
                .saturating_sub(self.offset_ns);
        }
        wall_ns()
    }

    /// Whether a lease or mark expiring at `expires_ns` in `domain` (or, failing that, at the
    /// wall-clock second `expires_at`) still stands.
    ///
    /// * Same domain: compared with this clock.
    /// * Another boot of this host: expired, since its holder died with that boot.
    /// * Anything else (one process on the wall clock, another on the monotonic one; only when
    ///   a boot id could not be read): the wall-clock `expires_at` decides.
    pub(crate) fn is_live(&self, domain: &str, expires_ns: i64, expires_at: f64) -> bool {
        if domain == self.domain {
            return expires_ns > self.now_ns();
        }
        if domain.starts_with(BOOT) && self.domain.starts_with(BOOT) {
            return false;
        }
        expires_at > wall_ns() as f64 / 1e9
    }
}

/// Nanoseconds of `d`, saturated to `i64`.
pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, nanos)
}

/// The monotonic offset of this process's time namespace (`/proc/self/timens_offsets`, Linux
/// 5.6+), or 0.
#[cfg(target_os = "linux")]
fn timens_offset() -> i64 {
    std::fs::read_to_string("/proc/self/timens_offsets")
        .ok()
        .and_then(|text| parse_timens(&text))
        .unwrap_or(0)
}

/// The `monotonic <secs> <nanos>` line of `timens_offsets`, in nanoseconds.
#[cfg(any(target_os = "linux", test))]
fn parse_timens(text: &str) -> Option<i64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()? != "monotonic" {
            return None;
        }
        let secs: i64 = fields.next()?.parse().ok()?;
        let nanos: i64 = fields.next()?.parse().ok()?;
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_namespace_offsets_parse() {
        let text = "monotonic      -3600    250\nboottime   7 0\n";
        assert_eq!(parse_timens(text), Some(-3_600_000_000_000 + 250));
        assert_eq!(parse_timens("boottime 1 2\n"), None);
        assert_eq!(parse_timens("monotonic x 1\n"), None);
    }

    #[test]
    fn the_clock_moves_forward_and_judges_expiry() {
        let clock = HostClock::detect();
        #[cfg(target_os = "linux")]
        assert!(clock.domain().starts_with(BOOT), "{}", clock.domain());
        let a = clock.now_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = clock.now_ns();
        assert!(b - a >= 2_000_000, "{a} {b}");
        let domain = clock.domain().to_owned();
        assert!(clock.is_live(&domain, b + 1_000_000_000, 0.0));
        assert!(!clock.is_live(&domain, b, f64::MAX));
        // Another boot: expired whatever it says.
        assert!(!clock.is_live("boot:another", i64::MAX, f64::MAX) || !domain.starts_with(BOOT));
        // A foreign domain falls back to the wall clock.
        assert!(clock.is_live("wall-ish", 0, f64::MAX));
        assert!(!clock.is_live("wall-ish", i64::MAX, 0.0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_monotonic_clock_is_the_clock_of_instant() {
        // Instant is CLOCK_MONOTONIC on Linux: the holder's timers and the stored expiry agree.
        let clock = HostClock::detect();
        let before = clock.now_ns();
        let instant = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = nanos(instant.elapsed());
        let moved = clock.now_ns() - before;
        assert!((moved - elapsed).abs() < 5_000_000, "{moved} vs {elapsed}");
    }
}
