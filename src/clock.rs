//! Wall-clock time as Unix milliseconds: what the store, the hub and the API stamp things
//! with. Only the shell's edges read the clock; detection and risk get time passed in.

/// Now, in milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
