//! The kernel's coarse clocks (`CLOCK_*_COARSE`): read from the vDSO
//! without the time stamp counter, true to the last timer tick (a few
//! milliseconds). For what every request notes and needs no finer time:
//! a connection's last traffic, the second of a `Date` header or of a
//! client's visit, the age of the read cache.

use std::time::Duration;

/// Monotonic time since an arbitrary start (boot).
pub fn monotonic() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Seconds since the Unix epoch, by the wall clock.
pub fn unix_seconds() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    t.tv_sec.max(0) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn coarse_clocks_agree_with_the_precise_ones() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(super::unix_seconds().abs_diff(wall) <= 1);
        let before = super::monotonic();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let slept = super::monotonic() - before;
        assert!(slept >= std::time::Duration::from_millis(20), "{slept:?}");
    }
}
